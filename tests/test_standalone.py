"""The self-contained form (``make standalone``): its glibc floor, and the golden requests through
the kubelet simulator against it in a minimal bullseye chroot with no Python in it, byte for byte
the zipapp's answers; the same for aarch64 under qemu-user-static, with the aarch64 zipapp run by
an arm64 bullseye CPython 3.9.

Needs root, debootstrap and qemu-user-static (tests/infra/system-packages.txt). The first run
debootstraps the roots and builds (minutes; arm64 emulated); later runs take them from
``build_standalone.CACHE``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider import __version__
from provider.releasenames import NAME, standalone_dir
from tests.conftest import CACHE_DIR_ENV, ROOT, kubelet_environ
from tests.kubelet_sim import KubeletSimulator

sys.path.insert(0, str(ROOT / "packaging"))
import build_release
import build_standalone
import glibc_floor

GOLDEN = ROOT / "tests" / "data" / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
CHROOT_CACHE = "/var/cache/rcp-test"


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The self-contained archive per architecture (built once, then cached by input hash)."""
    out = tmp_path_factory.mktemp("standalone")
    return {arch: build_standalone.build(arch, out) for arch in build_release.ARCHES}


@pytest.fixture(scope="session")
def aarch64_zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release-aarch64") / "dist"
    (artifact,) = build_release.build_release(out, arches=["aarch64"], log=False)
    return artifact.path


def _copy_root(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


@pytest.fixture(scope="session")
def chroots(tmp_path_factory: pytest.TempPathFactory, standalone: dict[str, Path]) -> dict[str, Path]:
    """Per architecture, a copy of the minimal bullseye root with the self-contained form
    unpacked in ``/opt`` (and nothing else added)."""
    roots = {}
    for arch, archive in standalone.items():
        root = _copy_root(build_standalone.minbase_root(arch), tmp_path_factory.mktemp(arch) / "root")
        with tarfile.open(archive) as tar:
            tar.extractall(root / "opt")  # noqa: S202 - our own archive
        roots[arch] = root
    return roots


def _plugin_wrapper(bin_dir: Path, root: Path, executable: str) -> None:
    """The kubelet's bin dir entry: the plugin, run inside ``root`` (argv, stdin, env passed on)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / NAME
    wrapper.write_text(f'#!/bin/sh\nexec chroot {root} {executable} "$@"\n')
    wrapper.chmod(0o755)


def _kubelet_config(config: str, api_version: str) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [
            {
                "name": NAME,
                "apiVersion": api_version,
                "matchImages": ["*", "*.*", "*.*.*", "*.*:*"],
                "defaultCacheDuration": "5m",
                "args": ["get-credentials", "--config", config],
            }
        ],
    }


def _case(root: Path, case: str) -> tuple[str, str, bytes, bytes]:
    """Copy ``case`` into ``root/golden`` with ``{dir}`` filled in as the chroot sees it; the
    config's path in the chroot, the image, the request and the expected response."""
    workdir = root / "golden" / case
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(GOLDEN / case, workdir)
    (config,) = [p for p in workdir.iterdir() if p.stem == "provider-config"]
    config.write_text(config.read_text().replace("{dir}", f"/golden/{case}"))
    request = (workdir / "request.json").read_bytes()
    return (
        f"/golden/{case}/{config.name}",
        json.loads(request)["image"],
        request,
        (workdir / "response.json").read_bytes(),
    )


def _answers_in_chroot(
    root: Path, executable: str, tmp_path: Path
) -> Iterator[tuple[str, bytes, bytes, bytes]]:
    """Per golden case: the exact request's answer and the kubelet simulator's exec of the
    plugin (its stdout), both run in ``root``, and the expected response."""
    bin_dir = tmp_path / "bin"
    _plugin_wrapper(bin_dir, root, executable)
    (root / CHROOT_CACHE.lstrip("/")).mkdir(parents=True, exist_ok=True)
    env = kubelet_environ({CACHE_DIR_ENV: CHROOT_CACHE, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    for case in CASES:
        config, image, request, expected = _case(root, case)
        direct = subprocess.run(
            [str(bin_dir / NAME), "get-credentials", "--config", config],
            input=request,
            capture_output=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert (direct.returncode, direct.stderr) == (0, b""), (case, direct.stderr.decode())
        api_version = json.loads(request)["apiVersion"]
        sim = KubeletSimulator(_kubelet_config(config, api_version), bin_dir, base_env=env, timeout=120)
        sim.lookup(image)
        (record,) = sim.execs
        assert (record.exit_code, record.stderr) == (0, b""), (case, record.stderr.decode())
        yield case, direct.stdout, record.stdout, expected


def _assert_no_python(root: Path) -> None:
    found = [
        str(p.relative_to(root)) for p in root.rglob("python3*") if "/opt/" not in f"/{p.relative_to(root)}"
    ]
    assert found == [], f"the minimal root has Python: {found}"


def _zipapp_answers(zipapp: Path, tmp_path: Path) -> dict[str, tuple[bytes, bytes]]:
    """The host zipapp's answers to the same cases, directly and through the simulator (its
    config files are copies in ``tmp_path/host``, named by their host paths)."""
    host = tmp_path / "host"
    bin_dir = tmp_path / "zipapp-bin"
    bin_dir.mkdir()
    (bin_dir / NAME).symlink_to(zipapp)
    env = kubelet_environ({CACHE_DIR_ENV: str(tmp_path / "zipapp-cache")})
    answers = {}
    for case in CASES:
        _case(host, case)
        (config,) = [p for p in (host / "golden" / case).iterdir() if p.stem == "provider-config"]
        config.write_text(config.read_text().replace(f"/golden/{case}", str(host / "golden" / case)))
        request = (host / "golden" / case / "request.json").read_bytes()
        direct = subprocess.run(
            [str(zipapp), "get-credentials", "--config", str(config)],
            input=request,
            capture_output=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert (direct.returncode, direct.stderr) == (0, b""), direct.stderr.decode()
        api_version = json.loads(request)["apiVersion"]
        sim = KubeletSimulator(_kubelet_config(str(config), api_version), bin_dir, base_env=env, timeout=120)
        sim.lookup(json.loads(request)["image"])
        answers[case] = (direct.stdout, sim.execs[0].stdout)
    return answers


def test_x86_64_standalone_answers_the_goldens_in_a_root_without_python(
    chroots: dict[str, Path], zipapp: Path, tmp_path: Path
) -> None:
    root = chroots["x86_64"]
    _assert_no_python(root)
    zipapp_answers = _zipapp_answers(zipapp, tmp_path)
    executable = f"/opt/{standalone_dir(__version__, 'x86_64')}/{NAME}"
    answered = []
    for case, direct, via_sim, expected in _answers_in_chroot(root, executable, tmp_path):
        assert direct == expected, case
        assert (direct, via_sim) == zipapp_answers[case], case
        answered.append(case)
    assert answered == CASES


def test_aarch64_standalone_answers_the_goldens_under_qemu(chroots: dict[str, Path], tmp_path: Path) -> None:
    root = chroots["aarch64"]
    _assert_no_python(root)
    executable = f"/opt/{standalone_dir(__version__, 'aarch64')}/{NAME}"
    with open(root / executable.lstrip("/"), "rb") as handle:
        header = handle.read(20)
    assert header[:4] == b"\x7fELF", "not an ELF"
    assert int.from_bytes(header[18:20], "little") == 183, "not an aarch64 ELF (e_machine EM_AARCH64)"
    answered = [
        case
        for case, direct, _sim, expected in _answers_in_chroot(root, executable, tmp_path)
        if direct == expected
    ]
    assert answered == CASES


def test_aarch64_zipapp_answers_the_goldens_on_arm64_bullseye_python(
    aarch64_zipapp: Path, tmp_path: Path
) -> None:
    root = _copy_root(build_standalone.build_root("aarch64"), tmp_path / "root")
    (root / "opt").mkdir(exist_ok=True)
    shutil.copyfile(aarch64_zipapp, root / "opt" / NAME)
    (root / "opt" / NAME).chmod(0o755)
    answered = [
        case
        for case, direct, _sim, expected in _answers_in_chroot(root, f"/opt/{NAME}", tmp_path)
        if direct == expected
    ]
    assert answered == CASES


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_glibc_floor_is_the_stated_one(standalone: dict[str, Path], arch: str) -> None:
    """README states the floor; a dependency (or a newer builder root) that needs a newer glibc
    fails here."""
    needs = glibc_floor.scan_archive(standalone[arch])
    assert any(e.path.endswith(f"/{NAME}") for e in needs), "the bootloader is an ELF and was scanned"
    assert any("libpython3" in e.path for e in needs)
    worst = [e for e in needs if e.glibc > build_standalone.GLIBC_FLOOR]
    assert worst == [], f"{arch}: these need a newer glibc than {build_standalone.GLIBC_FLOOR}: {worst}"


def test_needed_glibc_reads_readelf_version_needs() -> None:
    output = """Version needs section '.gnu.version_r' contains 2 entries:
 Addr: 0x0000000000000508  Offset: 0x000508  Link: 7 (.dynstr)
  000000: Version: 1  File: libm.so.6  Cnt: 1
  0x0010:   Name: GLIBC_2.29  Flags: none  Version: 5
  0x0020: Version: 1  File: libc.so.6  Cnt: 3
  0x0030:   Name: GLIBC_2.3.4  Flags: none  Version: 4
  0x0040:   Name: GLIBC_2.14  Flags: none  Version: 3
  0x0050:   Name: GLIBC_PRIVATE  Flags: none  Version: 2
"""
    assert glibc_floor.needed_glibc(output) == (2, 29)
    assert glibc_floor.needed_glibc("no version needs") == (0, 0)


def test_scan_finds_a_real_elf_and_its_needs(tmp_path: Path) -> None:
    shutil.copyfile("/bin/true", tmp_path / "true")
    (tmp_path / "script").write_text("#!/bin/sh\n")
    needs = glibc_floor.scan(tmp_path)
    assert [e.path for e in needs] == ["true"]
    assert needs[0].glibc >= (2, 2)
