"""Operator subcommands of the same executable (kubelet mode needs none of them).

``COMMANDS`` maps a subcommand's name to its module. Each module defines:

- ``HELP``: one line for ``--help``;
- ``add_arguments(parser)``: its options (the common ``--config`` and ``--timeout`` are added
  for it);
- ``run(args, streams) -> int``: the exit code (0 fine, 1 failed or found problems).

Modules are imported only when the full command line parser is built, never on the
kubelet's path.
"""

from __future__ import annotations

from typing import BinaryIO, TextIO

__all__ = ["COMMANDS", "Streams"]

COMMANDS: dict[str, str] = {
    "cache": "provider.commands.cache",
    "test": "provider.commands.test",
    "validate": "provider.commands.validate",
    "render": "provider.commands.render",
    "verify": "provider.commands.verify",
    "doctor": "provider.commands.doctor",
    "install": "provider.commands.install",
    "uninstall": "provider.commands.uninstall",
}


class Streams:
    """The process's standard streams, handed to a command so tests can capture them."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    def out(self, text: str) -> None:
        """Write ``text`` (a whole line or lines) to stdout."""
        self.stdout.write(text.encode("utf-8"))
        self.stdout.flush()

    def isatty(self) -> bool:
        """Whether stdout is a terminal (colour and alignment for humans)."""
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty())
