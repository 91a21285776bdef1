"""ACR's token exchange: an Entra access token in, an ACR refresh token out.

``GET https://<login server>/v2/`` answers 401 with a Bearer challenge naming the ``realm`` (the
registry's ``/oauth2/token``) and the ``service``; ``POST <realm host>/oauth2/exchange`` with
``grant_type=access_token``, ``service``, ``tenant`` and ``access_token`` answers
``{"refresh_token": ...}``, the password of user ``00000000-0000-0000-0000-000000000000``.

Plain HTTPS through ``provider.registryclient`` (Go's proxy rules, like the runtime), trusting
the system's CAs plus ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``. Each request is bounded by
what is left of the budget; a connection failure, 429 or 5xx is retried with jitter while
time is left. The Entra token goes only to an https realm on the login server's own host (or
another ACR login server): never to a host the challenge merely names.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Optional
from urllib.parse import urlencode, urlsplit

from provider.azure.hosts import is_login_server
from provider.errors import CloudCredentialError
from provider.registryclient import Client, RegistryError, Response, parse_challenges

__all__ = ["ACR_USERNAME", "RefreshToken", "exchange", "token_expiry"]

ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
ATTEMPTS = 3
REQUEST_SECONDS = 10.0
BACKOFF_SECONDS = 0.25
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_SHOWN = 200


class RefreshToken(NamedTuple):
    """An ACR refresh token and its ``exp`` claim (None when it has none)."""

    token: str
    expires_at: Optional[float]

    def __repr__(self) -> str:
        return f"RefreshToken(token=<redacted>, expires_at={self.expires_at!r})"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (the registry verifies it)."""
    from provider.identity import jwt_claims

    claims = jwt_claims(token)
    exp = claims.get("exp") if claims is not None else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def _ca_file(environ: Mapping[str, str]) -> str | None:
    return environ.get("REQUESTS_CA_BUNDLE") or environ.get("SSL_CERT_FILE") or None


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return " ".join(text.split())[:MAX_SHOWN]


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


class _Caller:
    """Requests with retries, inside one budget (``remaining``: seconds left)."""

    def __init__(
        self, environ: Mapping[str, str], remaining: Callable[[], float], rng: random.Random
    ) -> None:
        self.remaining = remaining
        self.rng = rng
        ca_file = _ca_file(environ)
        try:
            self.client = Client(
                environ=environ,
                remaining=lambda: min(REQUEST_SECONDS, remaining()),
                ca_file=ca_file,
                tls_hint="set SSL_CERT_FILE or REQUESTS_CA_BUNDLE to a CA bundle that has its CA",
            )
        except RegistryError as exc:
            raise CloudCredentialError(f"ACR token exchange: {exc}") from None

    def call(self, what: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                response = self.client.get(
                    url, headers, method="POST" if body is not None else "GET", body=body
                )
            except RegistryError as exc:
                if last or exc.kind in ("tls", "dns", "protocol") or not self._pause(attempt):
                    raise CloudCredentialError(f"{what}: {exc}") from None
                continue
            if response.status in RETRY_STATUSES and not last and self._pause(attempt):
                continue
            return response
        raise AssertionError("unreachable")

    def _pause(self, attempt: int) -> bool:
        """Sleep a jittered backoff before another attempt; False when no time is left for one."""
        delay = self.rng.uniform(0.5, 1.5) * BACKOFF_SECONDS * (2**attempt)
        if self.remaining() <= delay + 0.5:
            return False
        time.sleep(delay)
        return True


def _realm(login_server: str, response: Response, extra_suffixes: tuple[str, ...]) -> tuple[str, str]:
    """The exchange URL and the ``service`` from the registry's Bearer challenge."""
    if response.status != 401:
        raise CloudCredentialError(
            f"{login_server}/v2/ answered {response.status} instead of asking for a token (401): "
            "is it an Azure Container Registry?"
        )
    bearer = [c for c in parse_challenges(response.header_values("WWW-Authenticate")) if c.scheme == "bearer"]
    if not bearer:
        raise CloudCredentialError(
            f"{login_server}/v2/ sent no Bearer challenge: it is not an Azure Container Registry"
        )
    realm = bearer[0].params.get("realm", "")
    service = bearer[0].params.get("service", "")
    if not service:
        raise CloudCredentialError(
            f"{login_server}/v2/ sent a Bearer challenge without 'service' "
            "(a proxy in front of the registry may have rewritten it); ACR's exchange needs it"
        )
    parts = urlsplit(realm)
    host = parts.hostname or ""
    login_host = urlsplit(f"https://{login_server}").hostname or ""
    trusted = host == login_host or is_login_server(host, extra_suffixes)
    secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))
    if not (trusted and secure):
        raise CloudCredentialError(
            f"{login_server}/v2/ names the token realm {realm[:MAX_SHOWN]!r}, which is not https on "
            "the registry's own host or another ACR login server; the Entra token is not sent there"
        )
    return f"{parts.scheme}://{parts.netloc}/oauth2/exchange", service


def exchange(
    login_server: str,
    access_token: str,
    tenant: str,
    *,
    environ: Mapping[str, str],
    remaining: Callable[[], float],
    extra_suffixes: tuple[str, ...] = (),
    rng: random.Random | None = None,
) -> RefreshToken:
    """The ACR refresh token for ``access_token`` (an Entra token for ACR's scope) at
    ``login_server`` (``host[:port]``); ``CloudCredentialError`` (one line, no secret) on failure."""
    caller = _Caller(environ, remaining, rng or random.Random())
    challenge = caller.call(f"{login_server}/v2/", f"https://{login_server}/v2/", {})
    url, service = _realm(login_server, challenge, extra_suffixes)
    form = {"grant_type": "access_token", "service": service, "access_token": access_token}
    if tenant:
        form["tenant"] = tenant
    response = caller.call(
        f"ACR token exchange at {url}",
        url,
        {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        urlencode(form).encode(),
    )
    secrets = (access_token,)
    if response.status != 200:
        detail = _shown(response.body.decode("utf-8", "replace"), secrets)
        hint = ""
        if response.status == 401:
            hint = (
                " (the identity has no pull role on this registry, its tenant is not the registry's, "
                "or the registry refuses Entra tokens)"
            )
        raise CloudCredentialError(
            f"ACR token exchange at {url} answered {response.status}{hint}: {detail or 'no detail'}"
        )
    try:
        document = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        document = None
    token = document.get("refresh_token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise CloudCredentialError(f"ACR token exchange at {url} answered without a refresh_token")
    return RefreshToken(token, token_expiry(token))
