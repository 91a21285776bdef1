"""Build the self-contained form (``make standalone``): per CPU architecture, one ``.tar.gz`` of
one directory holding the provider, its locked dependencies and a CPython, needing nothing from
the node but glibc.

Why this route (PyInstaller's one-directory mode, built inside a Debian bullseye root):

* The glibc floor of a bundled interpreter is the glibc it was built against. Every input must
  come from a registry reachable here (PyPI, Debian's archive); the oldest CPython Debian's
  archive still serves is bullseye's 3.9 (glibc 2.31), so ``libpython3.9.so`` from bullseye
  sets the floor, and PyInstaller's bootloader (manylinux2014, glibc 2.17) and the locked
  manylinux2014 wheels stay under it. ``glibc_floor.py`` measures the result over every ELF.
* One directory, not PyInstaller's one-file mode: one-file unpacks the whole interpreter into
  a temporary directory on every exec, which the kubelet does on every image pull; the
  directory is exec'd in place, so the disk-cache hit path costs about what the zipapp's does.
* Nothing downloads at run time and nothing in the chroot reaches the network for Python
  packages: the wheels are fetched on this machine, hash-checked (the lock's wheels by
  ``pex3 download --lock``; PyInstaller and its helpers by ``pip --require-hashes`` against
  ``packaging/standalone-build.txt``), and pip installs them in the chroot with ``--no-index``.
* arm64 is built the same way in an arm64 bullseye root run by ``qemu-user-static`` through
  binfmt_misc. Roots and finished builds are cached under ``CACHE`` keyed by a hash of
  everything that goes into them, so only the first run pays for debootstrap and emulation.

Needs root (debootstrap, chroot), ``debootstrap`` and, for aarch64 on another CPU,
``qemu-user-static`` with binfmt_misc (tests/infra/system-packages.txt).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_release
from build_zipapp import LOCK

ROOT = build_release.ROOT
sys.path.insert(0, str(ROOT))
from provider.releasenames import NAME, standalone_dir, standalone_name  # noqa: E402

CACHE = Path(
    os.environ.get("RCP_STANDALONE_CACHE", "/var/cache/registry-credential-provider-test/standalone")
)
SUITE = "bullseye"
MIRROR = "http://deb.debian.org/debian"
PYTHON_VERSION = "3.9"
BUILD_PACKAGES = ("python3", "python3-venv", "libpython3.9", "binutils")
BUILD_REQUIREMENTS = ROOT / "packaging" / "standalone-build.txt"
# The highest GLIBC_x.y symbol version any ELF of the build needs, measured (glibc_floor.py;
# README): bullseye's libpython3.9 and libsqlite3 need 2.29 (libm's exp/log/pow), the bootloader
# and the manylinux2014 wheels 2.17 or less. tests/test_standalone.py fails when it rises.
GLIBC_FLOOR = (2, 29)
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
WHEEL_PLATFORM = {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}
ENTRY = "from provider.__main__ import entry_point\n\nentry_point()\n"


def _log(message: str) -> None:
    print(f"build_standalone: {message}", file=sys.stderr, flush=True)


def _run(command: Sequence[str], **kwargs: object) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise SystemExit(f"{' '.join(command[:3])} failed ({result.returncode}):\n{tail}")


def host_arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


# --- roots ---------------------------------------------------------------------------------------


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def minbase_root(arch: str) -> Path:
    """A minimal bullseye root for ``arch`` (``debootstrap --variant=minbase``: no Python in
    it), made once and cached; the runs of the self-contained form happen in copies of it."""
    root = CACHE / "roots" / f"{SUITE}-{DEBIAN_ARCH[arch]}-minbase"
    if _stamp(root).exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _log(f"debootstrap {SUITE} minbase for {DEBIAN_ARCH[arch]} (once; cached in {root})")
    _run(["debootstrap", f"--arch={DEBIAN_ARCH[arch]}", "--variant=minbase", SUITE, str(root), MIRROR])
    _stamp(root).write_text(SUITE + "\n")
    return root


def build_root(arch: str) -> Path:
    """The minimal root plus bullseye's python3, libpython and binutils (PyInstaller's tools)."""
    key = hashlib.sha256(" ".join(BUILD_PACKAGES).encode()).hexdigest()[:12]
    root = CACHE / "roots" / f"{SUITE}-{DEBIAN_ARCH[arch]}-python-{key}"
    if _stamp(root).exists():
        return root
    base = minbase_root(arch)
    if root.exists():
        shutil.rmtree(root)
    _log(f"installing {', '.join(BUILD_PACKAGES)} into a copy of {base.name}")
    _run(["cp", "-a", str(base), str(root)])
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    script = (
        f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {' '.join(BUILD_PACKAGES)}"
    )
    _run(
        ["chroot", str(root), "sh", "-c", script], env={**_chroot_env(), "DEBIAN_FRONTEND": "noninteractive"}
    )
    _stamp(root).write_text(" ".join(BUILD_PACKAGES) + "\n")
    return root


def _chroot_env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def check_emulation(arch: str) -> None:
    """For a foreign ``arch``: binfmt_misc must run its binaries (qemu-user-static registers
    itself there; a container may need ``mount -t binfmt_misc binfmt_misc
    /proc/sys/fs/binfmt_misc`` and ``update-binfmts --enable``)."""
    if arch == host_arch():
        return
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}")
    if not entry.exists() and os.geteuid() == 0:
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
            capture_output=True,
            check=False,
        )
        subprocess.run(["update-binfmts", "--enable", f"qemu-{arch}"], capture_output=True, check=False)
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        raise SystemExit(
            f"cannot run {arch} binaries here: install qemu-user-static and binfmt-support, "
            f"then `update-binfmts --enable qemu-{arch}`"
        )


# --- wheels --------------------------------------------------------------------------------------


def cp39_platform(arch: str, work: Path) -> Path:
    """The CPython 3.9 complete platform of ``arch``, its manylinux tags capped at 2.17."""
    sources = [p for p in build_release.platform_files(arch) if "cp39" in p.name]
    if not sources:
        raise SystemExit(f"no CPython 3.9 complete platform for {arch} under packaging/platforms")
    capped = build_release.cap_manylinux(json.loads(sources[0].read_text()), build_release.MANYLINUX_FLOOR)
    target = work / f"{arch}-cp39.json"
    target.write_text(json.dumps(capped))
    return target


def wheelhouse(arch: str, target: Path) -> list[Path]:
    """The locked wheels for CPython 3.9 on ``arch`` (botocore trimmed) and the build tools."""
    target.mkdir(parents=True, exist_ok=True)
    pex3 = str(Path(sys.executable).parent / "pex3")
    _run([pex3, "download", "--lock", str(LOCK), "--wheel", "-d", str(target),
          "--complete-platform", str(cp39_platform(arch, target.parent))])  # fmt: skip
    build_release.trim_wheelhouse(target, build_release.BOTOCORE_SERVICES)
    tools = target.parent / "tools"
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--require-hashes", "--only-binary=:all:", "--platform", WHEEL_PLATFORM[arch],
          "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp39",
          "-r", str(BUILD_REQUIREMENTS), "-d", str(tools)])  # fmt: skip
    return sorted(target.glob("*.whl")) + sorted(tools.glob("*.whl"))


# --- the build -----------------------------------------------------------------------------------


def build_key(arch: str) -> str:
    """A hash of everything the build reads: sources, lock, build tools, this script."""
    digest = hashlib.sha256(arch.encode())
    inputs = [LOCK, BUILD_REQUIREMENTS, Path(__file__), *build_release.platform_files(arch)]
    inputs += sorted(
        p for p in (ROOT / "provider").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in inputs:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    digest.update(" ".join(BUILD_PACKAGES).encode())
    return digest.hexdigest()[:16]


def build(arch: str, output_dir: Path) -> Path:
    """``output_dir/<standalone_name>`` for ``arch``, from the cache when its inputs are unchanged."""
    version = build_release.project_version()
    name = standalone_name(version, arch)
    cached = CACHE / "builds" / build_key(arch) / name
    if not cached.exists():
        check_emulation(arch)
        root = build_root(arch)
        with tempfile.TemporaryDirectory(prefix="standalone-") as scratch:
            archive = _build_in_root(arch, root, Path(scratch), version)
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(archive, cached.with_suffix(".part"))
            cached.with_suffix(".part").rename(cached)
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, output_dir / name)
    return output_dir / name


def _build_in_root(arch: str, root: Path, scratch: Path, version: str) -> Path:
    wheels = wheelhouse(arch, scratch / "wheels")
    work = root / "build"
    if work.exists():
        shutil.rmtree(work)
    (work / "wheels").mkdir(parents=True)
    for wheel in wheels:
        shutil.copyfile(wheel, work / "wheels" / wheel.name)
    shutil.copytree(
        ROOT / "provider", work / "src" / "provider", ignore=shutil.ignore_patterns("__pycache__")
    )
    (work / "entry.py").write_text(ENTRY)
    collect = " ".join(pyinstaller_collect(ROOT / "provider"))
    script = (
        "set -e; cd /build; python3 -m venv venv; "
        "venv/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps wheels/*.whl; "
        f"venv/bin/pyinstaller --log-level WARN --noconfirm --onedir --name {NAME} "
        "--exclude-module setuptools --exclude-module pkg_resources --exclude-module _distutils_hack "
        f"--paths /build/src {collect} --distpath /build/dist --workpath /build/work "
        "--specpath /build entry.py"
    )
    _log(f"building {arch} in {root.name} (emulated: {arch != host_arch()})")
    env = {**_chroot_env(), "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "315532800"}
    _run(["chroot", str(root), "sh", "-c", script], env=env)
    archive = scratch / standalone_name(version, arch)
    write_archive(work / "dist" / NAME, standalone_dir(version, arch), archive)
    shutil.rmtree(work)
    return archive


def pyinstaller_collect(package: Path) -> list[str]:
    """PyInstaller options bundling every module and data file of ``package`` (as copied to
    ``/build/src``): the provider imports commands and backends by name, which analysis cannot
    follow, and PyInstaller's own collection imports the package, which fails for modules this
    CPython cannot import (they would then be silently left out)."""
    options = []
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package.parent)
        if path.suffix == ".py":
            module = ".".join(relative.with_suffix("").parts)
            options += ["--hidden-import", module.removesuffix(".__init__")]
        else:
            options += ["--add-data", f"/build/src/{relative}:{relative.parent}"]
    return options


def write_archive(directory: Path, top: str, target: Path) -> None:
    """``directory`` as ``top/...`` in a tar.gz with sorted members, no owners and fixed times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = [directory, *sorted(directory.rglob("*"))]
        for path in paths:
            info = tar.gettarinfo(
                str(path), arcname=str(Path(top) / path.relative_to(directory)).rstrip("/.")
            )
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 315532800
            info.mode = 0o755 if (path.is_dir() or os.access(path, os.X_OK)) else 0o644
            if info.isfile():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist" / "standalone")
    parser.add_argument("--arch", action="append", choices=build_release.ARCHES, help="default: all")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the self-contained build needs root (debootstrap, chroot)")
    for arch in args.arch or build_release.ARCHES:
        path = build(arch, args.output_dir)
        print(f"built {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
