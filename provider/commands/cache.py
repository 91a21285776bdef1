"""``cache list`` and ``cache purge``: what the disk cache holds, never a secret."""

from __future__ import annotations

import argparse
import json
import os
import time

from provider.cache import CredentialStore
from provider.cachekeys import cache_dir
from provider.commands import Streams
from provider.commands.common import load_provider_config
from provider.output import add_output_argument

HELP = "show (list) or empty (purge) the disk cache of credentials"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "cache_action",
        choices=("list", "purge"),
        metavar="list|purge",
        help="list: one line per cached credential (never a secret); purge: delete them",
    )
    add_output_argument(parser)
    parser.add_argument(
        "--registry", metavar="HOST", help="purge only this registry's credentials (host[:port])"
    )


def _store(args: argparse.Namespace, streams: Streams) -> tuple[CredentialStore, str]:
    _, config = load_provider_config(getattr(args, "config", None))
    directory = cache_dir(config.cache.dir, os.environ)

    def warn(message: str) -> None:
        streams.stderr.write(f"registry-credential-provider: warning: {message}\n")

    return CredentialStore(directory, warn), directory


def run(args: argparse.Namespace, streams: Streams) -> int:
    store, directory = _store(args, streams)
    if args.cache_action == "purge":
        removed = store.purge(getattr(args, "registry", None))
        if not store.usable:
            return 1
        scope = f" for {args.registry}" if getattr(args, "registry", None) else ""
        streams.out(f"removed {removed} cached credential(s){scope} from {directory}\n")
        return 0
    now = time.time()
    rows = [
        {
            "backend": entry.backend,
            "registry": entry.registry,
            "identity": entry.identity,
            "parts": entry.parts,
            "username": entry.username,
            "fetchedAt": entry.fetched_at,
            "refreshAt": entry.refresh_at,
            "expiresAt": entry.expires_at,
            "expiresIn": max(0, int(entry.expires_at - now)),
            "key": key,
        }
        for key, entry in sorted(store.credentials(), key=lambda item: (item[1].registry, item[1].backend))
    ]
    if not store.usable:
        return 1
    if args.output == "json":
        streams.out(json.dumps(rows, indent=2) + "\n")
        return 0
    header = ("REGISTRY", "BACKEND", "IDENTITY", "USERNAME", "EXPIRES IN", "REFRESH IN")
    table = [header] + [
        (
            str(row["registry"]),
            str(row["backend"]),
            str(row["identity"])[:24],
            str(row["username"]),
            f"{row['expiresIn']}s",
            f"{max(0, int(float(str(row['refreshAt'])) - now))}s",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        streams.out("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")
    if not rows:
        streams.out(f"(no cached credentials in {directory})\n")
    return 0
