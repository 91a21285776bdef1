"""``GoogleApi`` over google-auth: bounded calls, retries with jitter, errors mapped here.

Only the ``gar`` backend's ``get_credentials`` imports this module, so google-auth is paid only
by requests that need a token.

Node identity: google-auth's metadata client (``compute_engine._metadata.get``: the
``Metadata-Flavor`` header, JSON decoding) for ``instance/service-accounts/<name>/token``, one
request per token. Not ``compute_engine.Credentials``: it asks for the account's info first (a
second request per token) and, in the google-auth we lock, fetches the default account's token
even when another one is named.

Pod identity: ``identity_pool.Credentials`` built from arguments, the kubelet's service account
token handed over by a ``SubjectTokenSupplier`` (no file, no ``google.auth.default()``, and no
``get_project_id``, which would reach the resource manager API). Its refresh is the STS token
exchange, then ``generateAccessToken`` when a service account is impersonated.

Bounds: every request goes through ``_Transport``, google-auth's urllib3 transport with a
timeout per attempt (metadata 3 s, STS and IAM 10 s) cut to what is left of the lookup's
budget, no urllib3 retries or redirects. An attempt that gets no answer, 429 or 5xx raises
``_Retryable`` from inside google-auth (so its own retry loop, seconds of backoff, never runs)
and ``_retrying`` tries again after a jittered pause while the budget allows.

Proxies: STS and IAM honour ``HTTPS_PROXY``/``NO_PROXY`` from the environment the kubelet gives
us; the metadata server never goes through a proxy.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import urllib3
from google.auth import exceptions
from google.auth.transport.urllib3 import Request

from provider.errors import CloudCredentialError
from provider.google.api import AccessToken, Budget, Federation, metadata_host

__all__ = ["GoogleAuthApi"]

METADATA_TIMEOUT_SECONDS = 3.0
TOKEN_API_TIMEOUT_SECONDS = 10.0
ATTEMPTS = 3
# Full jitter: the n-th retry waits a random time up to BACKOFF_SECONDS * 2**(n-1).
BACKOFF_SECONDS = 0.25
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type's name, no secret
MAX_MESSAGE_CHARS = 200

T = TypeVar("T")


class _Retryable(Exception):
    """An attempt worth repeating: no answer, 429 or 5xx (``detail`` says which; no secret)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """One line, bounded, without any of ``secrets``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    scheme, host = urlsplit(url).scheme, urlsplit(url).hostname or ""
    proxy = environ.get(f"{scheme}_proxy") or environ.get(f"{scheme.upper()}_PROXY")
    if not proxy:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if no_proxy and proxy_bypass_environment(host, {"no": no_proxy}):
        return None
    return proxy


class _Transport:
    """google-auth's ``transport.Request`` for one kind of call, bounded as the module says.
    ``last_status``: the HTTP status of the last answer (for error messages)."""

    def __init__(self, budget: Budget, timeout: float, environ: Mapping[str, str], *, proxy: bool) -> None:
        self._budget = budget
        self._timeout = timeout
        self._environ = environ
        self._proxy = proxy
        self._direct = Request(urllib3.PoolManager())  # type: ignore[no-untyped-call]
        self.last_status: int | None = None
        self.last_url = ""

    def _request_for(self, url: str) -> Request:
        proxy = _proxy_for(url, self._environ) if self._proxy else None
        return Request(urllib3.ProxyManager(proxy)) if proxy else self._direct  # type: ignore[no-untyped-call]

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        left = self._budget.remaining()
        if left <= 0:
            raise _Retryable("no time left")
        seconds = min(self._timeout, left)
        self.last_url, self.last_status = url, None
        try:
            response = self._request_for(url)(
                url,
                method=method,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=seconds),
                retries=False,
                redirect=False,
            )
        except exceptions.TransportError as exc:
            cause = exc.__cause__
            kind = "no answer" if isinstance(cause, (urllib3.exceptions.TimeoutError,)) else "cannot connect"
            if isinstance(cause, urllib3.exceptions.ProxyError):
                kind = "cannot connect through the proxy (check HTTPS_PROXY/NO_PROXY)"
            raise _Retryable(kind) from None
        self.last_status = response.status
        if response.status == 429 or response.status >= 500:
            raise _Retryable(f"HTTP {response.status}")
        return response


def _retrying(what: str, budget: Budget, call: Callable[[], T]) -> T:
    """``call()``, tried again after a jittered pause on ``_Retryable`` while the budget allows."""
    detail = ""
    for attempt in range(1, ATTEMPTS + 1):
        budget.check(what)
        try:
            return call()
        except _Retryable as exc:
            detail = exc.detail
        if attempt == ATTEMPTS:
            break
        pause = random.uniform(0, BACKOFF_SECONDS * 2 ** (attempt - 1))
        if pause >= budget.remaining():
            break
        time.sleep(pause)
    raise CloudCredentialError(
        f"{what} failed: {detail} after {attempt} attempt{'s' if attempt > 1 else ''} "
        "(the kubelet asks again on the next pull)"
    )


def _timestamp(expiry: object) -> float | None:
    """google-auth's expiry (a naive UTC datetime) as Unix time."""
    if isinstance(expiry, datetime.datetime):
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=datetime.timezone.utc)
        return expiry.timestamp()
    return None


class GoogleAuthApi:
    """The real Google, through google-auth."""

    def node_token(self, *, service_account: str, environ: Mapping[str, str], budget: Budget) -> AccessToken:
        from google.auth.compute_engine import _metadata

        host = metadata_host(environ)
        what = f"the GCE metadata server at {host} (token of service account {service_account!r})"
        transport = _Transport(budget, METADATA_TIMEOUT_SECONDS, environ, proxy=False)
        path = f"instance/service-accounts/{service_account}/token"

        def call() -> object:
            root = f"http://{host}/computeMetadata/v1/"
            found: object = _metadata.get(transport, path, root=root, retry_count=1)  # type: ignore[no-untyped-call]
            return found

        started = time.time()  # the token's life counts from before it was asked for
        try:
            found = _retrying(what, budget, call)
        except exceptions.GoogleAuthError:
            status = transport.last_status
            if status == 404:
                raise CloudCredentialError(
                    f"{what}: no such service account on this node (HTTP 404); "
                    "check the rule's 'serviceAccount' or the node pool's service account"
                ) from None
            raise CloudCredentialError(f"{what} failed (HTTP {status})") from None
        except ValueError:
            raise CloudCredentialError(f"{what} answered with a body that is not JSON") from None
        token = found.get("access_token") if isinstance(found, dict) else None
        expires_in = found.get("expires_in") if isinstance(found, dict) else None
        if not isinstance(token, str) or not token:
            raise CloudCredentialError(f"{what} answered without an access token")
        expires_at = started + expires_in if isinstance(expires_in, (int, float)) else None
        return AccessToken(token, expires_at)

    def federated_token(
        self,
        *,
        subject_token: str,
        federation: Federation,
        who: str,
        budget: Budget,
        environ: Mapping[str, str],
    ) -> AccessToken:
        from google.auth import identity_pool

        class _Supplier(identity_pool.SubjectTokenSupplier):
            """The kubelet's service account token, handed over without a file."""

            def get_subject_token(self, context: object, request: object) -> str:
                return subject_token

        account = federation.service_account
        impersonation = (
            f"{federation.iam_url.rstrip('/')}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
            if account
            else None
        )
        what = f"Workload Identity Federation for {who} (audience {federation.audience})"
        try:
            credentials = identity_pool.Credentials(  # type: ignore[no-untyped-call]
                audience=federation.audience,
                subject_token_type=JWT_TOKEN_TYPE,
                token_url=federation.sts_url,
                subject_token_supplier=_Supplier(),
                service_account_impersonation_url=impersonation,
                scopes=[CLOUD_PLATFORM_SCOPE],
            )
        except (exceptions.GoogleAuthError, ValueError) as exc:
            raise CloudCredentialError(f"{what}: {_scrub(str(exc), (subject_token,))}") from None
        transport = _Transport(budget, TOKEN_API_TIMEOUT_SECONDS, environ, proxy=True)

        def call() -> None:
            credentials.refresh(transport)  # type: ignore[no-untyped-call]

        try:
            _retrying(what, budget, call)
        except exceptions.GoogleAuthError as exc:
            raise self._federation_error(exc, what, transport, federation, who, subject_token) from None
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise CloudCredentialError(f"{what} answered without an access token")
        return AccessToken(token, _timestamp(credentials.expiry))

    @staticmethod
    def _federation_error(
        exc: Exception, what: str, transport: _Transport, federation: Federation, who: str, subject_token: str
    ) -> CloudCredentialError:
        detail = _scrub(" ".join(str(arg) for arg in exc.args[:1]), (subject_token,))
        status = transport.last_status
        if transport.last_url.startswith(federation.iam_url.rstrip("/")) and federation.service_account:
            hint = ""
            if status in (401, 403):
                hint = (
                    f": let {who} act as {federation.service_account} "
                    "(roles/iam.workloadIdentityUser for its federated principal)"
                )
            return CloudCredentialError(
                f"generateAccessToken as {federation.service_account} for {who} failed (HTTP {status}){hint}"
            )
        hint = ""
        if status in (400, 401, 403):
            hint = (
                ": the pool's provider must trust this cluster's issuer and the token's audience "
                "(tokenAttributes.serviceAccountTokenAudience)"
            )
        return CloudCredentialError(f"STS token exchange for {who} failed (HTTP {status}: {detail}){hint}")
