"""The process edge: argv, stdin, stdout, stderr, signals and exit codes, and nothing else.

Kubelet mode (no command, or ``get-credentials``) reads one CredentialProviderRequest from
stdin and prints one CredentialProviderResponse. Exit codes:

    0  a response was printed (possibly with empty auth: the kubelet then pulls anonymously)
    1  the call failed: one line on stderr says why, stdout stays empty
    2  the command line is wrong
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn, TextIO

from provider import __version__

if TYPE_CHECKING:
    import argparse
    from types import FrameType

    from provider.deadline import Deadline

PROG = "registry-credential-provider"
DEBUG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_DEBUG"
# With DEBUG_ENV=1, said on stderr when the disk cache's fast path answered (make bench checks it).
FAST_PATH_MARK = "answered by the disk cache's fast path"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
ALARM_GRACE_SECONDS = 0.5

EPILOG = f"""\
kubelet mode (no command, or get-credentials) reads a CredentialProviderRequest on stdin
and prints a CredentialProviderResponse on stdout.

config: --config FILE, else ${{REGISTRY_CREDENTIAL_PROVIDER_CONFIG}}, else the embedded default
(cloud registries to their backends, everything else to the node's docker config files).

exit codes:
  0  a response was printed (empty auth means: pull anonymously)
  1  the call failed; one line on stderr says why and stdout is empty
  2  the command line is wrong

set {DEBUG_ENV}=1 for a traceback on failure.
"""


class _UsageError(Exception):
    pass


class KubeletArgs:
    """Kubelet mode's options (the same names argparse produces)."""

    def __init__(self, config: str | None = None, timeout: str | None = None) -> None:
        self.config = config
        self.timeout = timeout


def fast_kubelet_args(argv: Sequence[str]) -> KubeletArgs | None:
    """Kubelet mode's few options, read without argparse (its import costs every pull ~10 ms).

    ``get-credentials`` may stand before, between or after the options. Returns None for
    anything else (help, version, other commands, mistakes), which then goes through the full
    parser and its messages.
    """
    args = KubeletArgs()
    words = list(argv)
    command_seen = False
    while words:
        word = words.pop(0)
        if word == "get-credentials" and not command_seen:
            command_seen = True
            continue
        name, equals, value = word.partition("=")
        if name not in ("--config", "--timeout", "-v", "--v"):
            return None
        if not equals:
            if not words:
                return None
            value = words.pop(0)
        if name == "--config":
            args.config = value
        elif name == "--timeout":
            args.timeout = value
    return args


def _timeout_argument(value: str) -> str:
    """argparse's check of ``--timeout`` (a wrong value is a wrong command line: exit 2); the
    value stays the string given."""
    import argparse

    from provider.protocol import parse_timeout

    try:
        parse_timeout(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--timeout: ")) from None
    return value


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """``--config``, ``--timeout`` and ``-v``, accepted before and after a command.

    The top level gives them ``default`` None; a command's parser gives them SUPPRESS, so that a
    value given before the command is not overwritten by the command's own default.
    """
    import argparse

    parser.add_argument("--config", metavar="FILE", default=default, help="our config file (YAML or JSON)")
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        type=_timeout_argument,
        default=default,
        help="deadline for the whole call, a Go duration (default 30s)",
    )
    # Accepted for configs written for the Google and AWS plugins (klog verbosity); no effect.
    parser.add_argument("-v", "--v", dest="verbosity", metavar="N", default=default, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse that raises instead of exiting, so ``main`` stays the one place that exits."""

        def error(self, message: str) -> NoReturn:
            raise _UsageError(message)

    parser = _Parser(
        prog=PROG,
        description="One kubelet image credential provider for every registry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version = f"{PROG} {__version__} (Python {sys.version.split()[0]})"
    parser.add_argument("--version", action="version", version=version)
    _add_common(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    kubelet = commands.add_parser(
        "get-credentials", help="kubelet mode (the default): request on stdin, response on stdout"
    )
    _add_common(kubelet, argparse.SUPPRESS)
    import importlib

    from provider.commands import COMMANDS

    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = commands.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            argument_default=argparse.SUPPRESS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(command, argparse.SUPPRESS)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


class _Warn:
    """Writes warnings to stderr; the kubelet ignores stderr when we succeed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, message: str) -> None:
        from provider.redact import redact

        self.stream.write(redact(f"{PROG}: warning: {message}\n"))
        self.stream.flush()


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    from provider.errors import DeadlineExceededError

    raise DeadlineExceededError("the call ran past its deadline (see 'timeout' in the config)")


def _read_request(stdin: BinaryIO, limit: int, seconds: float) -> bytes:
    """Up to ``limit`` + 1 bytes of stdin, waiting at most ``seconds`` for its end."""
    try:
        descriptor = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return stdin.read(limit + 1)
    import select

    chunks: list[bytes] = []
    size = 0
    give_up = time.monotonic() + seconds
    while size <= limit:
        left = give_up - time.monotonic()
        if left <= 0:
            from provider.errors import DeadlineExceededError

            raise DeadlineExceededError("the call ran past its deadline waiting for the request on stdin")
        ready, _, _ = select.select([descriptor], [], [], left)
        if ready:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


def _timeout_flag(value: str | None) -> float | None:
    if value is None:
        return None
    from provider.protocol import parse_timeout

    try:
        return parse_timeout(value)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _kubelet_mode(
    args: KubeletArgs | argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO
) -> int:
    started = time.monotonic()
    timeout_flag = _timeout_flag(args.timeout)
    if os.isatty(0) and stdin is sys.stdin.buffer:
        stderr.write(f"{PROG}: reading a CredentialProviderRequest from stdin (end with Ctrl-D)\n")
    from provider.protocol import DEFAULT_TIMEOUT_SECONDS, MAX_REQUEST_BYTES

    data = _read_request(stdin, MAX_REQUEST_BYTES, timeout_flag or DEFAULT_TIMEOUT_SECONDS)
    from provider import core
    from provider.errors import ConfigError
    from provider.locations import CONFIG_ENV, config_path, named_by

    try:
        reply = core.answer(
            data,
            config_path=config_path(args.config, os.environ),
            environ=os.environ,
            timeout=timeout_flag,
            started=started,
            warn=_Warn(stderr),
            guard=_guard,
            metrics=True,
        )
    except ConfigError as exc:
        if named_by(args.config, os.environ) == CONFIG_ENV:
            raise ConfigError(f"{exc} (named by {CONFIG_ENV})") from None
        raise
    stdout.write(reply.stdout)
    stdout.flush()
    if reply.path == "fast" and os.environ.get(DEBUG_ENV) == "1":
        stderr.write(f"{PROG}: debug: {FAST_PATH_MARK}\n")
    return EXIT_OK


@contextlib.contextmanager
def _guard(deadline: Deadline) -> Iterator[None]:
    """The process-wide parts of a full-path call: a SIGALRM backstop for anything the deadline
    itself does not bound (the grace lets bounded operations, such as a helper's timeout, report
    their own, more precise error first), and stdout reserved for the response alone."""
    import signal

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, deadline.remaining() + ALARM_GRACE_SECONDS)
    # Whatever a library might print goes to stderr.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout = real_stdout
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _internal_error(exc: BaseException) -> str:
    """Names the exception and where it happened, but not its message (it might hold a secret)."""
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    return f"internal error: {type(exc).__name__}{where}; set {DEBUG_ENV}=1 for a traceback and report it"


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line ``argv`` and return the exit code."""
    from provider.errors import ProviderError

    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        invoked_as = os.path.basename(os.environ.get("PEX") or sys.argv[0])  # pex sets PEX to our file
        if invoked_as == "acr-credential-provider" and argv is None:
            from provider.azure.dropin import translate  # the upstream ACR plugin's drop-in

            words = translate(words, os.environ)
        if invoked_as == "auth-provider-gcp" and argv is None:
            from provider.google.dropin import upstream_args  # the upstream GKE plugin's flags

            try:
                words = upstream_args(words)
            except ValueError as exc:
                raise _UsageError(str(exc)) from None
        args = fast_kubelet_args(words) or build_parser().parse_args(words)
        drop_in = invoked_as in ("ecr-credential-provider", "auth-provider-gcp")
        if drop_in and argv is None and getattr(args, "config", "") is None:
            from provider.defaults import DROP_IN_CONFIG_FILES  # an upstream plugin's drop-in

            if not os.environ.get("REGISTRY_CREDENTIAL_PROVIDER_CONFIG"):
                args.config = DROP_IN_CONFIG_FILES[invoked_as]
        run = getattr(args, "run", None)
        if run is not None:
            from provider.commands import Streams

            code: int = run(args, Streams(stdin, stdout, stderr))
            return code
        return _kubelet_mode(args, stdin, stdout, stderr)
    except _UsageError as exc:
        stderr.write(f"{PROG}: error: {exc} (see --help)\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr.write(f"{PROG}: interrupted\n")
        return EXIT_FAILURE
    except Exception as exc:
        from provider.redact import redact

        if debug:
            import traceback

            stderr.write(redact(traceback.format_exc()))  # exception text may quote a secret
        message = f"error: {exc}" if isinstance(exc, ProviderError) else _internal_error(exc)
        stderr.write(redact(f"{PROG}: {message}\n"))
        return EXIT_FAILURE


def entry_point() -> NoReturn:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
