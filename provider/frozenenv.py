"""The environment the self-contained form's children get: the node's, not PyInstaller's.

PyInstaller's bootloader runs the bundled CPython with ``LD_LIBRARY_PATH`` pointing into the
bundle (saving a value it replaced in ``LD_LIBRARY_PATH_ORIG``) and ``_PYI_*`` variables for
itself. A credential helper, a ``credential_process`` or any other program we start would inherit
them and load the bundle's old libz, libssl or libpython instead of its own, or take itself for a
part of our bundle. The self-contained form's entry script calls :func:`restore` first thing.
"""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["restore"]

LIBRARY_PATH = "LD_LIBRARY_PATH"
SAVED_LIBRARY_PATH = "LD_LIBRARY_PATH_ORIG"
BOOTLOADER_PREFIX = "_PYI_"


def restore(environ: MutableMapping[str, str]) -> None:
    """Give ``environ`` back the library path the process was started with and drop the
    bootloader's own variables (our process has already read them)."""
    saved = environ.pop(SAVED_LIBRARY_PATH, None)
    if saved is not None:
        environ[LIBRARY_PATH] = saved
    else:
        environ.pop(LIBRARY_PATH, None)
    for name in [name for name in environ if name.startswith(BOOTLOADER_PREFIX)]:
        del environ[name]
