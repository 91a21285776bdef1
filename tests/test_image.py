"""The fleet image (``packaging/build_image.py``) and its entry point (``packaging/image/stage.sh``).

The image is built from a release directory holding this machine's zipapp and self-contained
archive, unpacked with umoci (an independent reader of the layout), and its entry point run by
the image's own busybox against a scratch root mounted as the host, the way the init container
sees the node: for each flavour it must leave exactly the tree the installer's golden says
(``tests/data/install``), change nothing the second time, and uninstall back to the original
byte for byte; on a node without Python, exactly what the release's install.sh leaves. The production path (nsenter
into PID 1) is checked through a stand-in ``nsenter`` that records its command line. The image
goes to the test registry with skopeo and comes back through containerd's CRI; two builds give
the same digest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from provider.install import artifact as artifacts
from tests.conftest import ROOT
from tests.infra.containerd import Containerd
from tests.infra.fixtures import RegistryFixture
from tests.infra.images import OCIImage, push_image
from tests.test_install import CASES, CONFIG, DATA, PYTHON, dump, make_root

sys.path.insert(0, str(ROOT / "packaging"))
import build_image
import build_release
import build_standalone

ARCH = artifacts.node_arch()
VERSION = build_release.project_version()
STAGING = "/var/lib/registry-credential-provider/staging"
INSTALL_SH = ROOT / "node-config" / "install.sh"


STANDALONE = build_release.standalone_artifact_name(VERSION, ARCH)


def make_release(directory: Path, zipapp: Path, standalone: Path) -> Path:
    """A release directory as ``make dist`` lays it out, for this CPU only: both forms."""
    directory.mkdir(parents=True)
    shutil.copyfile(zipapp, directory / build_release.artifact_name(VERSION, ARCH))
    shutil.copyfile(standalone, directory / STANDALONE)
    shutil.copyfile(INSTALL_SH, directory / "install.sh")
    for name in ("install.sh", build_release.artifact_name(VERSION, ARCH)):
        (directory / name).chmod(0o755)
    (directory / build_release.PACKAGES).write_text("# the test release\n")
    build_release.write_sums(directory)
    return directory


@pytest.fixture(scope="session")
def standalone_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This CPU's self-contained archive (built once, then cached by input hash)."""
    return build_standalone.build(ARCH, tmp_path_factory.mktemp("standalone"))


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory: pytest.TempPathFactory, zipapp: Path, standalone_archive: Path) -> Path:
    return make_release(tmp_path_factory.mktemp("release") / "release", zipapp, standalone_archive)


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> build_image.Built:
    return build_image.build_image(release_dir, tmp_path_factory.mktemp("image") / "out", arches=[ARCH])


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory, image: build_image.Built) -> Path:
    bundle = tmp_path_factory.mktemp("bundle") / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{image.layout}:{VERSION}-linux-{ARCH}", str(bundle)],
        check=True, capture_output=True,
    )  # fmt: skip
    return bundle / "rootfs"


def blob(layout: Path, digest: str) -> Any:
    """A JSON blob of the layout (a manifest, an index or a config)."""
    return json.loads((layout / "blobs" / "sha256" / digest[7:]).read_bytes())


def node_path(tmp_path: Path, rootfs: Path, *, python: bool = True) -> str:
    """The image's /bin, then what the node offers install.sh: a CPython (or none) and ldd."""
    tools = tmp_path / "node-bin"
    tools.mkdir(exist_ok=True)
    ldd = shutil.which("ldd")
    assert ldd is not None
    (tools / "ldd").symlink_to(ldd)
    if python:
        (tools / "python3").symlink_to(PYTHON)
    return f"{rootfs / 'bin'}:{tools}"


def stage(rootfs: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The init container's command, run by the image's busybox."""
    return subprocess.run(
        [str(rootfs / "bin" / "sh"), str(rootfs / "installer" / "stage.sh")],
        capture_output=True, text=True, env={"LANG": "C.UTF-8", **env}, check=False,
    )  # fmt: skip


def without_staging(tree: str) -> str:
    """A ``dump`` without the staging directory and the content lines of its files."""
    kept: list[str] = []
    skipping = False
    for line in tree.splitlines():
        if not line.startswith("  | "):
            skipping = line.split(" ")[-1].startswith(STAGING) or f" {STAGING}/" in line
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


# --- the build -----------------------------------------------------------------------------------


def test_two_builds_give_the_same_digest_and_bytes(
    tmp_path: Path, release_dir: Path, image: build_image.Built
) -> None:
    copy = tmp_path / "release"
    shutil.copytree(release_dir, copy)
    for path in copy.iterdir():
        os.utime(path, (1_000_000_000, 1_000_000_000))  # other mtimes: they must not matter
    again = build_image.build_image(copy, tmp_path / "out", arches=[ARCH])
    assert again.index_digest == image.index_digest
    assert again.manifests == image.manifests
    for name, archive in image.archives.items():
        assert again.archives[name].read_bytes() == archive.read_bytes(), name
    assert (tmp_path / "out" / "DIGEST").read_text() == image.index_digest + "\n"


def test_the_layout_is_an_index_with_the_standard_annotations(image: build_image.Built) -> None:
    index = blob(image.layout, image.index_digest)
    annotations = index["annotations"]
    assert isinstance(annotations, dict)
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    assert annotations["org.opencontainers.image.version"] == VERSION
    assert annotations["org.opencontainers.image.title"] == "registry-credential-provider"
    assert annotations["org.opencontainers.image.licenses"] == "Apache-2.0 AND GPL-2.0-only"
    if revision.returncode == 0:
        assert annotations["org.opencontainers.image.revision"] == revision.stdout.strip()
    epoch = build_image.source_date_epoch()
    assert annotations["org.opencontainers.image.created"] == build_image.rfc3339(epoch)
    (entry,) = index["manifests"]
    assert entry["platform"] == {"architecture": build_image.GOARCH[ARCH], "os": "linux"}
    manifest = blob(image.layout, entry["digest"])
    assert manifest["annotations"] == annotations
    config = blob(image.layout, manifest["config"]["digest"])
    assert config["config"]["Entrypoint"] == ["/bin/sh", "/installer/stage.sh"]
    assert config["created"] == build_image.rfc3339(epoch)
    tags = [
        m["annotations"][build_image.REF_NAME]
        for m in json.loads((image.layout / "index.json").read_text())["manifests"]
    ]
    assert tags == [VERSION, f"{VERSION}-linux-{ARCH}"]


def test_the_layer_holds_the_release_busybox_and_entry_point_with_fixed_metadata(
    image: build_image.Built, release_dir: Path
) -> None:
    manifest = blob(image.layout, image.manifests[ARCH])
    (layer,) = manifest["layers"]
    epoch = build_image.source_date_epoch()
    with tarfile.open(image.layout / "blobs" / "sha256" / layer["digest"][7:]) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(epoch, 0, 0, "", "")}
        released = sorted(n.split("/", 1)[1] for n in names if n.startswith("release/"))
        assert released == sorted(p.name for p in release_dir.iterdir())
        for name in released:
            extracted = tar.extractfile(f"release/{name}")
            assert extracted is not None
            assert extracted.read() == (release_dir / name).read_bytes()
        entry = tar.extractfile("installer/stage.sh")
        assert entry is not None
        assert entry.read() == build_image.ENTRY_POINT.read_bytes()
        assert tar.getmember("bin/sh").linkname == "busybox"


def test_a_release_without_this_cpus_file_is_refused(tmp_path: Path, release_dir: Path) -> None:
    copy = tmp_path / "release"
    shutil.copytree(release_dir, copy)
    (copy / build_release.artifact_name(VERSION, ARCH)).unlink()
    with pytest.raises(SystemExit, match="run 'make dist' first"):
        build_image.build_image(copy, tmp_path / "out", arches=[ARCH])


# --- the entry point against a scratch host root -------------------------------------------------


@pytest.mark.parametrize("flavour", sorted(CASES))
def test_stage_installs_what_the_installer_installs_and_uninstalls_it(
    flavour: str, tmp_path: Path, rootfs: Path, zipapp: Path
) -> None:
    root = make_root(tmp_path, flavour)
    (root / "var" / "lib").mkdir(mode=0o755, parents=True, exist_ok=True)  # every node has it
    before = dump(root)
    env = {
        "PATH": node_path(tmp_path, rootfs),
        "HOST": str(root),
        "ENTER": "root",
        "CONFIG": str(CONFIG),
        "EXTRA_ARGS": " ".join(CASES[flavour][0]),
    }
    result = stage(rootfs, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"flavour {flavour}" in result.stdout
    artifact = zipapp.read_bytes()
    assert without_staging(dump(root, artifact)) == (DATA / flavour / "after.tree").read_text()
    staged = sorted(os.listdir(root / STAGING.lstrip("/")))
    assert staged == sorted(["PACKAGES.txt", "SHA256SUMS", "config.yaml", "install.sh",
                             build_release.artifact_name(VERSION, ARCH), STANDALONE])  # fmt: skip

    again = stage(rootfs, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change: already installed" in again.stdout

    result = stage(rootfs, {**env, "ACTION": "uninstall"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uninstalled: every file is as it was" in result.stdout
    assert dump(root) == before


def test_stage_dry_run_changes_nothing_but_the_staging_directory(tmp_path: Path, rootfs: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    (root / STAGING.lstrip("/")).parent.mkdir(mode=0o755, parents=True)  # the kubelet's hostPath
    before = dump(root)
    env = {"PATH": node_path(tmp_path, rootfs), "HOST": str(root), "ENTER": "root", "CONFIG": str(CONFIG),
           "EXTRA_ARGS": "--kubelet-version 1.33", "DRY_RUN": "1"}  # fmt: skip
    result = stage(rootfs, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "create" in result.stdout
    assert without_staging(dump(root)) == before


def test_stage_on_a_node_without_python_installs_the_self_contained_form_as_install_sh_does(
    tmp_path: Path, rootfs: Path, release_dir: Path
) -> None:
    """No CPython on the node: the image's install.sh picks the self-contained archive it carries
    (unpacked with the image's busybox tar), and the node ends up exactly as the release's own
    install.sh, run by hand beside the same files, leaves an identical node; uninstall restores it."""
    root = make_root(tmp_path / "by-image", "kubeadm", python=False)
    (root / "var" / "lib").mkdir(mode=0o755, parents=True, exist_ok=True)
    before = dump(root)
    env = {"PATH": node_path(tmp_path, rootfs, python=False), "HOST": str(root), "ENTER": "root",
           "CONFIG": str(CONFIG), "EXTRA_ARGS": "--kubelet-version 1.33"}  # fmt: skip
    result = stage(rootfs, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no CPython 3.9-3.13 on PATH: installing the self-contained form" in result.stderr
    bin_dir = root / "usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
    link = os.readlink(bin_dir / "registry-credential-provider")
    assert link == f"registry-credential-provider-standalone/{VERSION}/registry-credential-provider"

    by_hand = make_root(tmp_path / "by-hand", "kubeadm", python=False)
    (by_hand / "var" / "lib").mkdir(mode=0o755, parents=True, exist_ok=True)
    hand = subprocess.run(
        [str(rootfs / "bin" / "sh"), str(release_dir / "install.sh"), "--root", str(by_hand),
         "--config", str(CONFIG), "--kubelet-version", "1.33"],
        capture_output=True, text=True, env={"LANG": "C.UTF-8", "PATH": env["PATH"]}, check=False,
    )  # fmt: skip
    assert hand.returncode == 0, hand.stdout + hand.stderr
    assert without_staging(dump(root)).replace(str(root), "ROOT") == dump(by_hand).replace(
        str(by_hand), "ROOT"
    )

    result = stage(rootfs, {**env, "ACTION": "uninstall"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(root) == before


def test_stage_refuses_a_damaged_image_and_stages_nothing(tmp_path: Path, rootfs: Path) -> None:
    damaged = tmp_path / "rootfs"
    shutil.copytree(rootfs, damaged, symlinks=True)
    target = damaged / "release" / build_release.artifact_name(VERSION, ARCH)
    target.write_bytes(target.read_bytes() + b"\0")
    root = make_root(tmp_path, "kubeadm")
    env = {"PATH": node_path(tmp_path, damaged), "HOST": str(root), "ENTER": "root", "CONFIG": str(CONFIG)}
    result = stage(damaged, env)
    assert result.returncode == 1
    assert "does not match SHA256SUMS: refusing the image" in result.stderr
    assert not (root / STAGING.lstrip("/")).exists()


def fake_nsenter(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in ``nsenter`` that appends its command line to a log and succeeds."""
    log = tmp_path / "nsenter.log"
    script = tmp_path / "nsenter"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    return script, log


def test_stage_runs_install_sh_in_the_nodes_namespaces(tmp_path: Path, rootfs: Path) -> None:
    nsenter, log = fake_nsenter(tmp_path)
    host = tmp_path / "host"
    env = {
        "PATH": str(rootfs / "bin"),
        "NSENTER": str(nsenter),
        "HOST": str(host),
        "CONFIG": str(CONFIG),
        "FLAVOR": "eks",
        "TOKEN_MODE": "1",
        "AUDIENCE": "sts.amazonaws.com",
        "EXTRA_ARGS": "--eks-mode instead",
    }
    result = stage(rootfs, env)
    assert result.returncode == 0, result.stderr
    enter = "--target 1 --mount --uts --ipc --net --pid -- /bin/sh"
    assert log.read_text().splitlines() == [
        f"{enter} {STAGING}/install.sh --config {STAGING}/config.yaml --flavor eks --token-mode "
        "--audience sts.amazonaws.com --eks-mode instead --restart-kubelet"
    ]
    assert (host / STAGING.lstrip("/") / "config.yaml").read_bytes() == CONFIG.read_bytes()
    log.unlink()

    result = stage(rootfs, {**env, "DRY_RUN": "1", "RESTART_KUBELET": "0"})
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[0].endswith("--eks-mode instead --dry-run")
    log.unlink()

    result = stage(rootfs, {**env, "ACTION": "uninstall"})
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        f"{enter} {STAGING}/install.sh --uninstall --restart-kubelet",
        "--target 1 --mount -- rmdir /var/lib/registry-credential-provider",
    ]
    assert not (host / STAGING.lstrip("/")).exists()


def test_stage_replaces_an_earlier_release_in_staging(tmp_path: Path, rootfs: Path) -> None:
    nsenter, _ = fake_nsenter(tmp_path)
    host = tmp_path / "host"
    old = host / STAGING.lstrip("/") / f"registry-credential-provider-0.0.1-linux-{ARCH}"
    old.parent.mkdir(parents=True)
    old.write_text("an older release")
    env = {"PATH": str(rootfs / "bin"), "NSENTER": str(nsenter), "HOST": str(host), "CONFIG": str(CONFIG)}
    result = stage(rootfs, env)
    assert result.returncode == 0, result.stderr
    assert not old.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"ACTION": "remove"}, "ACTION must be install or uninstall"), ({"ENTER": "ssh"}, "ENTER must be"),
     ({"CONFIG": "/nonexistent"}, "no config at /nonexistent")],
)  # fmt: skip
def test_stage_refuses_bad_settings(
    tmp_path: Path, rootfs: Path, setting: dict[str, str], message: str
) -> None:
    env = {"PATH": str(rootfs / "bin"), "HOST": str(tmp_path / "host"), "CONFIG": str(CONFIG), **setting}
    result = stage(rootfs, env)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "host").exists()


# --- through a registry and containerd -----------------------------------------------------------


@pytest.mark.e2e
def test_the_image_is_pushed_with_skopeo_and_pulled_through_cri(
    image: build_image.Built, registry_tls: RegistryFixture, containerd: Containerd
) -> None:
    manifest = blob(image.layout, image.manifests[ARCH])
    config_digest = str(manifest["config"]["digest"])
    oci = OCIImage(image.layout, VERSION, image.index_digest, config_digest)
    user, password = registry_tls.creds
    pushed = push_image(oci, registry_tls.registry, f"fleet/registry-credential-provider:{VERSION}",
                        username=user, password=password, every_platform=True)  # fmt: skip
    by_digest = pushed.rsplit(":", 1)[0] + "@" + image.index_digest
    assert containerd.pull(by_digest, user, password) == config_digest
