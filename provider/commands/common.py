"""What several operator commands share: finding our config, the deadline, usage errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping

from provider.cachekeys import config_version
from provider.config import ProviderConfig, load_config
from provider.errors import ProviderError
from provider.fullpath import CacheContext
from provider.locations import config_path
from provider.protocol import parse_timeout

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "config_version",
    "load_provider_config",
    "load_provider_config_for_cache",
    "open_cache",
    "timeout_seconds",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

EXIT_CODES = """\
exit codes:
  0  {ok}
  1  {failure}
  2  the command line is wrong
"""


class UsageError(ProviderError):
    """A command's arguments are wrong in a way argparse cannot see (exit 2)."""


def load_provider_config(
    cli_value: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str | None, ProviderConfig]:
    """Our config as kubelet mode would load it: ``--config``, else the environment, else embedded."""
    path = config_path(cli_value, os.environ if environ is None else environ)
    return path, load_config(path)


def load_provider_config_for_cache(cli_value: str | None) -> tuple[str | None, ProviderConfig, str | None]:
    """``load_provider_config``, plus the config's cache version taken before reading it."""
    path = config_path(cli_value, os.environ)
    version = config_version(path)
    return path, load_config(path), version


def timeout_seconds(args: argparse.Namespace, default: float) -> float:
    """``--timeout`` (a Go duration, at most 55s) or ``default``."""
    value: str | None = getattr(args, "timeout", None)
    if value is None:
        return default
    try:
        return parse_timeout(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def open_cache(
    path: str | None, config: ProviderConfig, warn: Callable[[str], None], version: str | None = None
) -> CacheContext | None:
    """The disk cache exactly as kubelet mode opens it, or None where the config turns it off."""
    return CacheContext.open(
        config,
        config_version=version if version is not None else config_version(path),
        environ=os.environ,
        warn=warn,
    )
