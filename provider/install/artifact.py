"""The executable we install: what it is, whether it is intact, and making its first run cheap.

- ``inspect``: a release file is a pex zipapp; its ``PEX-INFO`` names the entry point, the
  interpreter constraints and the wheels, whose platform tags give the CPU architecture.
- ``expected_sha256``: ``--sha256``, else the ``SHA256SUMS`` line beside the file.
- ``prewarm``: the first exec unpacks the zipapp into its runtime root (1.4-2.6 s); doing it at
  install time, with the interpreter the installer runs on, means the kubelet never pays it and
  always finds the same interpreter (the boot script then execs the unpacked venv directly).
- ``build_venv``: the read-only layout, a standalone venv made by the zipapp's own pex tools,
  byte-compiled, so nothing is written at run time (read-only ``/usr``, image builds).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping

import msgspec

from provider.install.files import digest

__all__ = [
    "ArtifactError",
    "ArtifactInfo",
    "build_venv",
    "expected_sha256",
    "inspect",
    "node_arch",
    "prewarm",
    "unpack_standalone",
]

ENTRY_POINT = "provider.__main__:entry_point"
SUMS = "SHA256SUMS"
# A systemd service's PATH: what the kubelet (and so its plugins) usually sees.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV_MARKER = ".registry-credential-provider-artifact"
# The release file the venv was made from, kept in it: 'install --from-state' reads it again.
VENV_RELEASE_COPY = "registry-credential-provider.pex"
# The self-contained form's release file, kept in its installed directory for the same reason.
STANDALONE_RELEASE_COPY = ".registry-credential-provider-standalone.tar.gz"
ZIPAPP_FORM = "zipapp"
STANDALONE_FORM = "standalone"
_GZIP_MAGIC = b"\x1f\x8b"
_STANDALONE_DIR = re.compile(r"registry-credential-provider-([^/]+)-linux-([a-z0-9_]+)-standalone")
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
PREWARM_TIMEOUT_SECONDS = 120.0
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class ArtifactError(Exception):
    """The artifact cannot be installed here (one line for stderr)."""


class ArtifactInfo(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    size: int
    arches: list[str]
    interpreter_constraints: list[str]
    runtime_pex_root: str
    pex_hash: str
    form: str = ZIPAPP_FORM
    version: str = ""
    top: str = ""


def node_arch(machine: str | None = None) -> str:
    machine = machine or os.uname().machine
    return _ARCH_ALIASES.get(machine, machine)


def _wheel_arches(wheel: str) -> set[str]:
    platforms = wheel.removesuffix(".whl").split("-")[-1].split(".")
    arches = set()
    for platform in platforms:
        found = re.search(r"(x86_64|aarch64|i686|armv7l|ppc64le|s390x)$", platform)
        if found:
            arches.add(found.group(1))
    return arches


def inspect(data: bytes, source: str) -> ArtifactInfo:
    """What ``data`` (a release file's bytes) is; ``ArtifactError`` if it is neither our zipapp
    nor our self-contained form."""
    if data.startswith(_GZIP_MAGIC):
        return inspect_standalone(data, source)
    if not data.startswith(b"#!/bin/sh"):
        raise ArtifactError(
            f"{source} is not a registry-credential-provider release file: neither a zipapp (a /bin/sh "
            "boot script) nor a self-contained .tar.gz"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as pex:
            info = json.loads(pex.read("PEX-INFO"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactError(f"{source} is damaged or not a pex zipapp ({exc})") from None
    if info.get("entry_point") != ENTRY_POINT:
        raise ArtifactError(
            f"{source} is a pex, but not registry-credential-provider ({info.get('entry_point')})"
        )
    arches: set[str] = set()
    for wheel in info.get("distributions", {}):
        arches |= _wheel_arches(wheel)
    head = data[:4096].decode("utf-8", "replace")
    found = re.search(r'DEFAULT_PEX_ROOT="\$\(echo ([^)]*)\)"', head)
    return ArtifactInfo(
        sha256=digest(data),
        size=len(data),
        arches=sorted(arches),
        interpreter_constraints=list(info.get("interpreter_constraints", [])),
        runtime_pex_root=found.group(1) if found else "",
        pex_hash=str(info.get("pex_hash", "")),
    )


def check_arch(info: ArtifactInfo, source: str, arch: str) -> None:
    if not info.arches or arch in info.arches:
        return
    ending = f"-linux-{arch}" + ("-standalone.tar.gz" if info.form == STANDALONE_FORM else "")
    raise ArtifactError(
        f"{source} is built for {', '.join(info.arches)}, this node is {arch}: "
        f"use the release file ending in {ending}"
    )


def expected_sha256(path: str, given: str | None) -> tuple[str | None, str]:
    """The digest ``path`` must have, and where it comes from (None: nothing to check against)."""
    if given:
        value = given.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ArtifactError(f"--sha256: expected 64 hex digits, got {given!r}")
        return value, "--sha256"
    sums = os.path.join(os.path.dirname(os.path.abspath(path)), SUMS)
    if os.path.isfile(sums):
        with open(sums, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("*") == os.path.basename(path):
                    return parts[0].lower(), sums
        raise ArtifactError(f"{sums} has no line for {os.path.basename(path)}: is it the right release?")
    return None, ""


def kubelet_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment like the kubelet gives its plugins under systemd (no HOME)."""
    environ = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
    environ.update(extra or {})
    return environ


class Prewarm(msgspec.Struct, frozen=True, kw_only=True):
    seconds: float
    python: str
    second_exec_seconds: float


def prewarm(binary: str, python: str, *, env: Mapping[str, str] | None = None) -> Prewarm:
    """Unpack ``binary`` with ``python`` now (``python binary --version``: pex installs its venv
    into the runtime root, shared by every later exec whatever the PATH), then exec it as the
    kubelet does to check that the boot script's fast path answers."""
    environ = kubelet_env(env)
    started = time.monotonic()
    first = subprocess.run(
        [python, binary, "--version"],
        capture_output=True,
        env=environ,
        timeout=PREWARM_TIMEOUT_SECONDS,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    if first.returncode != 0:
        raise ArtifactError(f"pre-warming {binary} with {python} failed: {_tail(first.stderr)}")
    started = time.monotonic()
    second = subprocess.run(
        [binary, "--version"],
        capture_output=True,
        env=environ,
        timeout=PREWARM_TIMEOUT_SECONDS,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    again = time.monotonic() - started
    if second.returncode != 0:
        raise ArtifactError(f"{binary} --version failed after pre-warming: {_tail(second.stderr)}")
    return Prewarm(seconds=seconds, python=python, second_exec_seconds=again)


def _tail(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "no output"


def _check_built(result: subprocess.CompletedProcess[bytes], venv_dir: str) -> None:
    if result.returncode != 0:
        raise ArtifactError(f"building the venv at {venv_dir} failed: {_tail(result.stderr)}")


def venv_marker(venv_dir: str) -> str | None:
    try:
        with open(os.path.join(venv_dir, VENV_MARKER), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def build_venv(artifact: str, python: str, venv_dir: str, sha256: str) -> bool:
    """A standalone, byte-compiled venv of ``artifact`` at ``venv_dir`` (made with ``python``
    and the zipapp's own pex tools); ``venv_dir/pex`` runs it. False when it is already there.

    pex writes the venv's own path into its scripts, so it is built in place: an older venv is
    moved aside first and put back if the build fails.
    """
    if venv_marker(venv_dir) == sha256 and os.path.exists(os.path.join(venv_dir, "pex")):
        return False
    previous = None
    if os.path.lexists(venv_dir):
        previous = f"{venv_dir}.previous-{os.getpid()}"
        os.rename(venv_dir, previous)
    scratch = tempfile.mkdtemp(prefix="rcp-pex-tools-")
    try:
        result = subprocess.run(
            [python, artifact, "venv", "--compile", venv_dir],
            capture_output=True,
            env=kubelet_env({"PEX_TOOLS": "1", "PEX_ROOT": scratch}),
            timeout=PREWARM_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        _check_built(result, venv_dir)
        shutil.copyfile(artifact, os.path.join(venv_dir, VENV_RELEASE_COPY))
        with open(os.path.join(venv_dir, VENV_MARKER), "w", encoding="utf-8") as handle:
            handle.write(sha256 + "\n")
    except BaseException:
        shutil.rmtree(venv_dir, ignore_errors=True)
        if previous is not None:
            os.rename(previous, venv_dir)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return True


# --- the self-contained form ---------------------------------------------------------------------


def _members(data: bytes, source: str) -> tuple[str, list[tarfile.TarInfo]]:
    """The archive's one top directory and its members, every one checked to stay inside it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"{source} is damaged or not a tar.gz ({exc})") from None
    tops = {m.name.split("/")[0] for m in members}
    if len(tops) != 1:
        raise ArtifactError(f"{source} is not a self-contained release file (not one top directory)")
    (top,) = tops
    for member in members:
        parts = member.name.split("/")
        unsafe = member.name.startswith("/") or ".." in parts
        if member.issym():
            target = os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname))
            unsafe = unsafe or member.linkname.startswith("/") or not target.startswith(top + "/")
        elif not (member.isfile() or member.isdir()):
            unsafe = True
        if unsafe:
            raise ArtifactError(f"{source}: {member.name} would land outside its directory: refusing it")
    return top, members


def inspect_standalone(data: bytes, source: str) -> ArtifactInfo:
    """What a self-contained release file is (its directory names version and CPU; the
    bootloader's ELF header must agree); ``ArtifactError`` if it is not ours."""
    top, members = _members(data, source)
    found = _STANDALONE_DIR.fullmatch(top)
    if found is None:
        raise ArtifactError(f"{source} is not a registry-credential-provider self-contained release file")
    version, arch = found.group(1), found.group(2)
    executable = f"{top}/registry-credential-provider"
    if not any(m.name == executable and m.isfile() for m in members):
        raise ArtifactError(f"{source} has no {executable}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        handle = tar.extractfile(executable)
        header = handle.read(20) if handle is not None else b""
    if header.startswith(b"\x7fELF"):
        machine = _ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "unknown")
        if machine != arch:
            raise ArtifactError(f"{source} is named for {arch} but its executable is for {machine}")
    return ArtifactInfo(
        sha256=digest(data),
        size=len(data),
        arches=[arch],
        interpreter_constraints=[],
        runtime_pex_root="",
        pex_hash="",
        form=STANDALONE_FORM,
        version=version,
        top=top,
    )


def unpack_standalone(data: bytes, directory: str, sha256: str) -> bool:
    """The self-contained form's directory at ``directory`` (its top directory's contents, a
    copy of the release file and a marker with its SHA-256); False when it is already there.
    Unpacked beside it first and renamed into place, so the kubelet never sees half of it."""
    if venv_marker(directory) == sha256:
        return False
    top, members = _members(data, directory)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=os.path.dirname(directory))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in members:
                if member.name == top:
                    continue
                target = os.path.join(scratch, member.name[len(top) + 1 :])
                if member.isdir():
                    os.makedirs(target, mode=0o755, exist_ok=True)
                elif member.issym():
                    os.symlink(member.linkname, target)
                else:
                    source = tar.extractfile(member)
                    assert source is not None
                    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                    with open(target, "wb") as handle:
                        shutil.copyfileobj(source, handle)
                    os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
        with open(os.path.join(scratch, STANDALONE_RELEASE_COPY), "wb") as handle:
            handle.write(data)
        with open(os.path.join(scratch, VENV_MARKER), "w", encoding="utf-8") as handle:
            handle.write(sha256 + "\n")
        os.chmod(scratch, 0o755)  # noqa: S103 - a plugin directory: root's, readable like the bin dir
        if os.path.lexists(directory):
            shutil.rmtree(directory)
        os.rename(scratch, directory)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return True
