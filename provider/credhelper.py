"""Running docker credential helpers (``docker-credential-<name> get``).

The protocol: the server URL on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout, or a
non-zero exit with "credentials not found" when the helper has nothing for that server. A
helper runs in its own process group under a timeout; when it overruns, the whole group is
killed, so neither it nor anything it started outlives the call or holds our stdout.
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


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    line = text.splitlines()[0] if text else ""
    return line[:200]


def run_helper(
    helper: str, server: str, *, timeout: float, environ: Mapping[str, str]
) -> HelperCredential | None:
    """Ask ``docker-credential-<helper>`` for ``server``; None when it has no credentials for it."""
    import shutil
    import subprocess

    program = f"docker-credential-{helper}"
    executable = shutil.which(program, path=environ.get("PATH", os.defpath))
    if executable is None:
        raise CredentialHelperError(
            f"credential helper {program} is not on PATH ({environ.get('PATH', os.defpath)}); "
            "install it or set PATH in the kubelet's CredentialProviderConfig env"
        )
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
        stdout, stderr = process.communicate(server.encode() + b"\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(f"{program} did not answer for {server} within {timeout:.1f}s") from None
    finally:
        # Also reaps anything the helper left behind in its group, on every path out.
        _kill_group(process)
    if process.returncode != 0:
        if (
            NOT_FOUND_MESSAGE
            in stdout.decode("utf-8", "replace").lower() + stderr.decode("utf-8", "replace").lower()
        ):
            return None
        detail = _first_line(stderr) or "no message"
        raise CredentialHelperError(f"{program} failed for {server} (exit {process.returncode}): {detail}")
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
    return HelperCredential(username=reply.username, secret=reply.secret)
