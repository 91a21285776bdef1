"""Install and uninstall: from the operator's options to file changes, and back.

``plan`` reads the node (through a ``Root``) and returns every change an install makes,
without writing: the executable in the kubelet's bin dir, our config, the kubelet's
CredentialProviderConfig (our provider merged into the platform's file, or our own file in its
config directory on kubelets 1.34+), the kubelet flags through the flavour's mechanism, and on
EKS the drop-in that keeps our entry across nodeadm's rewrites. It refuses, before anything is
written, whatever the kubelet would reject or could not run. ``install`` applies the plan
(originals saved once, in the install record), pre-warms the zipapp, checks the result with
``validate`` (undoing this run's writes if it fails) and restarts the kubelet only when asked.
``uninstall`` puts back exactly what the record says was there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from provider import globs
from provider.config import ProviderConfig, decode_config
from provider.errors import ConfigError
from provider.install import artifact as artifacts
from provider.install import files
from provider.install.files import Change, Current, Entry, Ledger, Root
from provider.install.flavours import (
    ECR_PROVIDER_NAME,
    FLAVOURS,
    GENERIC_PROVIDER_CONFIG,
    Flavour,
    describe_detection,
    detect,
    generic,
)
from provider.install.kubeletflags import FlagsError, FlagsPlan, plan_flags, remerge_drop_in
from provider.install.pythons import advice, kubelet_pythons, os_release
from provider.kubeletconfig import (
    CredentialProvider,
    CredentialProviderConfig,
    KubeletConfigError,
    decode_document,
    encode,
    validate,
)
from provider.platforms import PROVIDER_NAME, TOKEN_AUDIENCES

__all__ = ["InstallError", "Options", "Plan", "Record", "install", "plan", "uninstall"]

STATE_DIR = f"/var/lib/{PROVIDER_NAME}/install"
RECORD = f"{STATE_DIR}/record.json"
BACKUPS = f"{STATE_DIR}/backups"
STATE_PARENT = f"/var/lib/{PROVIDER_NAME}"
DEFAULT_VENV_DIR = f"/usr/lib/{PROVIDER_NAME}/venv"
DIRECTORY_CONFIGS = (1, 34)
TOKEN_ATTRIBUTES = (1, 33)


class InstallError(Exception):
    """The install cannot go ahead (one actionable line for stderr); nothing was written."""


class Options(msgspec.Struct, kw_only=True):
    """What the operator asked for (the parts kept in the record are enough to install again)."""

    flavour: str | None = None
    root: str = "/"
    artifact: str | None = None
    sha256: str | None = None
    config: str | None = None
    name: str = PROVIDER_NAME
    bin_dir: str | None = None
    kubelet_config: str | None = None
    kubelet_config_dir: bool = False
    provider_config: str | None = None
    eks_mode: Literal["beside", "instead"] = "beside"
    layout: Literal["zipapp", "venv"] = "zipapp"
    venv_dir: str = DEFAULT_VENV_DIR
    python: str | None = None
    kubelet_version: str | None = None
    token_mode: bool = False
    audience: str | None = None
    annotation_keys: list[str] = msgspec.field(default_factory=list)
    cache_type: str = "ServiceAccount"
    partial: bool = False
    skip_kubelet_flags: bool = False
    create_bin_dir: bool = False
    prewarm: bool = True
    arch: str | None = None
    from_state: bool = False


class Record(msgspec.Struct, kw_only=True):
    """The install record (``/var/lib/registry-credential-provider/install/record.json``)."""

    version: int = 1
    flavour: str
    options: Options
    binary: str
    provider_config: str
    kubelet_config: str
    ledger: Ledger
    venv_dir: str | None = None
    runtime_dirs: list[str] = msgspec.field(default_factory=list)
    state_dirs_created: list[str] = msgspec.field(default_factory=list)


class Plan(msgspec.Struct, kw_only=True):
    flavour: Flavour
    detection: str
    artifact: artifacts.ArtifactInfo
    artifact_source: str
    checksum_source: str
    changes: list[Change]
    bin_dir: str
    binary: str
    provider_config: str
    kubelet_config: str
    kubelet_config_flag: str
    flags: FlagsPlan
    kubelet_version: tuple[int, int] | None
    python: str | None
    notes: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)


# --- planning ------------------------------------------------------------------------------------


def _flavour(options: Options, root: Root) -> tuple[Flavour, str]:
    if options.flavour == "generic":
        if not options.bin_dir or not options.kubelet_config:
            raise InstallError(
                "--flavor generic needs --bin-dir and --kubelet-config (the kubelet's two flags)"
            )
        return (
            generic(
                options.bin_dir, options.kubelet_config, options.provider_config or GENERIC_PROVIDER_CONFIG
            ),
            "given",
        )
    if options.flavour:
        return FLAVOURS[options.flavour], "given"
    found = detect(root.exists)
    if found is None:
        raise InstallError(
            "could not tell which platform this node is (no EKS, GKE, AKS, kubeadm, k3s, rke2 or OpenShift "
            "files found): pass --flavor, or --flavor generic with --bin-dir and --kubelet-config"
        )
    return found[0], "detected: " + describe_detection(found)


def _version(text: str) -> tuple[int, int] | None:
    found = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def kubelet_version(options: Options, root: Root, flavour: Flavour) -> tuple[int, int] | None:
    """``--kubelet-version``, else what the node's kubelet says (only on the node itself)."""
    if options.kubelet_version:
        version = _version(options.kubelet_version)
        if version is None:
            raise InstallError(
                f"--kubelet-version: expected a version like 1.33, got {options.kubelet_version!r}"
            )
        return version
    if not root.is_node:
        return None
    program = {"k3s": "k3s", "rke2": "rke2"}.get(flavour.name, "kubelet")
    candidates = [shutil.which(program, path=artifacts.SYSTEMD_PATH), "/home/kubernetes/bin/kubelet"]
    for binary in candidates:
        if binary and os.path.exists(binary):
            try:
                result = subprocess.run(
                    [binary, "--version"], capture_output=True, text=True, timeout=20, check=False
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            version = _version(result.stdout + result.stderr)
            if version is not None:
                return version
    return None


def _our_config(options: Options) -> tuple[ProviderConfig, bytes]:
    """Our config, checked, and the bytes to install (JSON: the kubelet path parses it faster)."""
    if not options.config:
        raise InstallError(
            "install needs --config FILE: our rules decide which images the kubelet sends us "
            "(see 'registry-credential-provider render --help')"
        )
    try:
        with open(options.config, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InstallError(f"--config {options.config}: {exc.strerror}") from None
    config = decode_config(data, options.config)
    if data.lstrip().startswith(b"{"):
        return config, data if data.endswith(b"\n") else data + b"\n"
    import msgspec.yaml

    tree = msgspec.yaml.decode(data)
    converted = msgspec.json.format(msgspec.json.encode(tree), indent=2) + b"\n"
    decode_config(converted, options.config + " (as JSON)")
    return config, converted


def _our_provider(
    options: Options, config: ProviderConfig, flavour: Flavour, provider_config: str, warnings: list[str]
) -> CredentialProvider:
    from provider.ops.rendering import RenderError, build, token_attributes

    token = None
    if options.token_mode:
        audience = options.audience or TOKEN_AUDIENCES.get(flavour.name)
        if not audience:
            raise InstallError(f"--token-mode needs --audience (no default for flavour {flavour.name})")
        token, more = token_attributes(config, audience, options.annotation_keys, options.cache_type)
        warnings += more
    try:
        document, more = build(
            config,
            flavour.platform,
            name=options.name,
            provider_config=provider_config,
            partial=options.partial,
            token=token,
        )
    except RenderError as exc:
        raise InstallError(str(exc)) from None
    warnings += more
    return document.providers[0]


def _document_bytes(providers: list[CredentialProvider], fmt: str, note: str) -> bytes:
    data = encode(CredentialProviderConfig.v1(providers), fmt)
    if fmt == "yaml":
        data = f"# {note}\n".encode() + data
    return data


class KubeletTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where our kubelet-side entry goes and what the kubelet there can read."""

    flavour: Flavour
    flag: str
    version: tuple[int, int] | None
    name: str
    eks_instead: bool

    @property
    def token_gate(self) -> bool:
        return self.version is None or self.version >= DIRECTORY_CONFIGS

    @property
    def note(self) -> str:
        return (
            f"Written by '{PROVIDER_NAME} install' (flavour {self.flavour.name}); "
            f"'{PROVIDER_NAME} uninstall' undoes it."
        )


def _kubelet_config_change(
    options: Options,
    root: Root,
    target: KubeletTarget,
    ours: CredentialProvider,
    notes: list[str],
    warnings: list[str],
) -> tuple[Change, str]:
    """The kubelet config file to write (a merge, or our own file in a config directory)."""
    platform = target.flavour.platform
    version = target.version
    if options.token_mode and version is not None and version < TOKEN_ATTRIBUTES:
        raise InstallError(
            f"--token-mode: kubelet {version[0]}.{version[1]} has no tokenAttributes "
            "(it needs 1.33+, on by default in 1.34)"
        )
    if (
        root.isdir(target.flag)
        or options.kubelet_config_dir
        or platform.kubelet_config != platform.kubelet_config_flag
    ):
        return _directory_config(root, target, ours, warnings)
    return _merged_config(root, target, ours, notes, warnings)


def _directory_config(
    root: Root, target: KubeletTarget, ours: CredentialProvider, warnings: list[str]
) -> tuple[Change, str]:
    """Our own file in the kubelet's config directory (kubelet 1.34+ merges the directory)."""
    flag, version = target.flag.rstrip("/"), target.version
    if version is not None and version < DIRECTORY_CONFIGS:
        raise InstallError(
            f"{flag} is a directory of configs, which kubelet {version[0]}.{version[1]} cannot read (1.34+)"
        )
    if version is None:
        warnings.append(f"{flag}: a directory of configs needs kubelet 1.34+ (its version is unknown here)")
    platform_file = target.flavour.platform.kubelet_config
    path = platform_file if os.path.dirname(platform_file) == flag else f"{flag}/{target.name}.yaml"
    host = root.host(flag)
    for entry in sorted(os.listdir(host)) if os.path.isdir(host) else ():
        other = f"{flag}/{entry}"
        if other == path or not entry.endswith((".json", ".yaml", ".yml")):
            continue
        try:
            _, providers = decode_document(root.read(other) or b"", other)
        except KubeletConfigError as exc:
            raise InstallError(f"{other} would already stop the kubelet: {exc}") from None
        if any(p.name == ours.name for p in providers):
            raise InstallError(
                f"{other} already defines a provider named {ours.name!r}: the kubelet refuses a name "
                "repeated across files (remove it, or install under another --name)"
            )
    problems = validate([ours], token_gate=target.token_gate)
    if problems:
        raise InstallError("the kubelet would reject our entry: " + "; ".join(problems))
    what = "kubelet CredentialProviderConfig (our file in its directory)"
    return Change(path=path, what=what, content=_document_bytes([ours], "yaml", target.note)), path


def _merged_config(
    root: Root, target: KubeletTarget, ours: CredentialProvider, notes: list[str], warnings: list[str]
) -> tuple[Change, str]:
    """The kubelet's config file with our provider in it, the others kept."""
    path = target.flag
    existing = root.read(path)
    providers: list[CredentialProvider] = []
    fmt = "json" if path.endswith(".json") else "yaml"
    if existing is None and target.flavour.needs_kubelet_config:
        raise InstallError(
            f"{path} does not exist: on {target.flavour.platform.title} the platform writes it and passes "
            "it to the kubelet; without it the kubelet runs no credential provider (is this a "
            f"{target.flavour.name} node? pass --flavor)"
        )
    if existing is not None:
        try:
            _, providers = decode_document(existing, path)
        except KubeletConfigError as exc:
            raise InstallError(
                f"{path} would already stop the kubelet: {exc} (fix it first; install merges into it)"
            ) from None
        fmt = "json" if existing.lstrip().startswith(b"{") else "yaml"
    merged: list[CredentialProvider] = []
    for provider in providers:
        if provider.name == ours.name:
            merged.append(ours)
        elif target.eks_instead and provider.name == ECR_PROVIDER_NAME:
            notes.append(f"{path}: {ECR_PROVIDER_NAME} replaced by {ours.name} (--eks-mode instead)")
        else:
            merged.append(provider)
            _overlap_warnings(provider, ours, warnings)
    if ours not in merged:
        merged.append(ours)
    problems = validate(merged, token_gate=target.token_gate)
    if problems:
        raise InstallError(f"the kubelet would reject {path} after the merge: " + "; ".join(problems))
    others = [p.name for p in merged if p.name != ours.name]
    what = "kubelet CredentialProviderConfig" + (f" (merged beside {', '.join(others)})" if others else "")
    # Already what we want: keep its formatting and comments.
    unchanged = existing is not None and providers == merged
    content = existing if unchanged and existing is not None else _document_bytes(merged, fmt, target.note)
    return Change(path=path, what=what, content=content, merged=ours.name), path


def _overlap_warnings(other: CredentialProvider, ours: CredentialProvider, warnings: list[str]) -> None:
    mine = [g for g in map(globs.parse, ours.match_images or ()) if g is not None]
    for text in other.match_images or ():
        theirs = globs.parse(text)
        if theirs is None:
            continue
        both = [g.text for g in mine if globs.overlaps(g, theirs)]
        if both:
            warnings.append(
                f"{other.name} also matches {text!r} (ours: {', '.join(both)}): the kubelet runs both "
                "plugins for those images and merges their answers"
                + (
                    " (--eks-mode instead replaces ecr-credential-provider)"
                    if other.name == ECR_PROVIDER_NAME
                    else ""
                )
            )


def _python(options: Options) -> str:
    if options.python:
        return options.python
    return os.path.realpath(sys.executable)


def _check_python(python: str) -> None:
    try:
        result = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        raise InstallError(f"--python {python}: {exc.strerror}") from None
    version = _version(result.stdout)
    if result.returncode != 0 or version is None or not (3, 10) <= version < (3, 14):
        raise InstallError(
            f"--python {python} is not CPython 3.10-3.13 ({result.stdout.strip() or 'did not run'})"
        )


class _Artifact(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    data: bytes
    info: artifacts.ArtifactInfo
    checksum_source: str


def _artifact(options: Options, notes: list[str]) -> _Artifact:
    """The release file, checked: ours, intact (its SHA-256), for this CPU."""
    source = options.artifact or os.environ.get("PEX")
    if not source:
        raise InstallError("--artifact FILE is needed (the release file to install)")
    source = os.path.abspath(source)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InstallError(f"--artifact {source}: {exc.strerror}") from None
    try:
        info = artifacts.inspect(data, source)
        expected, checksum_source = artifacts.expected_sha256(source, options.sha256)
        artifacts.check_arch(info, source, artifacts.node_arch(options.arch))
    except artifacts.ArtifactError as exc:
        raise InstallError(str(exc)) from None
    if expected is not None and expected != info.sha256:
        raise InstallError(
            f"{source}: SHA-256 {info.sha256} does not match {expected} from {checksum_source}: "
            "the download is damaged or not the release it claims to be"
        )
    if expected is None and not options.from_state:
        notes.append("no checksum given (--sha256 or a SHA256SUMS beside the file): installed as found")
    return _Artifact(source=source, data=data, info=info, checksum_source=checksum_source)


def _interpreter(options: Options, root: Root) -> str | None:
    """The CPython that pre-warms or builds the venv (None: not needed); refuses a node whose
    kubelet would find no supported one."""
    if not kubelet_pythons(root, artifacts.SYSTEMD_PATH):
        raise InstallError(
            "no CPython 3.10-3.13 on the kubelet's PATH (python3.13 ... python3.10 in "
            f"{artifacts.SYSTEMD_PATH}): the kubelet could not run the plugin; " + advice(os_release(root))
        )
    if options.layout == "venv" and not root.is_node:
        raise InstallError(
            "--layout venv builds the venv where it runs (pex writes its path into it): run the install "
            "inside the image build (a chroot, a RUN step), not with --root"
        )
    if options.layout == "venv" or (options.prewarm and root.is_node):
        python = _python(options)
        _check_python(python)
        return python
    return None


def _flags(options: Options, root: Root, flavour: Flavour) -> FlagsPlan:
    if options.skip_kubelet_flags:
        return FlagsPlan(
            kubelet_config=options.kubelet_config or flavour.platform.kubelet_config_flag,
            bin_dir=options.bin_dir or flavour.platform.bin_dir,
            source="left to the operator (--skip-kubelet-flags)",
        )
    try:
        return plan_flags(root, flavour, kubelet_config=options.kubelet_config, bin_dir=options.bin_dir)
    except FlagsError as exc:
        raise InstallError(str(exc)) from None


def _check_bin_dir(options: Options, root: Root, flavour: Flavour, bin_dir: str, notes: list[str]) -> None:
    if root.isdir(bin_dir):
        return
    if flavour.needs_bin_dir or (flavour.name == "generic" and not options.create_bin_dir):
        why = (
            f"{flavour.platform.title} creates it" if flavour.needs_bin_dir else "--create-bin-dir creates it"
        )
        raise InstallError(
            f"the kubelet's bin dir {bin_dir} does not exist ({why}); a kubelet whose bin dir is missing "
            "does not start: check --flavor and --bin-dir"
        )
    notes.append(f"{bin_dir} created (the kubelet's --image-credential-provider-bin-dir)")


def plan(options: Options) -> Plan:
    """Every change an install makes, computed without writing; ``InstallError`` if it must not."""
    root = Root(options.root)
    if not root.isdir("/"):
        raise InstallError(f"--root {options.root} is not a directory")
    flavour, detection = _flavour(options, root)
    notes: list[str] = []
    warnings: list[str] = []
    found = _artifact(options, notes)
    python = _interpreter(options, root)
    try:
        config, config_bytes = _our_config(options)
    except ConfigError as exc:
        raise InstallError(str(exc)) from None
    flags = _flags(options, root, flavour)
    notes += flags.notes
    _check_bin_dir(options, root, flavour, flags.bin_dir, notes)
    provider_config = options.provider_config or flavour.platform.provider_config
    if not provider_config.startswith("/"):
        raise InstallError(
            f"--provider-config: expected an absolute path on the node, got {provider_config!r}"
        )
    version = kubelet_version(options, root, flavour)
    ours = _our_provider(options, config, flavour, provider_config, warnings)
    target = KubeletTarget(
        flavour=flavour,
        flag=flags.kubelet_config,
        version=version,
        name=options.name,
        eks_instead=flavour.name == "eks" and options.eks_mode == "instead",
    )
    kubelet_change, kubelet_file = _kubelet_config_change(options, root, target, ours, notes, warnings)
    binary = f"{flags.bin_dir.rstrip('/')}/{options.name}"
    if options.layout == "venv":
        what = "the plugin (a link into the read-only venv)"
        link = f"{options.venv_dir.rstrip('/')}/pex"
        binary_change = Change(path=binary, what=what, kind="symlink", target=link)
    else:
        what = "the plugin executable"
        binary_change = Change(path=binary, what=what, content=found.data, mode=0o755, binary=True)
    changes = [
        binary_change,
        Change(path=provider_config, what="our config", content=config_bytes, mode=0o644),
        kubelet_change,
    ]
    if flags.change is not None:
        changes.append(flags.change)
    if flavour.remerge and not options.skip_kubelet_flags:
        changes.append(remerge_drop_in("kubelet.service", binary, flavour.name))
    return Plan(
        flavour=flavour,
        detection=detection,
        artifact=found.info,
        artifact_source=found.source,
        checksum_source=found.checksum_source,
        changes=changes,
        bin_dir=flags.bin_dir,
        binary=binary,
        provider_config=provider_config,
        kubelet_config=kubelet_file,
        kubelet_config_flag=flags.kubelet_config,
        flags=flags,
        kubelet_version=version,
        python=python,
        notes=notes,
        warnings=warnings,
    )


# --- the record ----------------------------------------------------------------------------------

_RECORD_DECODER = msgspec.json.Decoder(Record)


def load_record(root: Root) -> Record | None:
    data = root.read(RECORD)
    if data is None:
        return None
    try:
        return _RECORD_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise InstallError(f"{RECORD} is damaged ({exc}); its backups are in {BACKUPS}") from None


def save_record(root: Root, record: Record) -> None:
    os.makedirs(root.host(STATE_DIR), mode=0o700, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"
    files.write_file(root.host(RECORD), data, 0o600)


def _missing_dirs(root: Root, node_dir: str) -> list[str]:
    """``node_dir`` and its ancestors that do not exist yet, outermost first."""
    missing = []
    path = node_dir
    while path != "/" and not root.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return list(reversed(missing))


def _remove_state(root: Root, record: Record) -> None:
    """The record, its backups, and the directories the first install created for them."""
    shutil.rmtree(root.host(STATE_DIR), ignore_errors=True)
    for directory in reversed(record.state_dirs_created):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(root.host(directory))


# --- install -------------------------------------------------------------------------------------


class Outcome(msgspec.Struct, kw_only=True):
    """What an install or uninstall did (``--output json``)."""

    ok: bool
    changed: bool
    dry_run: bool
    flavour: str = ""
    changes: list[dict[str, str]] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    validation: dict[str, object] | None = None
    error: str | None = None


Say = Callable[[str], None]


def _restart(flavour: Flavour, say: Say) -> None:
    units = [unit for unit in flavour.services if _unit_exists(unit)]
    if not units:
        raise InstallError(
            f"no {' or '.join(flavour.services)} service here to restart: restart the kubelet yourself"
        )
    result = subprocess.run(["systemctl", "restart", units[0]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemctl restart {units[0]} failed: {result.stderr.strip()}")
    say(f"restarted {units[0]}")


def _unit_exists(unit: str) -> bool:
    try:
        result = subprocess.run(
            ["systemctl", "show", "--property=LoadState", "--value", unit],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return False
    return result.stdout.strip() == "loaded"


def _validate(the_plan: Plan, root: Root, options: Options) -> tuple[bool, dict[str, object], list[str]]:
    """The installed result through ``validate`` (as the kubelet would read it)."""
    import argparse
    import io

    from provider.commands import Streams
    from provider.commands import validate as command

    args = argparse.Namespace(
        kubelet_config=root.host(the_plan.kubelet_config_flag),
        bin_dir=root.host(the_plan.bin_dir),
        flavor=None,
        name=options.name,
        kubelet_version=(
            f"{the_plan.kubelet_version[0]}.{the_plan.kubelet_version[1]}"
            if the_plan.kubelet_version
            else None
        ),
        config=root.host(the_plan.provider_config),
        output="json",
        timeout=None,
    )
    out = io.BytesIO()
    err = io.StringIO()
    code = command.run(args, Streams(io.BytesIO(), out, err))
    report = json.loads(out.getvalue() or b"{}")
    lines = []
    for check in report.get("checks", []):
        detail = str(check.get("detail", ""))
        if not root.is_node and detail.startswith("checking --config"):
            continue  # under --root the same file has two names
        if check.get("status") != "ok":
            lines.append(f"{check.get('status')}: {check.get('check')}: {detail}")
    return code == 0, report, lines


def _from_state(options: Options, root: Root, record: Record) -> Options:
    """The recorded options, with the installed files as sources (the EKS drop-in's re-merge)."""
    artifact = record.binary
    if record.options.layout == "venv":
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
    record: Record | None

    @property
    def changed(self) -> bool:
        return self.venv_pending or any(result != "unchanged" for _, result in self.statuses)


def _preview(run: _Run, say: Say) -> None:
    for change, result in run.statuses:
        say(f"  {result:<9} {change.path}  ({change.what})")
        if result != "unchanged":
            for line in files.diff(run.root, change).splitlines():
                say("    " + line)
    if run.venv_pending:
        say(f"  create    {run.options.venv_dir}  (the read-only venv, built with {run.plan.python})")
    say("dry run: nothing written" if run.changed else "nothing to change: already installed")


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
        state_dirs_created=_missing_dirs(root, STATE_DIR),
    )
    backups = files.BackupStore(root, BACKUPS)
    before = {
        change.path: files.current(root, change.path)
        for change, result in run.statuses
        if result != "unchanged"
    }
    dirs_before, entries_before = len(record.ledger.created_dirs), len(record.ledger.entries)

    def undo() -> None:
        _undo(root, before, record, dirs_before, entries_before)

    try:
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
        record.flavour != _flavour(options, root)[0].name or record.options.name != options.name
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
        and artifacts.venv_marker(root.host(options.venv_dir)) != the_plan.artifact.sha256,
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
    say(f"flavour {the_plan.flavour.name} ({the_plan.detection})")
    if dry_run:
        _preview(run, say)
        return outcome
    written, undo = _write(run, say)
    if not run.changed:
        say("nothing to change: already installed")
    _prewarm(run, written, outcome, say)
    ok, report, lines = _validate(the_plan, root, options)
    outcome.validation = report
    for line in lines:
        say(f"  validate: {line}")
    if not ok:
        if run.changed:
            undo()
        outcome.ok = False
        outcome.error = "validate found errors" + ("; this run's changes were undone" if run.changed else "")
        return outcome
    say("  validate: the kubelet would start with this config")
    for note in outcome.notes:
        say(f"  note: {note}")
    for warning in outcome.warnings:
        say(f"  warning: {warning}")
    if restart and run.changed:
        _restart(the_plan.flavour, say)
    elif restart:
        say("nothing changed: the kubelet was not restarted")
    elif run.changed:
        units = " or ".join(the_plan.flavour.services)
        say(
            f"the kubelet reads these files at start-up: restart it (systemctl restart {units}) "
            "or pass --restart-kubelet"
        )
    return outcome


def _undo(
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
    _remove_state(root, record)


# --- uninstall -----------------------------------------------------------------------------------


def _unmerge(root: Root, entry: Entry) -> bytes | None:
    """The file without our provider (others' later edits kept); None if it cannot be read."""
    data = root.read(entry.path)
    if data is None:
        return None
    try:
        _, providers = decode_document(data, entry.path)
    except KubeletConfigError:
        return None
    kept = [p for p in providers if p.name != entry.merged]
    if len(kept) == len(providers):
        return data
    if not kept:
        return b""
    fmt = "json" if data.lstrip().startswith(b"{") else "yaml"
    return _document_bytes(kept, fmt, f"Our provider removed by '{PROVIDER_NAME} uninstall'.")


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
    content = _unmerge(root, entry)
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
        _remove_state(root, record)
        say("uninstalled: every file is as it was before the first install")
    if restart:
        _restart(FLAVOURS.get(record.flavour) or generic("/", "/", "/"), say)
    else:
        say("restart the kubelet for it to forget the plugin (or pass --restart-kubelet)")
    return outcome


def kubelet_config_providers(root: Root, path: str) -> Sequence[CredentialProvider]:
    """The providers in one kubelet config file (tests and doctor-like checks)."""
    return decode_document(root.read(path) or b"", path)[1]
