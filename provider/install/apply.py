"""Applying a plan: install writes it (originals saved once, in the install record), pre-warms
the zipapp, checks the result with ``provider.ops.validation`` (undoing this run's writes if it
fails) and restarts the kubelet only when asked; ``--dry-run`` previews it instead."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Optional

import msgspec

from provider.install import artifact as artifacts
from provider.install import files
from provider.install.files import Change, Ledger, Root
from provider.install.options import InstallError, Options, Outcome, Say
from provider.install.plan import Plan, choose_flavour, plan
from provider.install.record import BACKUPS, RECORD, STATE_DIR, Record, load_record, missing_dirs, save_record
from provider.install.restart import restart_kubelet
from provider.install.uninstall import undo_run
from provider.ops.validation import Report, ValidateOptions, check

__all__ = ["install"]


def _check(the_plan: Plan, root: Root, options: Options) -> tuple[Report, list[str]]:
    """The installed result checked as the kubelet would read it; the report, and a line for
    each check that did not pass."""
    report = check(
        ValidateOptions(
            kubelet_config=root.host(the_plan.kubelet_config_flag),
            bin_dir=root.host(the_plan.bin_dir),
            name=options.name,
            kubelet_version=the_plan.kubelet_version,
            config=root.host(the_plan.provider_config),
        )
    )
    lines = []
    for item in report.checks:
        if not root.is_node and item.detail.startswith("checking --config"):
            continue  # under --root the same file has two names
        if item.status != "ok":
            lines.append(f"{item.status}: {item.check}: {item.detail}")
    return report, lines


def _from_state(options: Options, root: Root, record: Record) -> Options:
    """The recorded options, with the installed files as sources (the EKS drop-in's re-merge)."""
    artifact = record.binary
    if record.standalone_dirs:
        artifact = f"{record.standalone_dirs[-1]}/{artifacts.STANDALONE_RELEASE_COPY}"
    elif record.options.layout == "venv":
        artifact = f"{record.options.venv_dir.rstrip('/')}/{artifacts.VENV_RELEASE_COPY}"
    return msgspec.structs.replace(
        record.options,
        root=options.root,
        artifact=root.host(artifact),
        sha256=None,
        config=root.host(record.provider_config),
        prewarm=False,
        from_state=True,
    )


class _Run(msgspec.Struct, kw_only=True):
    """One install run: the plan, what each change is against the node, and the record."""

    root: Root
    options: Options
    plan: Plan
    statuses: list[tuple[Change, files.Status]]
    venv_pending: bool
    standalone_pending: bool
    record: Optional[Record]

    @property
    def changed(self) -> bool:
        return (
            self.venv_pending
            or self.standalone_pending
            or any(result != "unchanged" for _, result in self.statuses)
        )


def _preview(run: _Run, say: Say) -> None:
    for change, result in run.statuses:
        say(f"  {result:<9} {change.path}  ({change.what})")
        if result != "unchanged":
            for line in files.diff(run.root, change).splitlines():
                say("    " + line)
    if run.venv_pending:
        say(f"  create    {run.options.venv_dir}  (the read-only venv, built with {run.plan.python})")
    if run.standalone_pending:
        say(
            f"  create    {run.plan.standalone_dir}  (the self-contained form, unpacked from "
            f"{run.plan.artifact_source}, sha256 {run.plan.artifact.sha256[:16]})"
        )
    say("dry run: nothing written" if run.changed else "nothing to change: already installed")


def _say_notes(outcome: Outcome, say: Say) -> None:
    """The plan's notes and warnings: the same in a dry run as in the real one."""
    for note in outcome.notes:
        say(f"  note: {note}")
    for warning in outcome.warnings:
        say(f"  warning: {warning}")


def _unpack_standalone(root: Root, the_plan: Plan, record: Record) -> str:
    """The self-contained form's directory, unpacked from the release file checked in planning."""
    directory = the_plan.standalone_dir
    assert directory is not None
    files.make_dirs(root, os.path.dirname(directory), record.ledger)
    with open(the_plan.artifact_source, "rb") as handle:
        data = handle.read()
    if files.digest(data) != the_plan.artifact.sha256:
        raise OSError(f"{the_plan.artifact_source} changed since it was checked")
    artifacts.unpack_standalone(data, root.host(directory), the_plan.artifact.sha256)
    if directory not in record.standalone_dirs:
        record.standalone_dirs.append(directory)
    return directory


def _write(run: _Run, say: Say) -> tuple[Record, Callable[[], None]]:
    """Apply the run's changes; the record, and a function that undoes them."""
    root, options, the_plan = run.root, run.options, run.plan
    record = run.record or Record(
        flavour=the_plan.flavour.name,
        options=msgspec.structs.replace(
            options, root="/", artifact=None, sha256=None, config=None, from_state=False
        ),
        binary=the_plan.binary,
        provider_config=the_plan.provider_config,
        kubelet_config=the_plan.kubelet_config,
        ledger=Ledger(),
        state_dirs_created=missing_dirs(root, STATE_DIR),
    )
    backups = files.BackupStore(root, BACKUPS)
    before = {
        change.path: files.current(root, change.path)
        for change, result in run.statuses
        if result != "unchanged"
    }
    dirs_before, entries_before = len(record.ledger.created_dirs), len(record.ledger.entries)

    unpacked: list[str] = []

    def undo() -> None:
        undo_run(root, before, record, dirs_before, entries_before)
        for directory in unpacked:
            shutil.rmtree(root.host(directory), ignore_errors=True)
            if directory in record.standalone_dirs:
                record.standalone_dirs.remove(directory)

    try:
        if run.standalone_pending:
            unpacked.append(_unpack_standalone(root, the_plan, record))
            say(f"  create    {the_plan.standalone_dir}  (the self-contained form)")
        if run.venv_pending:
            assert the_plan.python is not None
            files.make_dirs(root, os.path.dirname(options.venv_dir), record.ledger)
            venv = root.host(options.venv_dir)
            artifacts.build_venv(the_plan.artifact_source, the_plan.python, venv, the_plan.artifact.sha256)
            record.venv_dir = options.venv_dir
        for change, result in run.statuses:
            files.apply(root, change, record.ledger, backups)
            say(f"  {result:<9} {change.path}  ({change.what})")
        if run.changed:
            save_record(root, record)
    except (OSError, artifacts.ArtifactError) as exc:
        undo()
        raise InstallError(f"writing failed, this run's changes were undone: {exc}") from None
    return record, undo


def _prewarm(run: _Run, record: Record, outcome: Outcome, say: Say) -> None:
    the_plan = run.plan
    if the_plan.standalone_dir is not None:
        return  # nothing to unpack at run time: the directory is the program
    if not (run.options.prewarm and run.root.is_node and run.options.layout == "zipapp" and the_plan.python):
        if run.options.layout == "zipapp" and not run.root.is_node and run.changed:
            outcome.notes.append(
                "not pre-warmed (--root): the first exec on the node unpacks the zipapp (~2 s)"
            )
        return
    pex_root = the_plan.artifact.runtime_pex_root
    existed = bool(pex_root) and os.path.isdir(pex_root)
    try:
        warm = artifacts.prewarm(the_plan.binary, the_plan.python)
    except artifacts.ArtifactError as exc:
        outcome.warnings.append(f"{exc}; the kubelet's first pull will unpack it instead")
        return
    say(
        f"  pre-warmed with {warm.python} in {warm.seconds:.1f} s "
        f"(then an exec took {warm.second_exec_seconds:.2f} s)"
    )
    if pex_root and not existed and pex_root not in record.runtime_dirs and (run.changed or run.record):
        record.runtime_dirs.append(pex_root)
        save_record(run.root, record)


def _drop_older_standalones(root: Root, the_plan: Plan, record: Record) -> None:
    """After an upgrade checked out: the self-contained directories the link no longer points at
    (or all of them when this run installed the zipapp)."""
    older = [d for d in record.standalone_dirs if d != the_plan.standalone_dir]
    if not older:
        return
    for directory in older:
        shutil.rmtree(root.host(directory), ignore_errors=True)
        record.standalone_dirs.remove(directory)
    save_record(root, record)


def install(  # noqa: PLR0912 - the steps of a run, in order
    options: Options, say: Say, *, dry_run: bool = False, restart: bool = False, from_state: bool = False
) -> Outcome:
    """Install as ``options`` say; ``say`` prints one line. Raises ``InstallError`` before writing
    anything when the install must not happen."""
    root = Root(options.root)
    record = load_record(root)
    if from_state:
        if record is None:
            return Outcome(
                ok=True, changed=False, dry_run=dry_run, notes=[f"nothing installed ({RECORD} is absent)"]
            )
        options = _from_state(options, root, record)
    if restart and not root.is_node:
        raise InstallError(
            "--restart-kubelet needs the node itself (--root /): an image has no running kubelet"
        )
    if record is not None and (
        record.flavour != choose_flavour(options, root)[0].name or record.options.name != options.name
    ):
        raise InstallError(
            f"already installed here as flavour {record.flavour}, name {record.options.name} ({RECORD}): "
            "uninstall first"
        )
    the_plan = plan(options)
    run = _Run(
        root=root,
        options=options,
        plan=the_plan,
        statuses=[(change, files.status(root, change)) for change in the_plan.changes],
        venv_pending=options.layout == "venv"
        and the_plan.standalone_dir is None
        and artifacts.venv_marker(root.host(options.venv_dir)) != the_plan.artifact.sha256,
        standalone_pending=the_plan.standalone_dir is not None
        and artifacts.venv_marker(root.host(the_plan.standalone_dir)) != the_plan.artifact.sha256,
        record=record,
    )
    outcome = Outcome(
        ok=True,
        changed=run.changed,
        dry_run=dry_run,
        flavour=the_plan.flavour.name,
        changes=[{"path": c.path, "status": result, "what": c.what} for c, result in run.statuses],
        notes=list(the_plan.notes),
        warnings=list(the_plan.warnings),
    )
    if run.venv_pending:
        outcome.changes.append({"path": options.venv_dir, "status": "create", "what": "the read-only venv"})
    if run.standalone_pending:
        assert the_plan.standalone_dir is not None
        what = "the self-contained form"
        outcome.changes.append({"path": the_plan.standalone_dir, "status": "create", "what": what})
    say(f"flavour {the_plan.flavour.name} ({the_plan.detection})")
    if dry_run:
        _preview(run, say)
        _say_notes(outcome, say)
        return outcome
    written, undo = _write(run, say)
    if not run.changed:
        say("nothing to change: already installed")
    _prewarm(run, written, outcome, say)
    report, lines = _check(the_plan, root, options)
    outcome.validation = report
    for line in lines:
        say(f"  validate: {line}")
    if not report.ok:
        if run.changed:
            undo()
        outcome.ok = False
        outcome.error = "validate found errors" + ("; this run's changes were undone" if run.changed else "")
        return outcome
    say("  validate: the kubelet would start with this config")
    _drop_older_standalones(root, the_plan, written)
    _say_notes(outcome, say)
    if restart and run.changed:
        restart_kubelet(the_plan.flavour, say)
    elif restart:
        say("nothing changed: the kubelet was not restarted")
    elif run.changed:
        units = " or ".join(the_plan.flavour.services)
        say(
            f"the kubelet reads these files at start-up: restart it (systemctl restart {units}) "
            "or pass --restart-kubelet"
        )
    return outcome
