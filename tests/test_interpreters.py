"""The zipapp answers every golden request on every CPython it supports: pyenv's 3.9-3.13 (one on
the kubelet's PATH at a time) and a real distribution's 3.9, Debian bullseye's, in a chroot made
with debootstrap (its glibc 2.31), exec'd the way the kubelet does it through the simulator.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import goldencases
from tests.conftest import kubelet_environ
from tests.infra.debianroot import copy_root, debian_root

PYENV = Path("/root/.pyenv/versions")
SUPPORTED = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
# A systemd service's PATH: what the kubelet (and so the zipapp's boot script) sees on a node.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pyenv_python(minor: int) -> Path:
    found = sorted(PYENV.glob(f"3.{minor}.*/bin/python3.{minor}"))
    if not found:
        pytest.fail(
            f"no CPython 3.{minor} under {PYENV}: install it with `pyenv install 3.{minor}`", pytrace=False
        )
    return found[-1]


def unpacked_pythons(pex_root: Path) -> set[str]:
    """The ``pythonX.Y`` of every venv the zipapp unpacked under ``pex_root``."""
    return {lib.name for lib in pex_root.glob("venvs/*/*/*/lib/python3.*")}


@pytest.mark.parametrize("version", SUPPORTED, ids=[f"{m}.{n}" for m, n in SUPPORTED])
def test_every_golden_request_on_pyenv_cpython(
    version: tuple[int, int], zipapp: Path, tmp_path: Path
) -> None:
    python = pyenv_python(version[1])
    pex_root = tmp_path / "pex"
    # A PATH with this interpreter alone (the boot script cannot pick another one) and ldd,
    # which pex runs to tell glibc from musl.
    path = tmp_path / "path"
    path.mkdir()
    (path / python.name).symlink_to(python)
    ldd = shutil.which("ldd")
    assert ldd is not None
    (path / "ldd").symlink_to(ldd)
    env = kubelet_environ({"PATH": str(path), "PEX_ROOT": str(pex_root)})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / zipapp.name
    shutil.copy2(zipapp, plugin)
    simulated = goldencases.check_all(tmp_path / "cases", str(tmp_path / "cases"), plugin, env)
    assert unpacked_pythons(pex_root) == {f"python{version[0]}.{version[1]}"}
    assert len(simulated) == len(goldencases.CASES) - 1


@pytest.fixture(scope="session")
def bullseye_root() -> Path:
    """The cached bullseye root (debootstrap --variant=minbase --include=python3)."""
    return debian_root("bullseye", ("python3",))


def test_every_golden_request_on_bullseye_python3_in_a_chroot(
    bullseye_root: Path, zipapp: Path, tmp_path: Path
) -> None:
    root = copy_root(bullseye_root, tmp_path / "root")
    version = subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.match(r"3\.9\.\d+ ", version), version
    shutil.copy2(zipapp, root / "usr" / "local" / "bin" / zipapp.name)
    (root / "cases").mkdir()
    # What the kubelet execs: a plugin that enters the chroot and runs the zipapp's own boot
    # script there, which finds bullseye's python3.9 on the node's PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / zipapp.name
    plugin.write_text(f'#!/bin/sh\nexec chroot {root} /usr/local/bin/{zipapp.name} "$@"\n')
    plugin.chmod(0o755)
    env = kubelet_environ(
        {"PATH": NODE_PATH, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": "/var/cache/rcp-test"}
    )
    env.pop("PEX_ROOT", None)
    simulated = goldencases.check_all(root / "cases", "/cases", plugin, env)
    assert len(simulated) == len(goldencases.CASES) - 1
    # The runtime root the zipapp was built with, inside the chroot, holds a venv of bullseye's 3.9.
    assert unpacked_pythons(root / "var/lib/registry-credential-provider/pex") == {"python3.9"}


# Run inside the zipapp's own environment: every msgspec Struct's annotations evaluated as msgspec
# evaluates them when it first decodes one (CPython 3.9 cannot evaluate ``str | None``).
ANNOTATIONS_CHECK = """
import importlib, pkgutil
import msgspec, msgspec._utils, provider
failures = []
for info in pkgutil.walk_packages(provider.__path__, "provider."):
    if info.name.endswith("__main__"):
        continue
    module = importlib.import_module(info.name)
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__ and issubclass(value, msgspec.Struct):
            try:
                msgspec._utils.get_class_annotations(value)
            except Exception as error:
                failures.append(f"{value.__module__}.{value.__qualname__}: {error}")
print(provider.__file__)
print("\\n".join(failures) or "every Struct's annotations evaluate")
"""


def test_every_struct_annotation_evaluates_on_cpython_3_9(zipapp: Path, tmp_path: Path) -> None:
    """A ``str | None`` in a Struct passes mypy, ruff and every test on 3.10+, and only fails on
    3.9 when that Struct is first decoded; this finds it in every module at once."""
    script = tmp_path / "annotations.py"
    script.write_text(ANNOTATIONS_CHECK)
    env = kubelet_environ({"PEX_ROOT": str(tmp_path / "pex"), "PEX_INTERPRETER": "1"})
    done = subprocess.run(
        [str(pyenv_python(9)), str(zipapp), str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    where, verdict = done.stdout.strip().split("\n", 1)
    assert where.startswith(str(tmp_path / "pex")), where  # the zipapp's copy, not this checkout's
    assert verdict == "every Struct's annotations evaluate"
