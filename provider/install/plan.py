"""Planning an install: from the operator's options and the node (read through a ``Root``) to
every change an install makes, without writing.

The changes are the executable in the kubelet's bin dir, our config, the kubelet's
CredentialProviderConfig (``kubeletfile``), the kubelet flags through the flavour's mechanism,
and on EKS the drop-in that keeps our entry across nodeadm's rewrites. ``plan`` refuses, before
anything is written, whatever the kubelet would reject or could not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Optional

import msgspec

from provider import __version__
from provider.config import ProviderConfig, decode_config
from provider.errors import ConfigError
from provider.install import artifact as artifacts
from provider.install.files import Change, Root
from provider.install.flavours import (
    FLAVOURS,
    GENERIC_PROVIDER_CONFIG,
    Flavour,
    describe_detection,
    detect,
    generic,
)
from provider.install.kubeletfile import KubeletTarget, kubelet_config_change
from provider.install.kubeletflags import FlagsError, FlagsPlan, plan_flags, remerge_drop_in
from provider.install.options import InstallError, Options
from provider.install.pythons import ZIPAPP, choose_form
from provider.kubeletconfig import CredentialProvider
from provider.ops.rendering import RenderError, build, explicit_audience_reason, token_attributes
from provider.platforms import PROVIDER_NAME, TOKEN_AUDIENCES
from provider.releasenames import standalone_name

__all__ = ["Plan", "choose_flavour", "kubelet_version", "plan", "standalone_home"]


def standalone_home(bin_dir: str, name: str, version: str) -> str:
    """Where the self-contained form's directory goes: ``<bin dir>/<name>-standalone/<version>``.

    Inside the kubelet's bin dir because that is the one directory every platform keeps writable
    and executable for plugins: Flatcar, COS, Talos and RHCOS have a read-only ``/usr``, and COS
    mounts ``/var`` and most of ``/home`` noexec (its bin dir ``/home/kubernetes/bin`` is exec).
    The kubelet only execs ``<bin dir>/<name>``, so the subdirectory is inert to it; the
    version in the path lets an upgrade unpack beside the old one and switch the link.
    """
    return f"{bin_dir.rstrip('/')}/{name}-standalone/{version}"


class Plan(msgspec.Struct, kw_only=True):
    """Every change an install makes (node paths), and what was decided on the way there."""

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
    kubelet_version: Optional[tuple[int, int]]
    python: Optional[str]
    standalone_dir: Optional[str] = None
    notes: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)


def choose_flavour(options: Options, root: Root) -> tuple[Flavour, str]:
    """The platform (given, or detected from the node's files) and how it was chosen."""
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
    token = None
    if options.token_mode:
        audience = options.audience or TOKEN_AUDIENCES.get(flavour.name)
        if not audience:
            raise InstallError(f"--token-mode needs --audience (no default for flavour {flavour.name})")
        reason = None if options.audience else explicit_audience_reason(config)
        if reason is not None:
            raise InstallError(
                f"--token-mode needs --audience: {reason} "
                f"(the {flavour.name} default {audience} does not fit)"
            )
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
    if result.returncode != 0 or version is None or not (3, 9) <= version < (3, 14):
        raise InstallError(
            f"--python {python} is not CPython 3.9-3.13 ({result.stdout.strip() or 'did not run'})"
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


def _interpreter(options: Options, root: Root, info: artifacts.ArtifactInfo) -> str | None:
    """The CPython that pre-warms or builds the venv (None: not needed); refuses a node whose
    kubelet would find no supported one for the zipapp."""
    if info.form == artifacts.STANDALONE_FORM:
        if options.layout == "venv":
            raise InstallError(
                "--layout venv is for the zipapp; the self-contained form is installed as its directory"
            )
        return None
    form, why = choose_form(root, artifacts.SYSTEMD_PATH)
    if form != ZIPAPP:
        standalone = standalone_name(__version__, artifacts.node_arch(options.arch))
        raise InstallError(
            f"{why}; this file is the zipapp: install {standalone} instead (install.sh picks it)"
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
    flavour, detection = choose_flavour(options, root)
    notes: list[str] = []
    warnings: list[str] = []
    found = _artifact(options, notes)
    python = _interpreter(options, root, found.info)
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
    kubelet_change, kubelet_file = kubelet_config_change(options, root, target, ours, notes, warnings)
    binary = f"{flags.bin_dir.rstrip('/')}/{options.name}"
    standalone = None
    if found.info.form == artifacts.STANDALONE_FORM:
        standalone = standalone_home(flags.bin_dir, options.name, found.info.version)
        relative = os.path.relpath(f"{standalone}/{PROVIDER_NAME}", flags.bin_dir)
        what = "the plugin (a link into the self-contained form's directory)"
        binary_change = Change(path=binary, what=what, kind="symlink", target=relative)
        notes.append(f"the self-contained form (brings its own CPython) goes to {standalone}")
    elif options.layout == "venv":
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
        standalone_dir=standalone,
        notes=notes,
        warnings=warnings,
    )
