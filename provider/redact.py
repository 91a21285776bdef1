"""Secrets never printed: one process-wide registry of the secrets this process knows, and
``redact`` applied at the output boundary (kubelet mode's error and warning lines, every
operator command's stdout and stderr).

Secrets are registered where they are read or received: the request's service account token,
passwords and auth strings from docker config files, credential helpers' answers, cloud
credentials and tokens. The environment's well-known credential variables (and the token
files they name) are looked at whenever text is redacted, so they need no registration.
``redact`` replaces the longest secrets first, in the forms they take in JSON and after
whitespace is collapsed too. ``excerpt`` turns relayed text (a helper's stderr, an upstream
error body) into one short, redacted line, and never ends on the first bytes of a secret.

Standard library only: kubelet mode imports it to print an error line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "excerpt",
    "forget_all",
    "redact",
    "register",
    "register_environment",
]

REDACTED = "<redacted>"
# Shorter strings are too likely to occur in ordinary text to be replaced everywhere.
MIN_SECRET_CHARS = 4
MAX_EXCERPT_CHARS = 200
MAX_TOKEN_FILE_BYTES = 64 * 1024
# Variables whose values are credentials (AWS's chain, Azure's, proxies are handled apart).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AZURE_CLIENT_SECRET",
)
# Variables naming a file that holds a token.
SECRET_FILE_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")

_secrets: set[str] = set()
_files_seen: dict[str, tuple[int, int, int]] = {}


def _forms(secret: str) -> Iterable[str]:
    """The ways ``secret`` can appear in what we print: as is, JSON-escaped (with and without
    non-ASCII escapes), and with its whitespace collapsed."""
    yield secret
    yield json.dumps(secret)[1:-1]
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    yield " ".join(secret.split())


def register(*secrets: str | None) -> None:
    """Remember ``secrets`` (None, empty and very short strings are ignored)."""
    for secret in secrets:
        if not secret or len(secret.strip()) < MIN_SECRET_CHARS:
            continue
        for form in _forms(secret):
            if len(form) >= MIN_SECRET_CHARS:
                _secrets.add(form)


def forget_all() -> None:
    """Forget every registered secret (tests run many calls in one process)."""
    _secrets.clear()
    _files_seen.clear()


def _register_token_file(path: str) -> None:
    from provider.safefile import UnsafeFileError, read_regular_file

    try:
        stat = os.stat(path)
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if _files_seen.get(path) == stamp:
            return
        data = read_regular_file(path, MAX_TOKEN_FILE_BYTES)
    except (OSError, UnsafeFileError):
        return
    _files_seen[path] = stamp
    token = data.decode("utf-8", "replace").strip()
    register(token)


def register_environment(environ: Mapping[str, str]) -> None:
    """Register the credentials ``environ`` holds: AWS/Azure secret variables, the token files
    they name, and the password of a proxy URL."""
    register(*(environ.get(name) for name in SECRET_VARIABLES))
    for name in SECRET_FILE_VARIABLES:
        path = environ.get(name)
        if path:
            _register_token_file(path)
    for name in PROXY_VARIABLES:
        url = environ.get(name)
        if url and "@" in url:
            from urllib.parse import unquote, urlsplit

            try:
                password = urlsplit(url if "://" in url else f"http://{url}").password
            except ValueError:
                continue
            if password:
                register(password, unquote(password))


def redact(text: str) -> str:
    """``text`` with every known secret (registered or in this process's environment) replaced."""
    register_environment(os.environ)
    if not _secrets or not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _drop_secret_prefix(text: str) -> str:
    """``text`` without a tail that is the start of a known secret (it was cut mid-secret)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        for size in range(min(len(secret) - 1, len(text)), 0, -1):
            if text.endswith(secret[:size]):
                return text[:-size]
    return text


def excerpt(text: str, limit: int = MAX_EXCERPT_CHARS, *, cut: bool = False) -> str:
    """Relayed text as one short line: redacted first, then whitespace collapsed, then cut to
    ``limit`` characters (``cut``: ``text`` itself was already cut short by its reader)."""
    line = " ".join(redact(text).split())
    if len(line) > limit:
        line, cut = line[: limit - 3], True
    if cut:
        line = _drop_secret_prefix(line).rstrip() + "..."
    return line
