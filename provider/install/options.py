"""The installer's interface: the operator's options in, what a run did out, the error that stops one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional

import msgspec

from provider.ops.validation import Report
from provider.platforms import PROVIDER_NAME

__all__ = ["DEFAULT_VENV_DIR", "InstallError", "Options", "Outcome", "Say"]

DEFAULT_VENV_DIR = f"/usr/lib/{PROVIDER_NAME}/venv"


class InstallError(Exception):
    """The install cannot go ahead (one actionable line for stderr); nothing was written."""


class Options(msgspec.Struct, kw_only=True):
    """What the operator asked for (the parts kept in the record are enough to install again)."""

    flavour: Optional[str] = None
    root: str = "/"
    artifact: Optional[str] = None
    sha256: Optional[str] = None
    config: Optional[str] = None
    name: str = PROVIDER_NAME
    bin_dir: Optional[str] = None
    kubelet_config: Optional[str] = None
    kubelet_config_dir: bool = False
    provider_config: Optional[str] = None
    eks_mode: Literal["beside", "instead"] = "beside"
    layout: Literal["zipapp", "venv"] = "zipapp"
    venv_dir: str = DEFAULT_VENV_DIR
    python: Optional[str] = None
    kubelet_version: Optional[str] = None
    token_mode: bool = False
    audience: Optional[str] = None
    annotation_keys: list[str] = msgspec.field(default_factory=list)
    cache_type: str = "ServiceAccount"
    partial: bool = False
    skip_kubelet_flags: bool = False
    create_bin_dir: bool = False
    prewarm: bool = True
    arch: Optional[str] = None
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
    validation: Optional[Report] = None
    error: Optional[str] = None


Say = Callable[[str], None]
"""Prints one line of progress for the operator."""
