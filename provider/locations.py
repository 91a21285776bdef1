"""Where the config comes from, with no dependencies (the fast path needs it before anything)."""

from __future__ import annotations

from collections.abc import Mapping

CONFIG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_CONFIG"


def config_path(cli_value: str | None, environ: Mapping[str, str]) -> str | None:
    """Where the config comes from: ``--config``, else the environment, else None (embedded default)."""
    if cli_value:
        return cli_value
    return environ.get(CONFIG_ENV) or None
