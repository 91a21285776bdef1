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
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from provider import __version__
from provider.releasenames import NAME, standalone_dir
from tests import goldencases
from tests.conftest import CACHE_DIR_ENV, ROOT, kubelet_environ
from tests.test_credhelper import read_pid, wait_gone
from tests.test_install import CONFIG, cli, dump, make_root, shell_env

sys.path.insert(0, str(ROOT / "packaging"))
import build_release
import build_standalone
import glibc_floor

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


def _answers_in_chroot(root: Path, executable: str, tmp_path: Path) -> list[str]:
    """Every golden case against ``executable`` run inside ``root`` (tests/goldencases.py: the
    exact request's answer is the golden response byte for byte, and the kubelet simulator's
    exec of it too); the cases also pulled through the simulator."""
    bin_dir = tmp_path / "bin"
    _plugin_wrapper(bin_dir, root, executable)
    (root / CHROOT_CACHE.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "golden").mkdir(exist_ok=True)
    env = kubelet_environ({CACHE_DIR_ENV: CHROOT_CACHE, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return goldencases.check_all(root / "golden", "/golden", bin_dir / NAME, env)


def _assert_no_python(root: Path) -> None:
    found = [
        str(p.relative_to(root)) for p in root.rglob("python3*") if "/opt/" not in f"/{p.relative_to(root)}"
    ]
    assert found == [], f"the minimal root has Python: {found}"


def _zipapp_answers(zipapp: Path, tmp_path: Path) -> list[str]:
    """The host zipapp against the same golden cases (same checks, same bytes)."""
    (tmp_path / "host").mkdir()
    env = kubelet_environ({CACHE_DIR_ENV: str(tmp_path / "zipapp-cache")})
    return goldencases.check_all(tmp_path / "host", str(tmp_path / "host"), zipapp, env)


def test_x86_64_standalone_answers_the_goldens_in_a_root_without_python(
    chroots: dict[str, Path], zipapp: Path, tmp_path: Path
) -> None:
    """Both answer every golden request with the golden response's bytes: the same bytes."""
    root = chroots["x86_64"]
    _assert_no_python(root)
    simulated = _zipapp_answers(zipapp, tmp_path)
    executable = f"/opt/{standalone_dir(__version__, 'x86_64')}/{NAME}"
    assert _answers_in_chroot(root, executable, tmp_path) == simulated
    assert simulated, "no case went through the kubelet simulator"


def test_aarch64_standalone_answers_the_goldens_under_qemu(chroots: dict[str, Path], tmp_path: Path) -> None:
    root = chroots["aarch64"]
    _assert_no_python(root)
    executable = f"/opt/{standalone_dir(__version__, 'aarch64')}/{NAME}"
    with open(root / executable.lstrip("/"), "rb") as handle:
        header = handle.read(20)
    assert header[:4] == b"\x7fELF", "not an ELF"
    assert int.from_bytes(header[18:20], "little") == 183, "not an aarch64 ELF (e_machine EM_AARCH64)"
    assert _answers_in_chroot(root, executable, tmp_path)


def test_aarch64_zipapp_answers_the_goldens_on_arm64_bullseye_python(
    aarch64_zipapp: Path, tmp_path: Path
) -> None:
    root = _copy_root(build_standalone.build_root("aarch64"), tmp_path / "root")
    (root / "opt").mkdir(exist_ok=True)
    shutil.copyfile(aarch64_zipapp, root / "opt" / NAME)
    (root / "opt" / NAME).chmod(0o755)
    assert _answers_in_chroot(root, f"/opt/{NAME}", tmp_path)


HELPER_REPLY = '{"ServerURL": "registry.example.com", "Username": "u", "Secret": "s"}'


def answer_through_a_helper(
    standalone: dict[str, Path], tmp_path: Path, helper_body: str, environ: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """This CPU's self-contained form, unpacked, answering for registry.example.com from a
    docker credential helper whose shell script ends with ``helper_body`` (which must print the
    reply), under the kubelet's environment plus ``environ``."""
    arch = build_standalone.host_arch()
    with tarfile.open(standalone[arch]) as tar:
        tar.extractall(tmp_path / "opt")  # noqa: S202 - our own archive
    executable = tmp_path / "opt" / standalone_dir(__version__, arch) / NAME
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-probe"
    helper.write_text(f"#!/bin/sh\ncat >/dev/null\n{helper_body}")
    helper.chmod(0o755)
    (tmp_path / "auth.json").write_text('{"credsStore": "probe"}')
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
        f"rules:\n  - backend: dockerconfig\n    files: [{tmp_path / 'auth.json'}]\n"
    )
    request = {"kind": "CredentialProviderRequest", "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
               "image": "registry.example.com/app"}  # fmt: skip
    env = kubelet_environ({CACHE_DIR_ENV: str(tmp_path / "cache"), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    env.pop("LD_LIBRARY_PATH", None)
    env.update(environ)
    result = subprocess.run(
        [str(executable), "get-credentials", "--config", str(config)],
        input=json.dumps(request).encode(), capture_output=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["auth"]["registry.example.com"]["username"] == "u"
    return result


def test_standalone_ends_a_helpers_descendant_in_its_own_session(
    standalone: dict[str, Path], tmp_path: Path
) -> None:
    """ctypes works in the bundle though PyInstaller's bootstrap no longer imports it
    (build_standalone.CTYPES_HOOK): the credential helper's call makes the process the subreaper
    of its descendants through ctypes, so a descendant that left the helper's session is found
    and ended; without ctypes it would outlive the call (or the call would fail)."""
    answer_through_a_helper(
        standalone,
        tmp_path,
        f"setsid sh -c 'echo $$ > {tmp_path}/session; exec sleep 30' &\n"
        f"while [ ! -s {tmp_path}/session ]; do sleep 0.01; done\necho '{HELPER_REPLY}'\n",
        {},
    )
    leader = read_pid(tmp_path / "session")
    assert wait_gone(leader), f"the helper's descendant {leader} outlived the call"


@pytest.mark.parametrize("node_library_path", [None, "/opt/node/lib"], ids=["unset", "set"])
def test_a_credential_helper_gets_the_nodes_environment_not_the_bundles(
    standalone: dict[str, Path], tmp_path: Path, node_library_path: str | None
) -> None:
    """PyInstaller's bootloader points LD_LIBRARY_PATH into the bundle and sets _PYI_* for itself;
    a helper inheriting them loaded the bundle's old libz, libssl, libpython instead of its own
    (frozenenv.restore gives it the environment the kubelet started us with)."""
    given = {} if node_library_path is None else {"LD_LIBRARY_PATH": node_library_path}
    answer_through_a_helper(
        standalone, tmp_path, f"env > {tmp_path}/helper.env\necho '{HELPER_REPLY}'\n", given
    )
    seen = dict(
        line.split("=", 1) for line in (tmp_path / "helper.env").read_text().splitlines() if "=" in line
    )
    assert seen.get("LD_LIBRARY_PATH") == node_library_path
    assert "LD_LIBRARY_PATH_ORIG" not in seen
    assert [name for name in seen if name.startswith(("_PYI_", "_MEI"))] == []


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


def test_install_sh_without_python_installs_the_standalone_and_the_kubelet_runs_it(
    standalone: dict[str, Path], zipapp: Path, tmp_path: Path
) -> None:
    """install.sh on a PATH with no Python picks the self-contained tarball beside it; its own
    installer puts the directory and the link into a kubeadm root; the kubelet simulator execs
    the link (PyInstaller's bootloader finds its files through it) and the answers are the
    zipapp's; doctor says which form it is."""
    arch = build_standalone.host_arch()
    release = tmp_path / "release"
    release.mkdir()
    shutil.copyfile(ROOT / "node-config" / "install.sh", release / "install.sh")
    shutil.copyfile(standalone[arch], release / standalone[arch].name)
    root = make_root(tmp_path, "kubeadm", python=False)
    before = dump(root)
    env = shell_env(tmp_path, {}, "ID=flatcar\n")
    result = subprocess.run(
        ["/bin/sh", str(release / "install.sh"), "--root", str(root), "--config", str(CONFIG),
         "--kubelet-version", "1.33"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing the self-contained form" in result.stderr
    assert "validate: the kubelet would start with this config" in result.stdout
    bin_dir = root / "usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
    assert (bin_dir / NAME).is_symlink()
    assert os.readlink(bin_dir / NAME) == f"{NAME}-standalone/{__version__}/{NAME}"

    (tmp_path / "golden").mkdir()
    env = kubelet_environ({CACHE_DIR_ENV: str(tmp_path / "standalone-cache")})
    simulated = goldencases.check_all(tmp_path / "golden", str(tmp_path / "golden"), bin_dir / NAME, env)
    assert simulated == _zipapp_answers(zipapp, tmp_path)
    config = next((tmp_path / "golden").rglob("provider-config*"))
    doctor = subprocess.run(
        [str(bin_dir / NAME), "doctor", "--config", str(config)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert "self-contained (brings its own CPython 3.9" in doctor.stdout + doctor.stderr

    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert dump(root) == before


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_no_gpl_3_library_is_bundled(standalone: dict[str, Path], arch: str) -> None:
    """GNU readline (GPL-3.0) came in with CPython's readline module, which nothing here uses."""
    with tarfile.open(standalone[arch]) as tar:
        names = [Path(member.name).name for member in tar.getmembers()]
    assert [n for n in names if n.startswith(("libreadline", "libtinfo", "readline."))] == []
