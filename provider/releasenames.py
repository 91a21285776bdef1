"""The names of the release files, in one place for the release build, the installer and the tests.

Per CPU architecture a release has two forms: the zipapp (one file; needs CPython 3.9-3.13 on the
kubelet's PATH) and the self-contained form (a ``.tar.gz`` of one directory that brings its own
CPython and needs nothing from the node but glibc; its executable is
``<directory>/registry-credential-provider``).
"""

from __future__ import annotations

NAME = "registry-credential-provider"
STANDALONE_SUFFIX = "-standalone"
STANDALONE_ARCHIVE_SUFFIX = ".tar.gz"


def zipapp_name(version: str, arch: str) -> str:
    """The zipapp release file for ``arch`` (the installer renames it to the provider's name)."""
    return f"{NAME}-{version}-linux-{arch}"


def standalone_dir(version: str, arch: str) -> str:
    """The directory the self-contained archive for ``arch`` holds (and unpacks to)."""
    return zipapp_name(version, arch) + STANDALONE_SUFFIX


def standalone_name(version: str, arch: str) -> str:
    """The self-contained release file for ``arch``: a tarball of :func:`standalone_dir`."""
    return standalone_dir(version, arch) + STANDALONE_ARCHIVE_SUFFIX
