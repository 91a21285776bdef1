"""Putting back: ``uninstall`` restores exactly what the install record says was there, and
``undo_run`` takes back one install run's writes when its result fails the check."""

from __future__ import annotations

import contextlib
import os
import shutil

from provider.install import files
from provider.install.files import Current, Entry, Root
from provider.install.flavours import FLAVOURS, generic
from provider.install.kubeletfile import unmerge
from provider.install.options import InstallError, Outcome, Say
from provider.install.record import BACKUPS, RECORD, Record, load_record, remove_state, save_record
from provider.install.restart import restart_kubelet

__all__ = ["undo_run", "uninstall"]


def undo_run(
    root: Root, before: dict[str, Current], record: Record, dirs_before: int, entries_before: int
) -> None:
    """Put back what this run changed; the record keeps only what earlier runs did."""
    for path, now in before.items():
        host = root.host(path)
        if now.kind == "absent":
            files.remove(host)
        elif now.kind == "symlink":
            files.write_symlink(host, now.target)
        elif now.kind == "file":
            files.write_file(host, now.content, now.mode)
        entry = record.ledger.entry(path)
        if entry is not None:
            entry.written = now.fingerprint()
    for directory in reversed(record.ledger.created_dirs[dirs_before:]):
        with contextlib.suppress(OSError):
            os.rmdir(root.host(directory))
    del record.ledger.created_dirs[dirs_before:]
    del record.ledger.entries[entries_before:]
    if record.ledger.entries:
        save_record(root, record)
        return
    remove_state(root, record)


def _uninstall_action(root: Root, entry: Entry, backups: files.BackupStore, force: bool) -> str:
    now = files.current(root, entry.path)
    was = files.original(entry, backups)
    if now.fingerprint() == was.fingerprint() and (now.kind != "file" or now.mode == was.mode):
        return "unchanged"
    if now.fingerprint() == entry.written or force:
        return "restore" if entry.existed else "remove"
    if entry.merged and now.kind == "file":
        return "unmerge"
    return "kept"


def _unmerge_entry(root: Root, entry: Entry, outcome: Outcome) -> bool:
    """Take only our provider out of a kubelet config others changed since; False if impossible."""
    content = unmerge(root, entry)
    if content is None:
        outcome.warnings.append(f"{entry.path} changed since install and cannot be read: left as it is")
        return False
    if content == b"" and not entry.existed:
        files.remove(root.host(entry.path))
    else:
        mode = files.current(root, entry.path).mode or 0o644
        files.write_file(root.host(entry.path), content, mode)
        outcome.warnings.append(f"{entry.path} changed since install: only our provider was taken out")
    return True


def uninstall(  # noqa: PLR0912 - one branch per outcome of a file
    root_path: str, say: Say, *, dry_run: bool = False, force: bool = False, restart: bool = False
) -> Outcome:
    """Put back what the install record says was there before the first install."""
    if not os.path.isdir(root_path):
        raise InstallError(f"--root {root_path} is not a directory")
    root = Root(root_path)
    if restart and not root.is_node:
        raise InstallError("--restart-kubelet needs the node itself (--root /)")
    record = load_record(root)
    if record is None:
        say(f"nothing to uninstall: no install record at {RECORD}")
        return Outcome(ok=True, changed=False, dry_run=dry_run)
    outcome = Outcome(ok=True, changed=True, dry_run=dry_run, flavour=record.flavour)
    backups = files.BackupStore(root, BACKUPS)
    kept_back: list[str] = []
    for entry in reversed(record.ledger.entries):
        action = _uninstall_action(root, entry, backups, force)
        outcome.changes.append({"path": entry.path, "status": action, "what": entry.what})
        say(f"  {action:<9} {entry.path}  ({entry.what})")
        if action == "kept":
            kept_back.append(entry.path)
            outcome.warnings.append(
                f"{entry.path} changed since it was installed: left as it is (--force restores the original)"
            )
        if dry_run or action in ("unchanged", "kept"):
            continue
        if action == "unmerge":
            if not _unmerge_entry(root, entry, outcome):
                kept_back.append(entry.path)
            continue
        files.restore(root, entry, backups)
    removals = [(d, "the read-only venv") for d in [record.venv_dir] if d]
    removals += [(d, "the unpacked zipapp") for d in record.runtime_dirs]
    removals += [(d, "the self-contained form") for d in record.standalone_dirs]
    for directory, what in removals:
        say(f"  remove    {directory}  ({what})")
        if not dry_run:
            shutil.rmtree(root.host(directory), ignore_errors=True)
    if dry_run:
        say("dry run: nothing written")
        return outcome
    for directory in reversed(record.ledger.created_dirs):
        with contextlib.suppress(OSError):
            os.rmdir(root.host(directory))
    for warning in outcome.warnings:
        say(f"  warning: {warning}")
    if kept_back:
        record.ledger.entries = [e for e in record.ledger.entries if e.path in kept_back]
        save_record(root, record)
        say(f"the originals of the files left in place stay in {BACKUPS}")
    else:
        remove_state(root, record)
        say("uninstalled: every file is as it was before the first install")
    if restart:
        restart_kubelet(FLAVOURS.get(record.flavour) or generic("/", "/", "/"), say)
    else:
        say("restart the kubelet for it to forget the plugin (or pass --restart-kubelet)")
    return outcome
