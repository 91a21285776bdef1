"""What several operator commands share: finding our config, the deadline, usage errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from provider.cachekeys import config_version
from provider.config import ProviderConfig, load_config
from provider.errors import ConfigError, ProviderError
from provider.fullpath import CacheContext
from provider.locations import CONFIG_ENV, config_path, named_by
from provider.protocol import parse_timeout

if TYPE_CHECKING:
    from provider.commands import Streams
    from provider.install.options import Outcome

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "config_version",
    "finish_install",
    "load_provider_config",
    "load_provider_config_for_cache",
    "open_cache",
    "say_to",
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
    environ = os.environ if environ is None else environ
    path = config_path(cli_value, environ)
    return path, _load(path, cli_value, environ)


def load_provider_config_for_cache(cli_value: str | None) -> tuple[str | None, ProviderConfig, str | None]:
    """``load_provider_config``, plus the config's cache version taken before reading it."""
    path = config_path(cli_value, os.environ)
    version = config_version(path)
    return path, _load(path, cli_value, os.environ), version


def _load(path: str | None, cli_value: str | None, environ: Mapping[str, str]) -> ProviderConfig:
    """``load_config``; an error names the environment variable when that named the file."""
    try:
        return load_config(path)
    except ConfigError as exc:
        if named_by(cli_value, environ) == CONFIG_ENV:
            raise ConfigError(f"{exc} (named by {CONFIG_ENV})") from None
        raise


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


def say_to(args: argparse.Namespace, streams: Streams) -> Callable[[str], None]:
    """Prints one line of progress on stdout, unless ``--quiet`` or ``--output json``."""
    quiet = args.quiet or args.output == "json"

    def say(line: str) -> None:
        if not quiet:
            streams.out(line + "\n")

    return say


def finish_install(
    args: argparse.Namespace, streams: Streams, outcome: Outcome | None, error: str | None
) -> int:
    """``install`` and ``uninstall``: print the outcome's tail (or the JSON document) and return
    the exit code."""
    from provider.install.options import Outcome
    from provider.output import emit_json
    from provider.platforms import PROVIDER_NAME

    if outcome is None:
        outcome = Outcome(ok=False, changed=False, dry_run=args.dry_run, error=error)
    if args.output == "json":
        emit_json(streams, outcome)
    elif not outcome.ok:
        streams.stderr.write(f"{PROVIDER_NAME}: error: {outcome.error}\n")
    return EXIT_OK if outcome.ok else EXIT_FAILURE
