"""Reading a file that someone else chose: only a regular file, and only up to a size.

A FIFO, a character device or ``/dev/zero`` named as a config file would otherwise block the
read or never end, and the kubelet kills a plugin at 60 s. The file is opened without
blocking (a FIFO with no writer opens at once) and checked with ``fstat`` on the open
descriptor, so a file swapped in between cannot slip past the check.

Standard library only.
"""

from __future__ import annotations

import os
import stat

__all__ = ["FileTooLargeError", "UnsafeFileError", "read_regular_file", "trust_problem"]

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UnsafeFileError(Exception):
    """The file is not a regular file, or larger than allowed; ``str()`` says which
    (e.g. "it is a FIFO, not a regular file")."""


class FileTooLargeError(UnsafeFileError):
    """The file is a regular file, larger than allowed."""


def read_regular_file(path: str, limit: int) -> bytes:
    """The whole of ``path`` when it is a regular file of at most ``limit`` bytes.

    Raises ``OSError`` (``FileNotFoundError`` included) when it cannot be opened or read, and
    ``UnsafeFileError`` when it is not a regular file or is larger than ``limit``.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            raise UnsafeFileError(f"it is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(descriptor, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(descriptor)
    if size > limit:
        raise FileTooLargeError(f"it is larger than {limit} bytes")
    return b"".join(chunks)


def trust_problem(path: str) -> str | None:
    """Why ``path`` (a file that chooses which executables run, as root on a node) could have
    been written by someone other than root or us, or None when it could not; None too when it
    cannot be looked at (reading it reports that)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'others' if info.st_mode & stat.S_IWOTH else 'its group'}"
    if info.st_uid not in (0, os.geteuid()):
        return f"{path} belongs to uid {info.st_uid}, neither root nor this process's user"
    return None
