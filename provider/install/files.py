"""File changes as data, and the ledger that lets ``uninstall`` put back exactly what was there.

A ``Change`` says what one node path should hold (a file's bytes and mode, a symlink, or
nothing). Against a root it is ``create``, ``update``, ``remove`` or ``unchanged``; ``diff``
shows it; ``apply`` makes it real atomically (a temporary file in the same directory, fsynced
and checked against the intended SHA-256, then renamed over the target) after saving the
original once, the first time we touch the path. The ``Ledger`` records, per path, whether it
existed, where its original is, and the digest of what we last wrote, so ``restore`` can tell
our bytes from someone else's later edit.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from collections.abc import Iterator
from typing import Literal, Optional

import msgspec

__all__ = [
    "Change",
    "Entry",
    "Ledger",
    "Root",
    "apply",
    "diff",
    "digest",
    "status",
]

ChangeKind = Literal["file", "symlink", "absent"]
Status = Literal["create", "update", "remove", "unchanged"]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Root:
    """Node paths (``/etc/...``) mapped into a root directory (``/`` on the node itself)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    @property
    def is_node(self) -> bool:
        """Whether this is the running system (where services, pythons and pre-warming are real)."""
        return self.path == "/"

    def host(self, node_path: str) -> str:
        if not node_path.startswith("/"):
            raise ValueError(f"expected an absolute node path, got {node_path!r}")
        if self.is_node:
            return node_path
        return os.path.join(self.path, node_path.lstrip("/"))

    def exists(self, node_path: str) -> bool:
        return os.path.lexists(self.host(node_path))

    def isdir(self, node_path: str) -> bool:
        return os.path.isdir(self.host(node_path))

    def read(self, node_path: str) -> bytes | None:
        """A regular file's bytes (None: absent or not a file)."""
        path = self.host(node_path)
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path, "rb") as handle:
            return handle.read()


class Current(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["file", "symlink", "absent", "other"]
    content: bytes = b""
    target: str = ""
    mode: int = 0

    def fingerprint(self) -> str:
        if self.kind == "file":
            return digest(self.content)
        if self.kind == "symlink":
            return "symlink:" + self.target
        return self.kind


def current(root: Root, node_path: str) -> Current:
    path = root.host(node_path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Current(kind="absent")
    if stat.S_ISLNK(info.st_mode):
        return Current(kind="symlink", target=os.readlink(path))
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            return Current(kind="file", content=handle.read(), mode=stat.S_IMODE(info.st_mode))
    return Current(kind="other", mode=stat.S_IMODE(info.st_mode))


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """What one node path should hold. ``merged``: our provider's name when the file is a
    kubelet config we share with other providers (uninstall can then take out only ours)."""

    path: str
    what: str
    kind: ChangeKind = "file"
    content: bytes = b""
    target: str = ""
    mode: int = 0o644
    binary: bool = False
    merged: str = ""

    def fingerprint(self) -> str:
        if self.kind == "file":
            return digest(self.content)
        if self.kind == "symlink":
            return "symlink:" + self.target
        return "absent"


def status(root: Root, change: Change) -> Status:
    now = current(root, change.path)
    if change.kind == "absent":
        return "unchanged" if now.kind == "absent" else "remove"
    if now.kind == "absent":
        return "create"
    if now.fingerprint() != change.fingerprint():
        return "update"
    if change.kind == "file" and now.mode != change.mode:
        return "update"
    return "unchanged"


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def _is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def diff(root: Root, change: Change) -> str:
    """A unified diff (text) or a one-line summary (binaries, symlinks, modes) of ``change``."""
    now = current(root, change.path)
    old = now.content if now.kind == "file" else b""
    new = change.content if change.kind == "file" else b""
    header = ""
    if now.kind == "symlink" or change.kind == "symlink":
        before = f"-> {now.target}" if now.kind == "symlink" else now.kind
        after = f"-> {change.target}" if change.kind == "symlink" else change.kind
        return header + f"  {before}  =>  {after}\n"
    if change.binary or not _is_text(old) or not _is_text(new):
        before = f"sha256 {digest(old)[:16]} ({len(old)} bytes)" if now.kind == "file" else now.kind
        after = f"sha256 {digest(new)[:16]} ({len(new)} bytes)" if change.kind == "file" else "absent"
        return header + f"  binary: {before}  =>  {after}\n"
    lines = list(
        difflib.unified_diff(
            _lines(old),
            _lines(new),
            fromfile=f"a{change.path}" if now.kind == "file" else "/dev/null",
            tofile=f"b{change.path}" if change.kind == "file" else "/dev/null",
        )
    )
    text = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    if now.kind == "file" and change.kind == "file" and now.mode != change.mode:
        text += f"  mode {now.mode:04o} => {change.mode:04o}\n"
    return header + text


# --- the ledger ----------------------------------------------------------------------------------


class Entry(msgspec.Struct, kw_only=True):
    """One path we changed: whether it existed, its saved original, what we last wrote."""

    path: str
    what: str
    existed: bool
    backup: Optional[str] = None
    original_mode: Optional[int] = None
    original_target: Optional[str] = None
    written: str = ""
    merged: str = ""


class Ledger(msgspec.Struct, kw_only=True):
    """Every path changed by the installs since the first, and the directories they created."""

    entries: list[Entry] = msgspec.field(default_factory=list)
    created_dirs: list[str] = msgspec.field(default_factory=list)

    def entry(self, path: str) -> Entry | None:
        for entry in self.entries:
            if entry.path == path:
                return entry
        return None


def _fsync_dir(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_written(path: str, data: bytes) -> None:
    with open(path, "rb") as handle:
        written = digest(handle.read())
    if written != digest(data):
        raise OSError(f"{path}: checksum mismatch after writing ({written} != {digest(data)})")


def write_file(path: str, data: bytes, mode: int) -> None:
    """``data`` to ``path`` atomically, checked: a same-directory temporary file is written,
    fsynced and re-read against the data's SHA-256 before it is renamed over ``path``."""
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _check_written(temporary, data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    _fsync_dir(directory)


def write_symlink(path: str, target: str) -> None:
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, path)


def remove(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)


def _missing_parents(root: Root, node_dir: str) -> Iterator[str]:
    """The ancestors of ``node_dir`` (itself included) that do not exist, outermost first."""
    missing: list[str] = []
    path = node_dir
    while path != "/" and not root.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    yield from reversed(missing)


def make_dirs(root: Root, node_dir: str, ledger: Ledger, mode: int = 0o755) -> None:
    for path in _missing_parents(root, node_dir):
        os.mkdir(root.host(path), mode)
        ledger.created_dirs.append(path)


class BackupStore:
    """Originals saved before we first change them, in the install record's directory."""

    def __init__(self, root: Root, directory: str) -> None:
        self.root = root
        self.directory = directory  # a node path

    def save(self, entry_index: int, node_path: str, data: bytes) -> str:
        name = f"{entry_index:03d}-{os.path.basename(node_path)}"
        host_dir = self.root.host(self.directory)
        os.makedirs(host_dir, mode=0o700, exist_ok=True)
        write_file(os.path.join(host_dir, name), data, 0o600)
        return name

    def load(self, name: str) -> bytes:
        with open(os.path.join(self.root.host(self.directory), name), "rb") as handle:
            return handle.read()


def apply(root: Root, change: Change, ledger: Ledger, backups: BackupStore) -> Status:
    """Make ``change`` real (saving the original the first time), record it; its status."""
    result = status(root, change)
    if result == "unchanged":
        return result
    now = current(root, change.path)
    if now.kind == "other":
        raise OSError(f"{change.path} is neither a file nor a symlink: not replacing it")
    entry = ledger.entry(change.path)
    if entry is None:
        entry = Entry(path=change.path, what=change.what, existed=now.kind != "absent", merged=change.merged)
        if now.kind == "file":
            entry.backup = backups.save(len(ledger.entries), change.path, now.content)
            entry.original_mode = now.mode
        elif now.kind == "symlink":
            entry.original_target = now.target
        ledger.entries.append(entry)
    make_dirs(root, os.path.dirname(change.path), ledger)
    path = root.host(change.path)
    if change.kind == "file":
        write_file(path, change.content, change.mode)
    elif change.kind == "symlink":
        write_symlink(path, change.target)
    else:
        remove(path)
    entry.written = change.fingerprint()
    entry.merged = change.merged or entry.merged
    return result


def restore(root: Root, entry: Entry, backups: BackupStore) -> None:
    """Put back what ``entry.path`` held before our first change."""
    path = root.host(entry.path)
    if not entry.existed:
        remove(path)
    elif entry.original_target is not None:
        write_symlink(path, entry.original_target)
    elif entry.backup is not None:
        write_file(path, backups.load(entry.backup), entry.original_mode or 0o644)


def original(entry: Entry, backups: BackupStore) -> Current:
    """What ``restore`` would put back."""
    if not entry.existed:
        return Current(kind="absent")
    if entry.original_target is not None:
        return Current(kind="symlink", target=entry.original_target)
    assert entry.backup is not None
    return Current(kind="file", content=backups.load(entry.backup), mode=entry.original_mode or 0o644)
