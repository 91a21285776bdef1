"""Build the fleet image (``make image``): an OCI image per CPU architecture and an index over
them, holding the release files ``make dist`` wrote, a static busybox and the installer entry
point (``packaging/image/stage.sh``), without Docker.

Why busybox and not Python: the init container stages the files on the node and runs the node's
own ``install.sh`` in the node's namespaces (``nsenter --target 1``), as a person would by hand.
``install.sh`` picks the release form there: the zipapp when the node has a CPython 3.9-3.13
(the one that will run the plugin), else the self-contained form the image also carries, and
``systemctl`` restarts that node's kubelet. A Python in the image would add about 30 MB per
architecture and still not be the interpreter the kubelet runs the plugin with; busybox
(Debian's ``busybox-static``, about 2 MB) brings the shell, ``sha256sum``, ``cp`` and
``nsenter`` the entry point needs.

The layout is written here rather than with umoci: umoci cannot write a multi-architecture index,
and this way every byte is fixed by the inputs. Layers are tars with sorted entries, owner 0:0,
fixed modes and the mtime ``SOURCE_DATE_EPOCH`` (default: the last commit's time), gzipped
without a name or time; configs and manifests are canonical JSON whose only times are that same
epoch. The same release files, busybox and commit give the same digests.

Output (``--output-dir``, default ``dist/image``):

- ``oci/``: the OCI layout, tagged ``<version>`` (the index) and ``<version>-linux-<arch>``;
- ``registry-credential-provider-image-<version>.tar``: that layout as one file
  (``skopeo copy --all oci-archive:FILE docker://...``);
- ``registry-credential-provider-image-<version>-linux-<arch>.tar``: one architecture alone;
- ``DIGEST``: the index's digest, to pin in a kustomization's ``images:``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_release
from build_release import ARCHES, SUMS, project_version

from provider.releasenames import NAME  # importable: build_release put the repository on sys.path

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = ROOT / "packaging" / "image" / "stage.sh"
BUSYBOX_CACHE = ROOT / "build" / "busybox"

# The release files every image carries, and those of its own CPU (named for a version and CPU):
# both release forms, so install.sh picks the zipapp or the self-contained form per node.
COMMON_FILES = ("install.sh", "PACKAGES.txt", SUMS)
ARCH_FILES = (build_release.artifact_name, build_release.standalone_artifact_name)

# The busybox applets stage.sh and install.sh call, linked in /bin (and handy in `kubectl debug`).
APPLETS = (
    "awk", "cat", "chmod", "cp", "dirname", "grep", "gzip", "ls", "mkdir", "mktemp", "mv", "nsenter",
    "rm", "rmdir", "sh", "sha256sum", "sleep", "tar", "tr", "uname",
)  # fmt: skip
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}
DEBARCH = {"x86_64": "amd64", "aarch64": "arm64"}
LICENSES = "Apache-2.0 AND GPL-2.0-only"  # ours, and busybox's

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def canonical(document: object) -> bytes:
    """The one JSON encoding of ``document`` we write (sorted keys, no blanks)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` when set, else the last commit's time, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(_git("log", "-1", "--format=%ct") or 0)


def image_annotations(version: str, epoch: int, source: str) -> dict[str, str]:
    """The ``org.opencontainers.image.*`` annotations (revision and source only when known)."""
    found = {
        "org.opencontainers.image.title": NAME,
        "org.opencontainers.image.description": "Installs the registry-credential-provider kubelet "
        "plugin on the node: run by the fleet DaemonSet's init container",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": LICENSES,
        "org.opencontainers.image.created": rfc3339(epoch),
    }
    revision = _git("rev-parse", "HEAD")
    if revision:
        found["org.opencontainers.image.revision"] = revision
    if source:
        found["org.opencontainers.image.source"] = source
    return found


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- busybox -------------------------------------------------------------------------------------


def fetch_busybox(arch: str, cache: Path = BUSYBOX_CACHE) -> Path:
    """Debian's static busybox for ``arch``, downloaded once with apt (a private state directory,
    so the machine's apt configuration gains no architecture) and kept in ``cache``."""
    target = cache / arch / "busybox"
    if target.exists():
        return target
    state = cache / "apt"
    for directory in (state / "lists" / "partial", state / "archives" / "partial", cache / arch):
        directory.mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    debarch = DEBARCH[arch]
    options = [
        "-o", f"APT::Architecture={debarch}", "-o", f"APT::Architectures::={debarch}",
        "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state}",
        "-o", f"Dir::State::status={state / 'status'}", "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="busybox-") as scratch:
        for command in (["update", "-qq"], ["download", "-qq", f"busybox-static:{debarch}"]):
            result = subprocess.run(
                ["apt-get", *options, *command], cwd=scratch, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise SystemExit(f"apt-get {command[0]} for busybox-static:{debarch} failed: {result.stderr}")
        (deb,) = Path(scratch).glob("busybox-static_*.deb")
        unpacked = Path(scratch) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        shutil.copyfile(unpacked / "bin" / "busybox", target.with_suffix(".partial"))
        (cache / arch / "VERSION").write_text(version + "\n")
        target.with_suffix(".partial").replace(target)
    return target


# --- blobs and layers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob in the layout."""

    media_type: str
    digest: str
    size: int

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def write_blob(layout: Path, media_type: str, data: bytes) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(media_type, f"sha256:{digest}", len(data))


@dataclass(frozen=True)
class Entry:
    """One member of a layer: a directory (``source`` None, no ``link``), a file or a symlink."""

    name: str
    mode: int
    source: Path | None = None
    link: str = ""


def layer_tar(entries: Iterable[Entry], epoch: int) -> bytes:
    """An uncompressed layer: the entries sorted by name, owned by 0:0, every mtime ``epoch``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.name):
            info = tarfile.TarInfo(entry.name)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = (
                entry.mode,
                epoch,
                0,
                0,
                "",
                "",
            )
            if entry.link:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            elif entry.source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = entry.source.stat().st_size
                with open(entry.source, "rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzipped with no file name and no time in the header."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def release_files(release_dir: Path, version: str, arch: str) -> list[Path]:
    """The release files the ``arch`` image carries; a missing one is an error."""
    names = [*COMMON_FILES, *(name(version, arch) for name in ARCH_FILES)]
    missing = [n for n in names if not (release_dir / n).is_file()]
    if missing:
        raise SystemExit(f"{release_dir} has no {', '.join(missing)}: run 'make dist' first")
    return [release_dir / n for n in names]


def image_entries(release: Sequence[Path], busybox: Path) -> list[Entry]:
    entries = [Entry("bin", 0o755), Entry("installer", 0o755), Entry("release", 0o755)]
    entries.append(Entry("bin/busybox", 0o755, busybox))
    entries += [Entry(f"bin/{applet}", 0o777, link="busybox") for applet in APPLETS]
    entries.append(Entry("installer/stage.sh", 0o755, ENTRY_POINT))
    for path in release:
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        entries.append(Entry(f"release/{path.name}", mode, path))
    return entries


def build_arch_image(
    layout: Path, arch: str, entries: Sequence[Entry], epoch: int, labels: dict[str, str]
) -> Blob:
    """Write ``arch``'s layer, config and manifest into ``layout``; the manifest."""
    tar = layer_tar(entries, epoch)
    layer = write_blob(layout, LAYER_TYPE, gzip_bytes(tar))
    config = {
        "architecture": GOARCH[arch],
        "os": "linux",
        "created": rfc3339(epoch),
        "config": {
            "Entrypoint": ["/bin/sh", "/installer/stage.sh"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
        "history": [{"created": rfc3339(epoch), "created_by": "packaging/build_image.py"}],
    }
    config_blob = write_blob(layout, CONFIG_TYPE, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": labels,
    }
    return write_blob(layout, MANIFEST_TYPE, canonical(manifest))


def write_layout_file(layout: Path, refs: Sequence[tuple[Blob, str, dict[str, object]]]) -> None:
    """``oci-layout`` and ``index.json`` naming each ``(blob, tag, extra)``."""
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [blob.descriptor(**extra, annotations={REF_NAME: tag}) for blob, tag, extra in refs],
    }
    (layout / "index.json").write_bytes(canonical(index))


def tar_directory(directory: Path, target: Path, epoch: int) -> None:
    """``directory``'s contents as a tar (the ``oci-archive`` form), reproducibly."""
    entries = []
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        entries.append(Entry(name, 0o755) if path.is_dir() else Entry(name, 0o644, path))
    target.write_bytes(layer_tar(entries, epoch))


@dataclass
class Built:
    """What ``build_image`` wrote."""

    layout: Path
    index_digest: str
    manifests: dict[str, str]  # arch -> manifest digest
    archives: dict[str, Path]  # "index" or arch -> .tar
    version: str


def build_image(
    release_dir: Path,
    output_dir: Path,
    *,
    arches: Sequence[str] = ARCHES,
    busyboxes: dict[str, Path] | None = None,
    source: str = "",
) -> Built:
    """Build the layout, the archives and ``DIGEST`` into ``output_dir`` (emptied first)."""
    version = project_version()
    epoch = source_date_epoch()
    labels = image_annotations(version, epoch, source)
    busyboxes = busyboxes or {}
    if output_dir.exists():
        shutil.rmtree(output_dir)
    layout = output_dir / "oci"
    layout.mkdir(parents=True)
    manifests: dict[str, Blob] = {}
    for arch in arches:
        busybox = busyboxes.get(arch) or fetch_busybox(arch)
        entries = image_entries(release_files(release_dir, version, arch), busybox)
        manifests[arch] = build_arch_image(layout, arch, entries, epoch, labels)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            blob.descriptor(platform={"architecture": GOARCH[arch], "os": "linux"})
            for arch, blob in manifests.items()
        ],
        "annotations": labels,
    }
    index_blob = write_blob(layout, INDEX_TYPE, canonical(index))
    archives: dict[str, Path] = {}
    for arch, blob in manifests.items():
        # One architecture alone: a layout with just its blobs.
        with tempfile.TemporaryDirectory(prefix="image-") as scratch:
            single = Path(scratch)
            manifest = json.loads((layout / "blobs" / "sha256" / blob.digest[7:]).read_bytes())
            for digest in [
                blob.digest,
                manifest["config"]["digest"],
                *(x["digest"] for x in manifest["layers"]),
            ]:
                (single / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(
                    layout / "blobs" / "sha256" / digest[7:], single / "blobs" / "sha256" / digest[7:]
                )
            write_layout_file(single, [(blob, f"{version}-linux-{arch}", {})])
            archives[arch] = output_dir / f"{NAME}-image-{version}-linux-{arch}.tar"
            tar_directory(single, archives[arch], epoch)
    write_layout_file(
        layout,
        [(index_blob, version, {})]
        + [(blob, f"{version}-linux-{arch}", {}) for arch, blob in manifests.items()],
    )
    archives["index"] = output_dir / f"{NAME}-image-{version}.tar"
    tar_directory(layout, archives["index"], epoch)
    (output_dir / "DIGEST").write_text(index_blob.digest + "\n")
    return Built(layout, index_blob.digest, {a: b.digest for a, b in manifests.items()}, archives, version)


def _busybox_arg(text: str) -> tuple[str, Path]:
    arch, _, path = text.partition("=")
    if arch not in ARCHES or not path:
        raise argparse.ArgumentTypeError(f"expected ARCH=PATH with ARCH one of {', '.join(ARCHES)}")
    return arch, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--release-dir", type=Path, default=ROOT / "dist" / "release")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist" / "image")
    parser.add_argument("--arch", action="append", choices=ARCHES, help="default: all")
    parser.add_argument(
        "--busybox", action="append", type=_busybox_arg, default=[], metavar="ARCH=PATH",
        help="a static busybox to use for ARCH (default: Debian's busybox-static, fetched with apt)",
    )  # fmt: skip
    parser.add_argument(
        "--source",
        default=os.environ.get("IMAGE_SOURCE") or _git("config", "--get", "remote.origin.url"),
        help="org.opencontainers.image.source (default: $IMAGE_SOURCE or git's origin URL)",
    )
    args = parser.parse_args(argv)
    built = build_image(
        args.release_dir,
        args.output_dir,
        arches=args.arch or ARCHES,
        busyboxes=dict(args.busybox),
        source=args.source,
    )
    for name, archive in built.archives.items():
        print(f"{archive.relative_to(ROOT) if archive.is_relative_to(ROOT) else archive}: "
              f"{archive.stat().st_size} bytes ({name})")  # fmt: skip
    print(f"index {built.index_digest} (oci:{built.layout}:{built.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
