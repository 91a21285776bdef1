"""Running docker credential helpers (``docker-credential-<name> get``).

The protocol: the server URL on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout, or a
non-zero exit with "credentials not found" when the helper has nothing for that server. A
helper runs in its own process group under a timeout, with this process as the subreaper of
its orphans: when the helper exits or overruns, its group and every descendant reparented to
us (even one in a session of its own) is killed, so nothing it started outlives the call or
holds our stdout. An answer the helper printed before exiting counts even while such a
descendant still holds the pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from provider.errors import CredentialHelperError

if TYPE_CHECKING:
    import subprocess

__all__ = ["HelperCredential", "run_helper"]

NOT_FOUND_MESSAGE = "credentials not found"
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_RELAYED_BYTES = 4096


class _HelperReply(msgspec.Struct, rename="pascal"):
    server_url: str = msgspec.field(default="", name="ServerURL")
    username: str = ""
    secret: str = ""


_reply_decoder = msgspec.json.Decoder(_HelperReply)


class HelperCredential(msgspec.Struct, frozen=True):
    """What a helper returned for one server."""

    username: str
    secret: str

    def __repr__(self) -> str:
        return f"HelperCredential(username={self.username!r}, secret=<redacted>)"


PR_SET_CHILD_SUBREAPER = 36
# After the helper exits, how long its output may take to arrive when a descendant still holds
# the pipe open (what it wrote before exiting is already in the pipe).
DRAIN_SECONDS = 0.05


def _set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its orphaned descendants (Linux): a helper's child that
    starts its own session (``setsid``) then becomes our child instead of init's, so it can be
    found and ended. False where that is not available."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children() -> set[int]:
    """The process ids whose parent is this process (from /proc; empty without it)."""
    me = os.getpid()
    found: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                fields = file.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(me).encode():
            found.add(int(name))
    return found


def _end_descendants(process: subprocess.Popen[bytes], before: set[int]) -> None:
    """Kill the helper's process group, then every process that was reparented to us since the
    helper started (its descendants, in whatever session or group they put themselves), until
    none is left. Each is reaped, so none lingers as a zombie."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for _ in range(100):  # each round ends one generation (their children come to us next)
        strays = _children() - before - {process.pid}
        if not strays:
            return
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _exchange(
    process: subprocess.Popen[bytes], data: bytes, timeout: float
) -> tuple[int, bytes, bytes] | None:
    """Send ``data``; the exit code, and stdout and stderr read until both end, or until the helper itself has
    exited and its pipes are drained (a descendant may hold them open forever); None when the
    helper is still running at ``timeout``."""
    import selectors
    import time

    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(data)
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    output: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
    give_up = time.monotonic() + timeout
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for descriptor in output:
            selector.register(descriptor, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                break
            if exited_at is None and now >= give_up:
                return None
            wait = DRAIN_SECONDS if exited_at is not None else min(give_up - now, DRAIN_SECONDS)
            for key, _ in selector.select(max(wait, 0)):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    output[key.fd].append(chunk)
                else:
                    selector.unregister(key.fd)
    return (
        process.wait(),
        b"".join(output[process.stdout.fileno()]),
        b"".join(output[process.stderr.fileno()]),
    )


def _relayed(data: bytes) -> str:
    """A helper's stderr as its first line, short, without a secret we know (redacted before
    anything is cut, so no part of one is left)."""
    from provider.redact import excerpt, redact

    text = redact(data[:MAX_RELAYED_BYTES].decode("utf-8", "replace")).strip()
    return excerpt(
        text.splitlines()[0] if text else "", cut=len(data) > MAX_RELAYED_BYTES and "\n" not in text
    )


def _run(
    executable: str, server: str, timeout: float, environ: Mapping[str, str]
) -> tuple[int, bytes, bytes] | None:
    """The helper's exit code, stdout and stderr, or None when it did not exit within ``timeout``."""
    import subprocess

    subreaper = _set_subreaper(True)
    before = _children()
    try:
        try:
            process = subprocess.Popen(
                [executable, "get"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(environ),
                start_new_session=True,
            )
        except OSError as exc:
            raise CredentialHelperError(f"cannot run {executable}: {exc.strerror}") from None
        try:
            return _exchange(process, server.encode() + b"\n", timeout)
        finally:
            # On every path out: nothing the helper started outlives the call or holds our stdout.
            _end_descendants(process, before)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    finally:
        if subreaper:
            _set_subreaper(False)


def run_helper(
    helper: str, server: str, *, timeout: float, environ: Mapping[str, str]
) -> HelperCredential | None:
    """Ask ``docker-credential-<helper>`` for ``server``; None when it has no credentials for it."""
    import shutil

    program = f"docker-credential-{helper}"
    executable = shutil.which(program, path=environ.get("PATH", os.defpath))
    if executable is None:
        raise CredentialHelperError(
            f"credential helper {program} is not on PATH ({environ.get('PATH', os.defpath)}); "
            "install it or set PATH in the kubelet's CredentialProviderConfig env"
        )
    answer = _run(executable, server, timeout, environ)
    if answer is None:
        raise CredentialHelperError(f"{program} did not answer for {server} within {timeout:.1f}s")
    returncode, stdout, stderr = answer
    if returncode != 0:
        if (
            NOT_FOUND_MESSAGE
            in stdout.decode("utf-8", "replace").lower() + stderr.decode("utf-8", "replace").lower()
        ):
            return None
        detail = _relayed(stderr) or "no message"
        raise CredentialHelperError(f"{program} failed for {server} (exit {returncode}): {detail}")
    if len(stdout) > MAX_OUTPUT_BYTES:
        raise CredentialHelperError(f"{program} printed more than {MAX_OUTPUT_BYTES} bytes for {server}")
    try:
        reply = _reply_decoder.decode(stdout)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise CredentialHelperError(
            f"{program} answered for {server} with something other than its JSON reply"
        ) from None
    if not reply.secret:
        return None
    from provider.redact import register

    register(reply.secret)
    return HelperCredential(username=reply.username, secret=reply.secret)
