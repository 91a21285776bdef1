"""``install --artifact <self-contained .tar.gz>`` against a temporary ``--root`` with no Python:
the directory under ``<bin dir>/<name>-standalone/<version>``, the kubelet's executable a link
into it, idempotence, the dry run, an upgrade, and ``uninstall`` putting back every byte.

The release file here is a stand-in with the real layout (its executable a shell script that
answers ``--version``); tests/test_standalone.py installs the real one and runs it.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from provider.install import artifact as artifacts
from provider.install.record import RECORD
from provider.releasenames import NAME, standalone_dir, standalone_name
from tests.test_install import CONFIG, cli, dump, make_root

BIN_DIR = "usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"


def fake_standalone(directory: Path, version: str, *, extra: tarfile.TarInfo | None = None) -> Path:
    """A self-contained release file for this CPU whose executable prints its version."""
    arch = artifacts.node_arch()
    top = standalone_dir(version, arch)
    program = f"#!/bin/sh\necho '{NAME} {version} (stand-in)'\n".encode()
    members = [
        (top, None, 0o755),
        (f"{top}/{NAME}", program, 0o755),
        (f"{top}/_internal", None, 0o755),
        (f"{top}/_internal/provider", None, 0o755),
        (f"{top}/_internal/provider/__init__.pyc", b"\x61\x0d\x0d\x0a" + b"\0" * 12, 0o644),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    path = directory / standalone_name(version, arch)
    path.write_bytes(buffer.getvalue())
    return path


def install(root: Path, artifact: Path, *extra: str) -> tuple[int, str, str]:
    return cli(
        "install", "--root", str(root), "--artifact", str(artifact), "--config", str(CONFIG),
        "--kubelet-version", "1.33", *extra,
    )  # fmt: skip


def test_installs_the_directory_and_links_the_plugin_into_it(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    release = fake_standalone(tmp_path, "0.1.0")
    before = dump(root)
    code, out, err = install(root, release)
    assert code == 0, out + err
    home = f"/{BIN_DIR}/{NAME}-standalone/0.1.0"
    assert f"create    {home}  (the self-contained form" in out
    plugin = root / BIN_DIR / NAME
    assert os.readlink(plugin) == f"{NAME}-standalone/0.1.0/{NAME}"
    assert (root / home.lstrip("/") / "_internal" / "provider" / "__init__.pyc").is_file()
    assert (root / home.lstrip("/") / artifacts.STANDALONE_RELEASE_COPY).read_bytes() == release.read_bytes()
    assert "validate: the kubelet would start with this config" in out
    assert '"standalone_dirs"' in (root / RECORD.lstrip("/")).read_text()
    after = dump(root)

    code, again, err = install(root, release)
    assert code == 0, again + err
    assert "nothing to change: already installed" in again
    assert "create" not in again
    assert dump(root) == after

    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert f"remove    {home}  (the self-contained form)" in out
    assert dump(root) == before


def test_dry_run_shows_the_directory_and_the_link_and_writes_nothing(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    release = fake_standalone(tmp_path, "0.1.0")
    before = dump(root)
    code, out, err = install(root, release, "--dry-run")
    assert code == 0, out + err
    assert dump(root) == before
    home = f"/{BIN_DIR}/{NAME}-standalone/0.1.0"
    assert f"create    {home}  (the self-contained form, unpacked from {release}" in out
    assert f"absent  =>  -> {NAME}-standalone/0.1.0/{NAME}" in out
    assert "dry run: nothing written" in out


def test_an_upgrade_switches_the_link_and_drops_the_old_directory(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    before = dump(root)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    assert install(root, fake_standalone(old, "0.1.0"))[0] == 0
    code, out, err = install(root, fake_standalone(new, "0.2.0"))
    assert code == 0, out + err
    assert os.readlink(root / BIN_DIR / NAME) == f"{NAME}-standalone/0.2.0/{NAME}"
    assert sorted(p.name for p in (root / BIN_DIR / f"{NAME}-standalone").iterdir()) == ["0.2.0"]
    assert cli("uninstall", "--root", str(root))[0] == 0
    assert dump(root) == before


def test_a_zipapp_node_can_take_the_standalone_and_back(tmp_path: Path, zipapp: Path) -> None:
    """Python on the node does not stop the self-contained form; going back to the zipapp drops
    its directory; uninstall restores the node as it was before the first install."""
    root = make_root(tmp_path, "kubeadm")
    before = dump(root)
    assert install(root, fake_standalone(tmp_path, "0.1.0"))[0] == 0
    code, out, err = install(root, zipapp)
    assert code == 0, out + err
    assert (root / BIN_DIR / NAME).read_bytes() == zipapp.read_bytes()
    assert not (root / BIN_DIR / f"{NAME}-standalone" / "0.1.0").exists()
    assert cli("uninstall", "--root", str(root))[0] == 0
    assert dump(root) == before


def test_refuses_a_member_that_would_land_outside_its_directory(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    escape = tarfile.TarInfo(f"{standalone_dir('0.1.0', artifacts.node_arch())}/evil")
    escape.type = tarfile.SYMTYPE
    escape.linkname = "../../etc/passwd"
    before = dump(root)
    code, out, err = install(root, fake_standalone(tmp_path, "0.1.0", extra=escape))
    assert code == 1, out + err
    assert "would land outside its directory" in err
    assert dump(root) == before


def test_refuses_a_standalone_for_another_cpu(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    other = "aarch64" if artifacts.node_arch() == "x86_64" else "x86_64"
    code, out, err = install(root, fake_standalone(tmp_path, "0.1.0"), "--arch", other)
    assert code == 1, out + err
    assert f"this node is {other}: use the release file ending in -linux-{other}-standalone.tar.gz" in err


def test_refuses_a_file_that_is_neither_form(tmp_path: Path) -> None:
    root = make_root(tmp_path, "kubeadm", python=False)
    bogus = tmp_path / "registry-credential-provider-0.1.0-linux-x86_64-standalone.tar.gz"
    bogus.write_bytes(b"garbage\n")
    before = dump(root)
    code, out, err = install(root, bogus)
    assert code == 1, out + err
    assert err.count("\n") == 1
    assert "is not a registry-credential-provider release file: neither a zipapp" in err
    assert dump(root) == before
