"""A file's version stamp: what changes whenever the file does. Standard library only; the
backends (an answer depends on files) and the disk cache (it drops answers whose files
changed) both use it, so it lives below both."""

from __future__ import annotations

import os

__all__ = ["file_version"]


def file_version(path: str) -> list[object]:
    """``[path, inode, size, mtime_ns]``, or ``[path]`` for a file that does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return [path]
    return [path, stat.st_ino, stat.st_size, stat.st_mtime_ns]
