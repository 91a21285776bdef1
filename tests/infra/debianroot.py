"""A minimal Debian root made with debootstrap from Debian's archive, to run our artifacts on a real
distribution's interpreter and C library (bullseye: CPython 3.9, glibc 2.31).

The root is built once per content key (suite, variant, packages, mirror, this recipe's version)
into ``CACHE_ROOT`` (outside the repository), so a fresh CI machine builds it once per run and a
developer's second run reuses it. A test never writes into the cached root: ``copy_root`` gives
each session its own copy to run in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.infra._util import InfraError, require_binary, run_checked

CACHE_ROOT = Path(os.environ.get("RCP_TEST_CACHE", "/var/cache/registry-credential-provider-test"))
MIRROR = "http://deb.debian.org/debian"
# Bump when the recipe below changes in a way the key does not show.
RECIPE_VERSION = 1
DEBOOTSTRAP_TIMEOUT_SECONDS = 1800.0


def root_key(suite: str, include: tuple[str, ...], variant: str = "minbase") -> str:
    """The cache key of a root: a hash of everything it is built from."""
    recipe: dict[str, object] = {
        "suite": suite,
        "include": sorted(include),
        "variant": variant,
        "mirror": MIRROR,
    }
    recipe["recipe"] = RECIPE_VERSION
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def debian_root(suite: str, include: tuple[str, ...], variant: str = "minbase") -> Path:
    """The cached root for ``suite`` with ``include`` (built now if missing; needs root)."""
    target = CACHE_ROOT / f"{suite}-{variant}-{root_key(suite, include, variant)}"
    if (target / "etc" / "debian_version").is_file():
        return target
    if os.geteuid() != 0:
        raise InfraError(f"building the {suite} root needs root (debootstrap, chroot); run the tests as root")
    debootstrap = require_binary("debootstrap")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{suite}-", dir=CACHE_ROOT))
    try:
        run_checked(
            [debootstrap, f"--variant={variant}", f"--include={','.join(include)}", suite, str(work), MIRROR],
            timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
            what=f"debootstrap {suite}",
        )
        # A whole root appears under its final name at once: a crash mid-build leaves only the
        # temporary directory, never a half-built root that looks complete.
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def copy_root(source: Path, destination: Path) -> Path:
    """A private, writable copy of ``source`` (ownership, modes and links kept)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(destination)], check=True)
    return destination
