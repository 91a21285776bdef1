"""A small tmpfs of our own for disk faults (tests run as root, as the kubelet does)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


class TmpfsError(RuntimeError):
    """The tmpfs could not be mounted (not root, or no mount(8))."""


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, size: str = "200k") -> Iterator[Path]:
    """Mount a ``size`` tmpfs (mode 0700) at ``mountpoint`` and unmount it afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise TmpfsError(f"cannot mount a tmpfs (run as root): {result.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount_read_only(mountpoint: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True)


def fill(mountpoint: Path) -> None:
    """Write zeros into ``mountpoint`` until the disk is full."""
    with contextlib.suppress(OSError), (mountpoint / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
