"""``validate``: would the kubelet start with this setup, and would it ask us for the right images?

The checks are ``provider.ops.validation``'s; this command turns ``--flavor`` and
``--kubelet-version`` into its options and prints its report as a table or JSON.
"""

from __future__ import annotations

import argparse
import re

from provider.commands import Streams
from provider.commands.common import EXIT_CODES, EXIT_USAGE, UsageError
from provider.ops.validation import Report, ValidateOptions, check
from provider.output import add_output_argument, checks_table, emit_json, exit_code, use_colour
from provider.platforms import FLAVORS, PROVIDER_NAME

HELP = "check the kubelet's CredentialProviderConfig, the bin dir and our config, as the kubelet would"
EPILOG = EXIT_CODES.format(
    ok="no errors (warnings may be printed)",
    failure="errors found: the kubelet would refuse to start, or pulls would fail",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubelet-config",
        metavar="FILE|DIR",
        help="the kubelet's --image-credential-provider-config (a directory: kubelet 1.34+)",
        default=None,
    )
    parser.add_argument(
        "--bin-dir", metavar="DIR", help="the kubelet's --image-credential-provider-bin-dir", default=None
    )
    parser.add_argument(
        "--flavor",
        choices=sorted(FLAVORS),
        help="take --kubelet-config and --bin-dir from this platform's usual paths",
        default=None,
    )
    parser.add_argument(
        "--name",
        default=PROVIDER_NAME,
        help=f"our provider's name in the kubelet config (default: {PROVIDER_NAME})",
    )
    parser.add_argument(
        "--kubelet-version",
        metavar="1.N",
        help="judge as this kubelet would (directories need 1.34, tokenAttributes 1.33/1.34); default: 1.34+",
        default=None,
    )
    add_output_argument(parser)
    parser.epilog = EPILOG


def _kubelet_version(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text)
    if match is None:
        raise UsageError(f"--kubelet-version: expected a version like 1.33, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _summary(report: Report) -> str:
    failures = sum(check.status == "fail" for check in report.checks)
    warnings = sum(check.status == "warn" for check in report.checks)
    scope = "" if report.kubelet_config else " (our config only: pass --kubelet-config or --flavor)"
    if report.kubelet_error:
        return (
            f"{failures} error(s), {warnings} warning(s){scope}; the kubelet would exit at start-up "
            "with the first of them, saying:\n"
            f"  {report.kubelet_error}\n"
        )
    verdict = "errors found" if failures else "valid"
    return f"{verdict}: {failures} error(s), {warnings} warning(s){scope}\n"


def options_from(args: argparse.Namespace) -> ValidateOptions:
    """The checks ``args`` ask for (``--flavor`` fills in the paths not given); ``UsageError``."""
    version = _kubelet_version(args.kubelet_version)
    flavor = FLAVORS.get(args.flavor) if args.flavor else None
    return ValidateOptions(
        kubelet_config=args.kubelet_config or (flavor.kubelet_config_flag if flavor else None),
        bin_dir=args.bin_dir or (flavor.bin_dir if flavor else None),
        name=args.name,
        kubelet_version=version,
        config=args.config,
    )


def run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        options = options_from(args)
    except UsageError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc} (see --help)\n")
        return EXIT_USAGE
    report = check(options)
    if args.output == "json":
        emit_json(streams, report)
    else:
        colour = use_colour(streams)
        streams.out(checks_table(report.checks, colour=colour) + _summary(report))
    return exit_code(report.checks)
