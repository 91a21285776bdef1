"""The oldest glibc a directory tree can run on: the highest ``GLIBC_x.y`` symbol version any
ELF file in it requires (its ``.gnu.version_r`` section, as ``readelf -V`` prints it).

``python packaging/glibc_floor.py DIR|ARCHIVE.tar.gz`` prints the floor, then each ELF with what
it needs, highest first.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
_NEEDED = re.compile(r"Name: GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\b")


@dataclass(frozen=True)
class ElfNeeds:
    """One ELF file and the highest glibc symbol version it requires (``(0, 0)``: none)."""

    path: str
    glibc: tuple[int, int]


def elf_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` that starts with the ELF magic."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    yield path


def needed_glibc(readelf_output: str) -> tuple[int, int]:
    """The highest ``GLIBC_x.y`` in ``readelf -V`` output's version needs (``(0, 0)``: none)."""
    versions = [(int(m.group(1)), int(m.group(2))) for m in _NEEDED.finditer(readelf_output)]
    return max(versions, default=(0, 0))


def scan(root: Path) -> list[ElfNeeds]:
    """What each ELF under ``root`` needs, highest first."""
    found = []
    for path in elf_files(root):
        result = subprocess.run(
            ["readelf", "-V", "--wide", str(path)], capture_output=True, text=True, check=True
        )
        found.append(ElfNeeds(str(path.relative_to(root)), needed_glibc(result.stdout)))
    return sorted(found, key=lambda e: (e.glibc, e.path), reverse=True)


def floor(needs: list[ElfNeeds]) -> tuple[int, int]:
    """The glibc every file in ``needs`` runs on."""
    return max((e.glibc for e in needs), default=(0, 0))


def scan_archive(archive: Path) -> list[ElfNeeds]:
    """:func:`scan` over the files of a ``.tar.gz``."""
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="tar") if sys.version_info >= (3, 12) else tar.extractall(scratch)  # noqa: S202 - our own archive
        return scan(Path(scratch))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: glibc_floor.py DIR|ARCHIVE.tar.gz", file=sys.stderr)
        return 2
    target = Path(argv[0])
    needs = scan(target) if target.is_dir() else scan_archive(target)
    print("glibc floor: {}.{}".format(*floor(needs)))
    for entry in needs:
        print("  GLIBC_{}.{}  {}".format(*entry.glibc, entry.path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
