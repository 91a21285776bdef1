"""The install record: what the first install found and every run wrote, kept on the node so
that ``uninstall`` can put it back; and the state directory that holds it with the backups."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Optional

import msgspec

from provider.install import files
from provider.install.files import Ledger, Root
from provider.install.options import InstallError, Options
from provider.platforms import PROVIDER_NAME

__all__ = [
    "BACKUPS",
    "RECORD",
    "STATE_DIR",
    "Record",
    "load_record",
    "missing_dirs",
    "remove_state",
    "save_record",
]

STATE_DIR = f"/var/lib/{PROVIDER_NAME}/install"
RECORD = f"{STATE_DIR}/record.json"
BACKUPS = f"{STATE_DIR}/backups"
STATE_PARENT = f"/var/lib/{PROVIDER_NAME}"


class Record(msgspec.Struct, kw_only=True):
    """The install record (``/var/lib/registry-credential-provider/install/record.json``)."""

    version: int = 1
    flavour: str
    options: Options
    binary: str
    provider_config: str
    kubelet_config: str
    ledger: Ledger
    venv_dir: Optional[str] = None
    standalone_dirs: list[str] = msgspec.field(default_factory=list)
    runtime_dirs: list[str] = msgspec.field(default_factory=list)
    state_dirs_created: list[str] = msgspec.field(default_factory=list)


_RECORD_DECODER = msgspec.json.Decoder(Record)


def load_record(root: Root) -> Record | None:
    """The install record under ``root``; None when nothing is installed."""
    data = root.read(RECORD)
    if data is None:
        return None
    try:
        return _RECORD_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise InstallError(f"{RECORD} is damaged ({exc}); its backups are in {BACKUPS}") from None


def save_record(root: Root, record: Record) -> None:
    """Write the record (readable by root only: it names every file we touched)."""
    os.makedirs(root.host(STATE_DIR), mode=0o700, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"
    files.write_file(root.host(RECORD), data, 0o600)


def missing_dirs(root: Root, node_dir: str) -> list[str]:
    """``node_dir`` and its ancestors that do not exist yet, outermost first."""
    missing = []
    path = node_dir
    while path != "/" and not root.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return list(reversed(missing))


def remove_state(root: Root, record: Record) -> None:
    """The record, its backups, and the directories the first install created for them."""
    shutil.rmtree(root.host(STATE_DIR), ignore_errors=True)
    for directory in reversed(record.state_dirs_created):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(root.host(directory))
