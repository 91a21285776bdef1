"""The fleet installer's init container: fetch this node's release file, check its SHA-256,
stage it with install.sh and our config on the host, and run install.sh in the host's
namespaces (nsenter into PID 1), so the node's own CPython runs the installer and
``systemctl`` restarts the node's kubelet.

Environment (from the release and settings ConfigMaps): VERSION, RELEASE_URL,
SHA256_X86_64, SHA256_AARCH64; FLAVOR (empty: detect), EXTRA_ARGS, TOKEN_MODE, AUDIENCE;
STAGING (the staging directory as this container sees it) and HOST_STAGING (as the host sees
it). STAGE_DRY_RUN=1 prints the command instead of running it (tests).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import urllib.request

INSTALLER_FILES = "/installer"
NAME = "registry-credential-provider"
ARCHES = {"x86_64": "X86_64", "amd64": "X86_64", "aarch64": "AARCH64", "arm64": "AARCH64"}


def fail(message: str) -> None:
    print(f"stage.py: {message}", file=sys.stderr)
    sys.exit(1)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, target: str, expected: str) -> None:
    """``url`` to ``target``, only if ``target`` is not already the expected file."""
    if os.path.exists(target) and sha256(target) == expected:
        print(f"stage.py: {os.path.basename(target)} already staged")
        return
    partial = target + ".partial"
    with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as out:  # noqa: S310
        shutil.copyfileobj(response, out)
    found = sha256(partial)
    if found != expected:
        os.unlink(partial)
        fail(f"{url}: SHA-256 {found}, expected {expected} (release.env): refusing it")
    os.chmod(partial, 0o755)
    os.replace(partial, target)
    print(f"stage.py: fetched {url}")


def main() -> int:
    env = os.environ
    machine = platform.machine()
    arch_key = ARCHES.get(machine)
    if arch_key is None:
        fail(f"no release file for CPU {machine}")
    version, base = env.get("VERSION", ""), env.get("RELEASE_URL", "").rstrip("/")
    expected = env.get(f"SHA256_{arch_key}", "").strip().lower()
    if not version or not base or len(expected) != 64:
        fail(f"set VERSION, RELEASE_URL and SHA256_{arch_key} in release.env (from the release's SHA256SUMS)")
    arch = "x86_64" if arch_key == "X86_64" else "aarch64"
    name = f"{NAME}-{version}-linux-{arch}"
    staging, host_staging = env["STAGING"], env["HOST_STAGING"]
    os.makedirs(staging, mode=0o700, exist_ok=True)
    fetch(f"{base}/{name}", os.path.join(staging, name), expected)
    for file in ("install.sh", "config.yaml"):
        shutil.copyfile(os.path.join(INSTALLER_FILES, file), os.path.join(staging, file))
    os.chmod(os.path.join(staging, "install.sh"), 0o755)
    args = [
        "/bin/sh",
        f"{host_staging}/install.sh",
        "--artifact",
        f"{host_staging}/{name}",
        "--sha256",
        expected,
        "--config",
        f"{host_staging}/config.yaml",
        "--restart-kubelet",
    ]
    if env.get("FLAVOR"):
        args += ["--flavor", env["FLAVOR"]]
    if env.get("TOKEN_MODE"):
        args += ["--token-mode"] + (["--audience", env["AUDIENCE"]] if env.get("AUDIENCE") else [])
    args += shlex.split(env.get("EXTRA_ARGS", ""))
    command = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", *args]
    if env.get("STAGE_DRY_RUN") == "1":
        print(shlex.join(command))
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
