"""``tests/infra/system-deps.sh``, the first step of ``make test``: run as a real process, as root
and as an unprivileged user (``setpriv``/``unshare`` switch for real), with a PATH of stubs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra._util import APT_PACKAGE

SCRIPT = Path(__file__).parent / "infra" / "system-deps.sh"
NOBODY = 65534


def as_user(root: bool) -> list[str]:
    """The command prefix that runs a program with euid 0 (``root``) or as nobody, for real."""
    if (os.geteuid() == 0) == root:
        return []
    tool = "unshare" if root else "setpriv"
    found = shutil.which(tool)
    assert found is not None, (
        f"{tool} (util-linux) is needed to run the script as {'root' if root else 'nobody'}"
    )
    if root:
        return [found, "--user", "--map-root-user"]
    return [found, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    """A PATH directory nobody can read too (pytest's tmp_path is root's alone), with ``id`` and
    ``dirname`` (the script's own needs) and a python whose venv works."""
    directory = Path(tempfile.mkdtemp(prefix="sysdeps-"))
    directory.chmod(0o755)
    for tool in ("id", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (directory / tool).symlink_to(found)
    stub(directory / "python3", "exit 0")
    yield directory
    shutil.rmtree(directory)


def stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run(bin_dir: Path, *, root: bool, binfmt: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The script as ``root`` or nobody; ``binfmt``: its binfmt_misc directory (default: one
    where qemu-aarch64 is registered and enabled)."""
    if binfmt is None:
        binfmt = bin_dir / "binfmt_misc"
        binfmt.mkdir(exist_ok=True)
        (binfmt / "qemu-aarch64").write_text(
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
        )
    return subprocess.run(
        [*as_user(root), "/bin/sh", str(SCRIPT)],
        env={"PATH": str(bin_dir), "PYTHON": "python3", "LANG": "C.UTF-8", "BINFMT_MISC": str(binfmt)},
        capture_output=True,
        text=True,
        check=False,
    )


def fake_apt_get(bin_dir: Path, log: Path, *, creates: list[str]) -> None:
    """An ``apt-get`` that records each call and, on ``install``, puts ``creates`` on PATH."""
    chmod = shutil.which("chmod")
    made = "; ".join(f"printf '#!/bin/sh\\n' > {bin_dir / p}; {chmod} 755 {bin_dir / p}" for p in creates)
    stub(bin_dir / "apt-get", f'echo "$*" >> {log}\ncase "$1" in install) {made or ":"};; esac')


def test_not_root_one_line_names_every_missing_program_and_the_command(bin_dir: Path) -> None:
    stub(bin_dir / "python3", "exit 1")  # no ensurepip: python3-venv is missing too
    result = run(bin_dir, root=False)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    packages = " ".join(dict.fromkeys([*APT_PACKAGE.values(), "python3-venv"]))
    assert lines[0] == (
        f"make test needs {', '.join(APT_PACKAGE)}, python3 -m venv; install them with: "
        f"sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends {packages}'"
    )


def test_not_root_names_only_what_is_missing(bin_dir: Path) -> None:
    for program in APT_PACKAGE:
        if program != "skopeo":
            stub(bin_dir / program, "exit 0")
    result = run(bin_dir, root=False)
    assert result.returncode == 1
    assert result.stderr == (
        "make test needs skopeo; install them with: "
        "sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends skopeo'\n"
    )


def test_everything_present_calls_no_apt(bin_dir: Path) -> None:
    for program in APT_PACKAGE:
        stub(bin_dir / program, "exit 0")
    log = bin_dir / "apt.log"
    fake_apt_get(bin_dir, log, creates=[])
    result = run(bin_dir, root=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not log.exists()


def test_root_updates_once_then_installs_every_missing_package(bin_dir: Path) -> None:
    stub(bin_dir / "make", "exit 0")
    log = bin_dir / "apt.log"
    missing = [p for p in APT_PACKAGE if p != "make"]
    fake_apt_get(bin_dir, log, creates=missing)
    result = run(bin_dir, root=True)
    assert result.returncode == 0, result.stderr
    packages = " ".join(dict.fromkeys(APT_PACKAGE[p] for p in missing))
    assert log.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {packages}",
    ]


def test_root_fails_when_the_install_did_not_provide_a_program(bin_dir: Path) -> None:
    for program in APT_PACKAGE:
        if program != "umoci":
            stub(bin_dir / program, "exit 0")
    log = bin_dir / "apt.log"
    fake_apt_get(bin_dir, log, creates=[])
    result = run(bin_dir, root=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "still missing after apt-get install: umoci"
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq --no-install-recommends umoci"]


# --- binfmt_misc: qemu-aarch64 for the aarch64 artifacts ----------------------------------------


def all_present(bin_dir: Path) -> None:
    """Every program of system-packages.txt on PATH (no apt call)."""
    for program in APT_PACKAGE:
        stub(bin_dir / program, "exit 0")


def test_binfmt_unmounted_is_mounted_and_qemu_aarch64_registered(bin_dir: Path) -> None:
    all_present(bin_dir)
    binfmt = bin_dir / "binfmt"
    binfmt.mkdir()
    binfmt.chmod(0o777)
    log = bin_dir / "calls.log"
    stub(bin_dir / "mount", f'echo "mount $*" >> {log}; : > {binfmt}/register')
    stub(
        bin_dir / "update-binfmts", f'echo "update-binfmts $*" >> {log}; echo enabled > {binfmt}/qemu-aarch64'
    )
    result = run(bin_dir, root=True, binfmt=binfmt)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        f"mount -t binfmt_misc binfmt_misc {binfmt}",
        "update-binfmts --enable qemu-aarch64",
    ]
    assert "registered qemu-aarch64" in result.stderr


def test_binfmt_that_cannot_be_mounted_fails_with_one_line(bin_dir: Path) -> None:
    all_present(bin_dir)
    binfmt = bin_dir / "binfmt"
    binfmt.mkdir()
    stub(bin_dir / "mount", "exit 32")
    result = run(bin_dir, root=True, binfmt=binfmt)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "binfmt_misc cannot be mounted" in line


def test_binfmt_registration_that_does_not_take_fails_with_one_line(bin_dir: Path) -> None:
    all_present(bin_dir)
    binfmt = bin_dir / "binfmt"
    binfmt.mkdir()
    (binfmt / "register").write_text("")
    stub(bin_dir / "update-binfmts", "exit 2")
    result = run(bin_dir, root=True, binfmt=binfmt)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "did not register it" in line


def test_binfmt_missing_as_nobody_says_the_commands(bin_dir: Path) -> None:
    all_present(bin_dir)
    binfmt = bin_dir / "binfmt"
    binfmt.mkdir()
    binfmt.chmod(0o755)
    result = run(bin_dir, root=False, binfmt=binfmt)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "update-binfmts --enable qemu-aarch64" in line
