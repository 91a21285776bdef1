"""The kubelet's CredentialProviderConfig on the node: our entry merged into the platform's file
(the other providers kept), or our own file in its config directory (kubelet 1.34+); and our
entry taken out again."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

import msgspec

from provider import globs
from provider.install.files import Change, Entry, Root
from provider.install.flavours import ECR_PROVIDER_NAME, Flavour
from provider.install.options import InstallError, Options
from provider.kubeletconfig import (
    CredentialProvider,
    CredentialProviderConfig,
    KubeletConfigError,
    decode_document,
    encode,
    validate,
)
from provider.platforms import PROVIDER_NAME

__all__ = [
    "DIRECTORY_CONFIGS",
    "TOKEN_ATTRIBUTES",
    "KubeletTarget",
    "kubelet_config_change",
    "kubelet_config_providers",
    "unmerge",
]

DIRECTORY_CONFIGS = (1, 34)
TOKEN_ATTRIBUTES = (1, 33)


def _document_bytes(providers: list[CredentialProvider], fmt: str, note: str) -> bytes:
    data = encode(CredentialProviderConfig.v1(providers), fmt)
    if fmt == "yaml":
        data = f"# {note}\n".encode() + data
    return data


class KubeletTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where our kubelet-side entry goes and what the kubelet there can read."""

    flavour: Flavour
    flag: str
    version: Optional[tuple[int, int]]
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


def kubelet_config_change(
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


def unmerge(root: Root, entry: Entry) -> bytes | None:
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


def kubelet_config_providers(root: Root, path: str) -> Sequence[CredentialProvider]:
    """The providers in one kubelet config file (tests and doctor-like checks)."""
    return decode_document(root.read(path) or b"", path)[1]
