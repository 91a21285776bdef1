"""Small helpers shared by the infrastructure modules: binaries, ports, processes, redaction."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import HTTPServer
from pathlib import Path

SYSTEM_PACKAGES_FILE = Path(__file__).with_name("system-packages.txt")


def _apt_packages() -> dict[str, str]:
    """Which Debian package ships each program the tests run (``system-packages.txt``)."""
    table: dict[str, str] = {}
    for line in SYSTEM_PACKAGES_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            program, package = line.split()
            table[program] = package
    return table


APT_PACKAGE = _apt_packages()

REDACTED = "***"


class MissingToolError(RuntimeError):
    """A binary the end-to-end tests need is not installed (the fixtures turn this into a test failure)."""


class InfraError(RuntimeError):
    """A test server or tool did not behave (failed to start, a command failed, ...)."""


def require_binary(name: str) -> str:
    """Return the absolute path of ``name`` on PATH or raise :class:`MissingToolError` naming its package."""
    path = shutil.which(name)
    if path is None:
        package = APT_PACKAGE.get(name, name)
        raise MissingToolError(
            f"required binary {name!r} not found on PATH; install it with "
            f"`apt-get install --no-install-recommends {package}` (`make test` does, as root)"
        )
    return path


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-empty secret in ``text`` (longest first) with ``***``."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact_args(args: Sequence[str], secrets: Iterable[str]) -> list[str]:
    __tracebackhide__ = True  # never show the secrets in its arguments
    secret_list = list(secrets)
    return [redact(a, secret_list) for a in args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry if they lose the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without proxy settings (all test traffic is loopback), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy"}
    }
    if extra:
        env.update(extra)
    return env


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child if the test process dies without cleaning up."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(
    args: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running server with stdout+stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - tests are single-threaded when they start servers
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call twice."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll ``predicate`` until true; ``abort`` returns a reason to stop early (e.g. the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if abort is not None:
            reason = abort()
            if reason is not None:
                raise InfraError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise InfraError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def run_checked(
    args: Sequence[str],
    *,
    secrets: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    input_text: str | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command; on failure raise :class:`InfraError` (secrets redacted from argv and output)."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    secret_list = list(secrets)
    try:
        result = subprocess.run(
            list(args),
            input=input_text,
            capture_output=True,
            text=True,
            env=clean_env(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        shown = " ".join(redact_args(args, secret_list))
        raise InfraError(f"{what or 'command'} timed out after {timeout:.0f}s: {shown}") from None
    except FileNotFoundError:
        require_binary(args[0])
        raise
    if result.returncode != 0:
        shown = " ".join(redact_args(args, secret_list))
        raise InfraError(
            f"{what or 'command'} failed (exit {result.returncode}): {shown}\n"
            f"stdout: {redact(result.stdout, secret_list).strip()}\n"
            f"stderr: {redact(result.stderr, secret_list).strip()}"
        )
    return result


_scratch: Path | None = None


def scratch_dir() -> Path:
    """A per-process private directory (removed at exit) for tool home dirs and empty config files."""
    global _scratch  # noqa: PLW0603 - one lazily created directory per process
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="rcp-infra-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


class ThreadedServer:
    """A loopback HTTP server of a fake, answering from a daemon thread; ``serve`` starts it."""

    _server: HTTPServer | None = None

    def serve(self, server: HTTPServer, name: str) -> None:
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        ).start()

    @property
    def port(self) -> int:
        assert self._server is not None, "not serving"
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
