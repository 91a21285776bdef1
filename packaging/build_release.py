"""Build the release (``make dist``): one zipapp per CPU architecture, ``SHA256SUMS`` and the
list of bundled packages with their versions and licenses.

Each architecture's file carries only its own wheels: pex resolves for that architecture's
complete platforms alone (``packaging/platforms/**.json``, one per CPython 3.9-3.13, chosen
by their ``platform_machine``). Their manylinux tags are capped at a glibc floor
(``--manylinux-floor``, default 2.17, i.e. manylinux2014), so no wheel needing a newer glibc
than the oldest node we support (RHEL/CentOS 7, Amazon Linux 2 and 2023) can slip in when the
lock is re-pinned.

The build has two stages, so the lock's hashes still guard every byte:

1. ``pex3 download --lock`` fetches the locked wheels for those platforms (hash-checked
   against ``packaging/pex.lock``) into a wheelhouse;
2. botocore's wheel is rewritten without the API models of services we never call (keeping
   ``--botocore-services``, default ecr, ecr-public, sts, and botocore's shared data files);
   then pex builds the zipapp from that wheelhouse alone (no index, no builds), pinned to
   the lock's versions.

The same sources and lock give the same bytes (pex stamps fixed times, the trimmed wheel keeps
each member's original metadata), which the tests check by building twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_zipapp import LOCK, pex_command  # the one pex invocation, shared with `make zipapp`

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The release file names the installer and install.sh look for, defined once for both.
from provider.releasenames import NAME, standalone_name, zipapp_name  # noqa: E402

PLATFORMS_DIR = ROOT / "packaging" / "platforms"
ARCHES = ("x86_64", "aarch64")
BOTOCORE_SERVICES = ("ecr", "ecr-public", "sts")
MANYLINUX_FLOOR = (2, 17)
DEFAULT_RUNTIME_PEX_ROOT = "/var/lib/registry-credential-provider/pex"
SIZE_GOAL_BYTES = 20 * 1000 * 1000
SUMS = "SHA256SUMS"
PACKAGES = "PACKAGES.txt"
INSTALL_SH = ROOT / "node-config" / "install.sh"

# Legacy manylinux aliases and the glibc they stand for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# Architectures without manylinux1/2010 wheels, whose glibc tags start at 2.17.
_GLIBC_MIN_BY_ARCH = {"x86_64": (2, 5), "i686": (2, 5)}


def project_version() -> str:
    """``provider.__version__``, read without importing the package."""
    text = (ROOT / "provider" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if found is None:
        raise SystemExit("no __version__ in provider/__init__.py")
    return found.group(1)


def normalize(name: str) -> str:
    """A project name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


artifact_name = zipapp_name
standalone_artifact_name = standalone_name


def cp39_resolve(lock: Path = LOCK) -> list[tuple[str, str]]:
    """The projects and versions the lock resolves for CPython 3.9 (the self-contained form's)."""
    for resolve in json.loads(lock.read_text())["locked_resolves"]:
        if '"3.9.' in resolve.get("marker", ""):
            return sorted((r["project_name"], r["version"]) for r in resolve["locked_requirements"])
    raise SystemExit(f"{lock} has no CPython 3.9 resolve")


def standalone_packages_text(archive: Path) -> str:
    """The ``PACKAGES.txt`` section of one self-contained archive: the CPython and the shared
    libraries it carries from Debian bullseye, and its Python packages (the lock's 3.9 resolve)."""
    with tarfile.open(archive) as tar:
        paths = [Path(member.name) for member in tar.getmembers() if member.isfile()]
    libraries = sorted({p.name for p in paths if re.fullmatch(r"lib[^/]*\.so(\.\d+)*", p.name)})
    lines = [
        f"{archive.name}:",
        "  CPython 3.9 (Debian bullseye's python3.9, PSF-2.0) run by PyInstaller's bootloader (GPL-2.0",
        "  with its bootloader exception); shared libraries from Debian bullseye packages, each under",
        "  its package's license (Debian's /usr/share/doc/<package>/copyright):",
        *(f"    {name}" for name in libraries),
        "  Python packages, the lock's CPython 3.9 resolve (licenses as listed for the zipapps):",
        *(f"    {name} {version}" for name, version in cp39_resolve()),
        "",
    ]
    return "\n".join(lines)


# --- complete platforms --------------------------------------------------------------------------


def manylinux_glibc(tag: str) -> tuple[int, int] | None:
    """The glibc a wheel platform tag (``cp311-cp311-manylinux_2_17_x86_64``) needs, if it is a
    manylinux tag."""
    platform = tag.rsplit("-", maxsplit=1)[-1]
    found = re.match(r"manylinux_(\d+)_(\d+)_", platform)
    if found:
        return int(found.group(1)), int(found.group(2))
    for legacy, glibc in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            return glibc
    return None


def cap_manylinux(platform: dict[str, object], floor: tuple[int, int]) -> dict[str, object]:
    """``platform`` without the manylinux tags that need a newer glibc than ``floor``."""
    tags = platform["compatible_tags"]
    assert isinstance(tags, list)
    kept = [tag for tag in tags if (manylinux_glibc(tag) or (0, 0)) <= floor]
    return {**platform, "compatible_tags": kept}


def derive_platform(source: dict[str, object], arch: str) -> dict[str, object]:
    """A complete platform for ``arch`` from one inspected on another architecture (the same
    CPython): the tags of that interpreter, renamed, minus the manylinux tags ``arch`` never
    had (PEP 599: manylinux1 and manylinux2010 exist for x86_64 and i686 only)."""
    markers = source["marker_environment"]
    tags = source["compatible_tags"]
    assert isinstance(markers, dict)
    assert isinstance(tags, list)
    source_arch = str(markers["platform_machine"])
    minimum = _GLIBC_MIN_BY_ARCH.get(arch, (2, 17))
    derived: list[str] = []
    for tag in tags:
        if not tag.endswith("_" + source_arch) and not tag.endswith("-any"):
            continue
        renamed = tag[: -len(source_arch)] + arch if tag.endswith("_" + source_arch) else tag
        glibc = manylinux_glibc(renamed)
        if glibc is not None and glibc < minimum:
            continue
        if renamed.split("-")[-1].startswith(("manylinux1_", "manylinux2010_")) and minimum > (2, 12):
            continue
        derived.append(renamed)
    return {"compatible_tags": derived, "marker_environment": {**markers, "platform_machine": arch}}


def platform_files(arch: str, directory: Path = PLATFORMS_DIR) -> list[Path]:
    """The complete platforms of ``arch`` (one per CPython), found anywhere under ``directory``."""
    found = []
    for path in sorted(directory.rglob("*.json")):
        markers = json.loads(path.read_text())["marker_environment"]
        if markers.get("platform_machine") == arch:
            found.append(path)
    return found


# --- the lock ------------------------------------------------------------------------------------


def locked_projects(lock: Path = LOCK) -> tuple[list[str], dict[str, set[str]]]:
    """The lock's top-level requirements and every locked project's versions (one per resolve
    the lock forks into: CPython 3.9 and 3.10-3.13 may differ below the direct pins)."""
    document = json.loads(lock.read_text())
    versions: dict[str, set[str]] = {}
    for resolve in document["locked_resolves"]:
        for requirement in resolve["locked_requirements"]:
            versions.setdefault(requirement["project_name"], set()).add(requirement["version"])
    return list(document["requirements"]), versions


# --- botocore's data -----------------------------------------------------------------------------

BOTOCORE_DATA = "botocore/data/"


@dataclass
class TrimResult:
    """What trimming botocore's data did (``trimmed`` False: there was no botocore)."""

    trimmed: bool
    message: str
    bytes_before: int = 0
    bytes_after: int = 0
    services_kept: list[str] = field(default_factory=list)
    services_dropped: int = 0


def botocore_member_kept(name: str, services: Iterable[str]) -> bool:
    """Whether a wheel member survives the trim: everything but ``botocore/data/<service>/``
    directories of other services (the shared files directly in ``botocore/data`` stay:
    endpoints, partitions, retry and default-configuration data every client loads)."""
    if not name.startswith(BOTOCORE_DATA):
        return True
    rest = name[len(BOTOCORE_DATA) :]
    if "/" not in rest:
        return True
    return rest.split("/", 1)[0] in set(services)


def trim_botocore_wheel(source: Path, target: Path, services: Sequence[str]) -> TrimResult:
    """Write ``source`` (a botocore wheel) to ``target`` without the other services' data.

    Members keep their order, timestamps, permissions and compression, and ``RECORD`` loses
    the lines of the removed files, so the result is a valid wheel and the same input always
    gives the same bytes. A service asked for but absent is an error: a botocore that renamed
    it would otherwise fail only at run time.
    """
    with zipfile.ZipFile(source) as wheel:
        members = wheel.infolist()
        present = {
            m.filename[len(BOTOCORE_DATA) :].split("/", 1)[0]
            for m in members
            if m.filename.startswith(BOTOCORE_DATA) and m.filename.count("/") > 2
        }
        missing = sorted(set(services) - present)
        if missing:
            raise SystemExit(
                f"botocore in {source.name} has no data for {', '.join(missing)}: "
                "check --botocore-services against the ECR backend's clients"
            )
        kept = [m for m in members if botocore_member_kept(m.filename, services)]
        dropped = {m.filename for m in members} - {m.filename for m in kept}
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w") as out:
            for member in kept:
                data = wheel.read(member)
                if member.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode("utf-8").splitlines(keepends=True)
                    data = "".join(line for line in lines if line.split(",", 1)[0] not in dropped).encode()
                info = zipfile.ZipInfo(member.filename, date_time=member.date_time)
                info.external_attr = member.external_attr
                info.create_system = member.create_system
                info.compress_type = member.compress_type
                out.writestr(info, data)
    return TrimResult(
        trimmed=True,
        message=f"botocore data trimmed to {', '.join(sorted(services))} "
        f"({len(present) - len(services)} services dropped)",
        bytes_before=source.stat().st_size,
        bytes_after=target.stat().st_size,
        services_kept=sorted(services),
        services_dropped=len(present) - len(services),
    )


def trim_wheelhouse(wheelhouse: Path, services: Sequence[str]) -> TrimResult:
    """Trim botocore in place in ``wheelhouse``; a no-op (saying so) when the lock has none."""
    wheels = sorted(wheelhouse.glob("botocore-*.whl"))
    if not wheels:
        return TrimResult(
            trimmed=False,
            message="botocore is not in packaging/pex.lock yet: nothing to trim (the trim applies "
            "once the ECR backend's botocore is locked)",
        )
    result = TrimResult(trimmed=True, message="")
    for wheel in wheels:
        trimmed = wheel.with_suffix(".trimmed")
        one = trim_botocore_wheel(wheel, trimmed, services)
        wheel.unlink()  # it may be a hard link into pex's cache: never write through it
        trimmed.rename(wheel)
        result = one
    return result


# --- licenses ------------------------------------------------------------------------------------


def license_of(metadata: str) -> str:
    """A package's license from its core metadata: the SPDX ``License-Expression`` when given,
    else ``License`` (when short) with the trove classifiers."""
    headers = HeaderParser().parsestr(metadata, headersonly=True)
    expression = headers.get("License-Expression")
    if expression:
        return str(expression).strip()
    classifiers = [
        str(c).rsplit("::", 1)[-1].strip()
        for c in headers.get_all("Classifier") or ()
        if str(c).startswith("License ::")
    ]
    text = str(headers.get("License") or "").strip()
    if "\n" in text or len(text) > 60:
        text = ""
    if text and classifiers:
        return f"{text} ({', '.join(sorted(classifiers))})"
    return text or ", ".join(sorted(classifiers)) or "UNKNOWN"


@dataclass(frozen=True)
class Bundled:
    """One distribution inside an artifact."""

    name: str
    version: str
    license: str
    wheel: str


def bundled_distributions(artifact: Path) -> list[Bundled]:
    """The distributions a built pex carries, read from the pex itself."""
    found = []
    with zipfile.ZipFile(artifact) as pex:
        info = json.loads(pex.read("PEX-INFO"))
        for wheel in sorted(info["distributions"]):
            metadata_names = [
                n
                for n in pex.namelist()
                if n.startswith(f".deps/{wheel}/") and n.endswith(".dist-info/METADATA")
            ]
            if len(metadata_names) != 1:
                raise SystemExit(f"{artifact.name}: no single METADATA for {wheel}")
            metadata = pex.read(metadata_names[0]).decode("utf-8")
            headers = HeaderParser().parsestr(metadata, headersonly=True)
            found.append(Bundled(str(headers["Name"]), str(headers["Version"]), license_of(metadata), wheel))
    return found


def wheel_arches(wheel: str) -> set[str]:
    """The CPU architectures a wheel file name is for (empty: pure Python)."""
    platforms = wheel[: -len(".whl")].rsplit("-", maxsplit=1)[-1].split(".")
    return {
        match.group(1)
        for platform in platforms
        if (match := re.search(r"(x86_64|aarch64|i686|armv7l|ppc64le|s390x|arm64|universal2)$", platform))
    }


# --- building ------------------------------------------------------------------------------------


@dataclass
class Artifact:
    arch: str
    path: Path
    size: int
    sha256: str
    distributions: list[Bundled]
    trim: TrimResult


def _bin(tool: str) -> str:
    return str(Path(sys.executable).parent / tool)


def _run(command: list[str], cwd: Path = ROOT) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{Path(command[0]).name} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locked_with(lock: Path, project: str, wheel: Path) -> dict[str, object]:
    """The lock with ``project``'s artifacts replaced by one local wheel (and its hash)."""
    document = json.loads(lock.read_text())
    for resolve in document["locked_resolves"]:
        for requirement in resolve["locked_requirements"]:
            if normalize(requirement["project_name"]) == normalize(project):
                requirement["artifacts"] = [
                    {"algorithm": "sha256", "hash": sha256_file(wheel), "url": wheel.resolve().as_uri()}
                ]
    return dict(document)


def wheel_tags(wheel: str) -> set[str]:
    """Every ``python-abi-platform`` tag a wheel file name stands for (PEP 425 compressed sets)."""
    parts = wheel[: -len(".whl")].split("-")
    pythons, abis, platforms = parts[-3], parts[-2], parts[-1]
    return {
        f"{p}-{a}-{plat}"
        for p in pythons.split(".")
        for a in abis.split(".")
        for plat in platforms.split(".")
    }


def redundant_abi3(wheels: Iterable[str]) -> list[str]:
    """Wheels another wheel of the same project and version already covers: of several
    ``cpXY-abi3`` wheels for one platform (cryptography ships cp39-abi3 and cp311-abi3, and pex
    picks the newest each interpreter allows), the oldest serves every later CPython, as the
    stable ABI promises."""
    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for wheel in wheels:
        parts = wheel[: -len(".whl")].split("-")
        python, abi, platform = parts[-3], parts[-2], parts[-1]
        if abi == "abi3" and python.startswith("cp") and python[2:].isdigit():
            groups.setdefault((parts[0], parts[1], platform), []).append((int(python[2:]), wheel))
    return sorted(wheel for found in groups.values() for _, wheel in sorted(found)[1:])


def strip_distributions(pex: Path, allowed_tags: set[str]) -> list[str]:
    """Remove from the built ``pex`` every distribution no allowed tag matches, and every
    ``redundant_abi3`` one; the removed wheels.

    pex resolves for the build machine's interpreter too whenever interpreter constraints are
    given (and they must be: the boot script's fast path depends on them), so a foreign
    architecture's file would otherwise also carry this machine's wheels. Entries keep their
    bytes, order and metadata, and the boot script before the zip is kept, so the result stays
    reproducible; ``pex_hash`` keeps naming the build (both the boot script and the runtime read
    the stored value).
    """
    data = pex.read_bytes()
    with zipfile.ZipFile(pex) as source:
        info = json.loads(source.read("PEX-INFO"))
        foreign = sorted(w for w in info["distributions"] if not wheel_tags(w) & allowed_tags)
        kept = [w for w in info["distributions"] if w not in foreign]
        foreign = sorted(foreign + redundant_abi3(kept))
        if not foreign:
            return []
        members = source.infolist()
        start = min(m.header_offset for m in members)
        preamble = data[:start]
        for wheel in foreign:
            del info["distributions"][wheel]
        prefixes = tuple(f".deps/{wheel}/" for wheel in foreign)
        rewritten = pex.with_suffix(".stripped")
        with open(rewritten, "wb") as handle:
            handle.write(preamble)
            with zipfile.ZipFile(handle, "w") as out:
                for member in members:
                    if member.filename.startswith(prefixes) or member.filename.rstrip("/") in {
                        p.rstrip("/") for p in prefixes
                    }:
                        continue
                    content = source.read(member)
                    if member.filename == "PEX-INFO":
                        content = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
                    copy = zipfile.ZipInfo(member.filename, date_time=member.date_time)
                    copy.external_attr = member.external_attr
                    copy.create_system = member.create_system
                    copy.compress_type = member.compress_type
                    out.writestr(copy, content)
    os.chmod(rewritten, pex.stat().st_mode & 0o7777)
    rewritten.replace(pex)
    return foreign


def build_arch(
    arch: str,
    output: Path,
    work: Path,
    *,
    runtime_pex_root: str,
    services: Sequence[str],
    floor: tuple[int, int],
) -> Artifact:
    """Build ``output``, the zipapp for ``arch``; ``work`` is scratch space."""
    sources = platform_files(arch)
    if not sources:
        raise SystemExit(f"no complete platforms for {arch} under {PLATFORMS_DIR}")
    platforms: list[str] = []
    capped_platforms: list[Path] = []
    allowed_tags: set[str] = set()
    for source in sources:
        capped_platform = cap_manylinux(json.loads(source.read_text()), floor)
        tags = capped_platform["compatible_tags"]
        assert isinstance(tags, list)
        allowed_tags.update(tags)
        capped = work / "platforms" / source.name
        capped.parent.mkdir(parents=True, exist_ok=True)
        capped.write_text(json.dumps(capped_platform, indent=1))
        platforms += ["--complete-platform", str(capped)]
        capped_platforms.append(capped)
    # Stage 1: the locked wheels, hash-checked by pex against the lock.
    wheelhouse = work / "wheelhouse"
    _run([_bin("pex3"), "download", "--lock", str(LOCK), "--wheel", "-d", str(wheelhouse), *platforms])
    trim = trim_wheelhouse(wheelhouse, services)
    lock = LOCK
    for wheel in sorted(wheelhouse.glob("botocore-*.whl")) if trim.trimmed else ():
        lock = work / "pex.lock"
        lock.write_text(json.dumps(locked_with(LOCK, "botocore", wheel), indent=2))
    # Stage 2: the zipapp, from the lock (with the trimmed botocore where there is one).
    _run(pex_command(output, runtime_pex_root, lock=lock, platforms=capped_platforms))
    strip_distributions(output, allowed_tags)
    _, versions = locked_projects()
    locked = {normalize(n): v for n, v in versions.items()}
    distributions = bundled_distributions(output)
    for dist in distributions:
        if dist.version not in locked.get(normalize(dist.name), set()):
            raise SystemExit(f"{output.name}: {dist.name} {dist.version} is not the locked version")
        foreign_arches = wheel_arches(dist.wheel) - {arch}
        if foreign_arches:
            raise SystemExit(
                f"{output.name}: {dist.wheel} is for {', '.join(sorted(foreign_arches))}, not {arch}"
            )
    return Artifact(arch, output, output.stat().st_size, sha256_file(output), distributions, trim)


def packages_text(version: str, artifacts: Sequence[Artifact], floor: tuple[int, int]) -> str:
    """``PACKAGES.txt``: what each artifact bundles, with versions and licenses."""
    pex_version = _pex_version()
    lines = [
        f"# Packages bundled in {NAME} {version}, per release file.",
        f"# CPython 3.9-3.13 on Linux with glibc >= {floor[0]}.{floor[1]} (manylinux wheels capped there).",
        "",
    ]
    for artifact in artifacts:
        lines.append(f"{artifact.path.name} ({artifact.arch}, {artifact.size} bytes)")
        rows = [(NAME, version, "Apache-2.0", "this project")]
        rows.append(("pex", pex_version, "Apache-2.0", "the boot code and runtime of the zipapp"))
        by_project: dict[tuple[str, str, str], list[str]] = {}
        for dist in artifact.distributions:
            by_project.setdefault((dist.name, dist.version, dist.license), []).append(dist.wheel)
        for (name, dist_version, license_text), wheels in sorted(
            by_project.items(), key=lambda i: i[0][0].lower()
        ):
            note = ", ".join(sorted(wheels))
            if name.lower() == "botocore" and artifact.trim.trimmed:
                note += f"; data trimmed to {', '.join(artifact.trim.services_kept)}"
            rows.append((name, dist_version, license_text, note))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            lines.append(
                "  "
                + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                + "  "
                + row[3]
            )
        lines.append("")
    return "\n".join(lines)


def _pex_version() -> str:
    result = subprocess.run([_bin("pex"), "--version"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def write_sums(directory: Path) -> Path:
    """``SHA256SUMS`` for every file in ``directory`` (``sha256sum -c`` reads it)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != SUMS)
    sums = directory / SUMS
    sums.write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in files))
    return sums


def build_release(
    output_dir: Path,
    *,
    arches: Sequence[str] = ARCHES,
    runtime_pex_root: str = DEFAULT_RUNTIME_PEX_ROOT,
    services: Sequence[str] = BOTOCORE_SERVICES,
    floor: tuple[int, int] = MANYLINUX_FLOOR,
    log: bool = True,
    standalone_dir: Path | None = None,
) -> list[Artifact]:
    """Build every artifact into ``output_dir`` (emptied first), with ``PACKAGES.txt``,
    ``install.sh`` and ``SHA256SUMS``; with ``standalone_dir`` (``make standalone``'s output), each
    CPU's self-contained archive from there too."""
    version = project_version()
    standalones = []
    if standalone_dir is not None:
        standalones = [standalone_dir / standalone_artifact_name(version, arch) for arch in arches]
        missing = [p.name for p in standalones if not p.is_file()]
        if missing:
            raise SystemExit(f"{standalone_dir} has no {', '.join(missing)}: run 'make standalone' first")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    artifacts = []
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        for arch in arches:
            target = output_dir / artifact_name(version, arch)
            artifact = build_arch(
                arch,
                target,
                Path(scratch) / arch,
                runtime_pex_root=runtime_pex_root,
                services=services,
                floor=floor,
            )
            artifacts.append(artifact)
            if log:
                print(f"{arch}: {artifact.trim.message}", file=sys.stderr)
                print(f"built {target} ({artifact.size} bytes)", file=sys.stderr)
    packages = packages_text(version, artifacts, floor)
    for archive in standalones:
        shutil.copyfile(archive, output_dir / archive.name)
        os.chmod(output_dir / archive.name, 0o644)
        packages += "\n" + standalone_packages_text(archive)
    (output_dir / PACKAGES).write_text(packages)
    shutil.copyfile(INSTALL_SH, output_dir / "install.sh")
    os.chmod(output_dir / "install.sh", 0o755)  # noqa: S103 - an executable for everyone
    for artifact in artifacts:
        os.chmod(artifact.path, 0o755)  # noqa: S103 - an executable for everyone
    write_sums(output_dir)
    return artifacts


def _floor(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"(\d+)\.(\d+)", text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected a glibc version like 2.17, got {text!r}")
    return int(found.group(1)), int(found.group(2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist" / "release")
    parser.add_argument("--runtime-pex-root", default=DEFAULT_RUNTIME_PEX_ROOT)
    parser.add_argument("--arch", action="append", choices=ARCHES, help="default: all")
    parser.add_argument(
        "--standalone-dir",
        type=Path,
        help="also release each CPU's self-contained archive from this directory (make standalone's)",
    )
    parser.add_argument(
        "--botocore-services",
        default=",".join(BOTOCORE_SERVICES),
        help="botocore API models to keep (default: %(default)s)",
    )
    parser.add_argument("--manylinux-floor", type=_floor, default=MANYLINUX_FLOOR, metavar="2.N")
    parser.add_argument(
        "--derive-platforms",
        action="store_true",
        help="(re)write the aarch64 complete platforms from the x86_64 ones, then stop",
    )
    args = parser.parse_args(argv)
    if not args.runtime_pex_root.startswith("/"):
        parser.error("--runtime-pex-root must be absolute: the kubelet runs plugins without HOME")
    if args.derive_platforms:
        for source in platform_files("x86_64"):
            derived = derive_platform(json.loads(source.read_text()), "aarch64")
            target = PLATFORMS_DIR / "aarch64" / source.name.replace("x86_64", "aarch64")
            target.parent.mkdir(exist_ok=True)
            target.write_text(json.dumps(derived, indent=2) + "\n")
            print(f"wrote {target.relative_to(ROOT)}")
        return 0
    services = [s.strip() for s in args.botocore_services.split(",") if s.strip()]
    artifacts = build_release(
        args.output_dir,
        arches=args.arch or ARCHES,
        runtime_pex_root=args.runtime_pex_root,
        services=services,
        floor=args.manylinux_floor,
        standalone_dir=args.standalone_dir,
    )
    too_big = [a for a in artifacts if a.size > SIZE_GOAL_BYTES]
    for artifact in too_big:
        print(
            f"warning: {artifact.path.name} is over the 20 MB goal ({artifact.size} bytes)", file=sys.stderr
        )
    print(f"release in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
