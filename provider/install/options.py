"""The installer's interface: the operator's options in, what a run did out, the error that stops one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from provider.ops.validation import Report
from provider.platforms import PROVIDER_NAME

__all__ = ["DEFAULT_VENV_DIR", "InstallError", "Options", "Outcome", "Say"]

DEFAULT_VENV_DIR = f"/usr/lib/{PROVIDER_NAME}/venv"


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


class Outcome(msgspec.Struct, kw_only=True):
    """What an install or uninstall did (``--output json``); ``validation``: the check of the result."""

    ok: bool
    changed: bool
    dry_run: bool
    flavour: str = ""
    changes: list[dict[str, str]] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    validation: Report | None = None
    error: str | None = None


Say = Callable[[str], None]
"""Prints one line of progress for the operator."""
