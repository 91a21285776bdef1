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

from typing import BinaryIO, TextIO, cast

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


class _RedactedText:
    """A text stream that passes everything written through ``provider.redact.redact``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from provider.redact import redact

        return self._stream.write(redact(text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())


class _RedactedBytes:
    """A binary stream that redacts what is written (as UTF-8), unless ``reveal`` is set."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.reveal = False

    def write(self, data: bytes) -> int:
        if not self.reveal:
            from provider.redact import redact

            data = redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        return self._stream.write(data)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())


class Streams:
    """The process's standard streams, handed to a command so tests can capture them.

    Everything a command writes to ``stdout`` and ``stderr`` goes through
    ``provider.redact.redact`` first: no secret this process knows is ever printed (``test
    --show-secrets`` calls ``reveal_secrets`` to print its response's passwords on stdout).
    """

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> None:
        self.stdin = stdin
        self._stdout = _RedactedBytes(stdout)
        # Typed as the streams they wrap: commands only write, flush and ask isatty.
        self.stdout = cast(BinaryIO, self._stdout)
        self.stderr = cast(TextIO, _RedactedText(stderr))

    def reveal_secrets(self) -> None:
        """Let secrets through on stdout (stderr stays redacted)."""
        self._stdout.reveal = True

    def out(self, text: str) -> None:
        """Write ``text`` (a whole line or lines) to stdout."""
        self.stdout.write(text.encode("utf-8"))
        self.stdout.flush()

    def isatty(self) -> bool:
        """Whether stdout is a terminal (colour and alignment for humans)."""
        return self._stdout.isatty()
