"""``uninstall``: put back exactly what ``install`` found, from its record and saved originals.

Files we created are removed, files we changed get their original bytes and mode back, a
kubelet config that someone changed after us loses only our provider, and any other file
changed since is left alone (``--force`` restores it anyway).
"""

from __future__ import annotations

import argparse

from provider.commands import Streams
from provider.commands.common import EXIT_CODES, finish_install, say_to
from provider.install.options import InstallError
from provider.install.record import RECORD
from provider.install.uninstall import uninstall
from provider.output import add_output_argument

HELP = "remove the plugin from this node, restoring every file install changed"
EPILOG = EXIT_CODES.format(
    ok=f"uninstalled (or nothing to do: no {RECORD})",
    failure="the install record is damaged, or a restart failed; stderr says why",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", default="/", help="uninstall from this directory")
    parser.add_argument("--dry-run", action="store_true", default=False, help="show what would happen")
    parser.add_argument("--force", action="store_true", default=False,
                        help="restore originals even over later edits by others")  # fmt: skip
    parser.add_argument(
        "--restart-kubelet", action="store_true", default=False, help="restart the kubelet afterwards"
    )
    parser.add_argument("-q", "--quiet", action="store_true", default=False, help="print errors only")
    add_output_argument(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace, streams: Streams) -> int:
    say = say_to(args, streams)
    try:
        outcome = uninstall(
            args.root, say, dry_run=args.dry_run, force=args.force, restart=args.restart_kubelet
        )
    except InstallError as exc:
        return finish_install(args, streams, None, str(exc))
    return finish_install(args, streams, outcome, outcome.error)
