"""Where the config comes from, with no dependencies (the fast path needs it before anything)."""

from __future__ import annotations

from collections.abc import Mapping

CONFIG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_CONFIG"


def config_path(cli_value: str | None, environ: Mapping[str, str]) -> str | None:
    """Where the config comes from: ``--config``, else the environment, else None (embedded default)."""
    if cli_value:
        return cli_value
    return environ.get(CONFIG_ENV) or None


def named_by(cli_value: str | None, environ: Mapping[str, str]) -> str:
    """Which setting named the config ``config_path`` returns, for error messages: ``--config``,
    the environment variable, or ``embedded`` (none)."""
    if cli_value:
        return "--config"
    return CONFIG_ENV if environ.get(CONFIG_ENV) else "embedded"
