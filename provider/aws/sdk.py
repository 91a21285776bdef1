"""``AwsApi`` over botocore: one session per process, bounded calls, errors mapped here.

Only the ``ecr`` backend's ``get_credentials`` imports this module, so botocore (and its
~100 ms of imports) is paid only by requests that need it.

Bounds: every client gets connect and read timeouts and at most ``MAX_ATTEMPTS`` attempts
(botocore's standard retry mode, which backs off on throttling); the session's default
client config carries the same bounds to the STS clients the credential chain makes itself
(web identity, assume-role profiles); and a ``before-send`` hook refuses to start an attempt
once the lookup's budget (about 15 s, never past the call's deadline) is spent. IMDS keeps
botocore's own bounds (1 s, one attempt, unless the environment says otherwise).

Proxies: botocore honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment the
kubelet gives us. Instance metadata and the container credential endpoint are link-local and
must never go through a proxy (a proxy would even be told the metadata token), so their hosts
are added to ``NO_PROXY`` while botocore works.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)

from provider import __version__
from provider.aws.api import Budget, RoleCredentials, Target, TokenData
from provider.errors import CloudCredentialError, NoIdentityError
from provider.redact import excerpt, register, register_environment

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = ["BotocoreApi", "reset_session"]

CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 3
BUDGET_GRACE_SECONDS = 0.25
T = TypeVar("T")
USER_AGENT = f"registry-credential-provider/{__version__}"
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
# Where instance and container credentials live (IPv4 and IPv6 forms of each).
METADATA_HOSTS = (
    "169.254.169.254",
    "fd00:ec2::254",
    "[fd00:ec2::254]",
    "169.254.170.2",
    "169.254.170.23",
    "fd00:ec2::23",
    "[fd00:ec2::23]",
)
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
MAX_MESSAGE_CHARS = 200

_session: botocore.session.Session | None = None


def _get_session() -> botocore.session.Session:
    """The process's one botocore session (its credential chain runs once per process)."""
    global _session  # noqa: PLW0603 - one lazily created session per process
    if _session is None:
        _session = botocore.session.get_session()
        _session.user_agent_extra = USER_AGENT
    return _session


def reset_session() -> None:
    """Forget the session and the node credentials it resolved (tests change the environment)."""
    global _session  # noqa: PLW0603
    _session = None


def _client_config(budget: Budget, **options: Any) -> Config:
    left = budget.remaining()
    return Config(
        connect_timeout=max(0.05, min(CONNECT_TIMEOUT_SECONDS, left / 3)),
        read_timeout=max(0.05, min(READ_TIMEOUT_SECONDS, left / 2)),
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        **options,
    )


def _metadata_hosts(session: botocore.session.Session) -> list[str]:
    hosts = list(METADATA_HOSTS)
    configured = [
        session.get_config_variable("ec2_metadata_service_endpoint"),
        os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ]
    for url in configured:
        if isinstance(url, str) and url:
            with contextlib.suppress(ValueError):
                hostname = urlsplit(url).hostname
                if hostname:
                    hosts += [hostname, f"[{hostname}]"] if ":" in hostname else [hostname]
    return hosts


@contextlib.contextmanager
def _metadata_bypasses_proxy(session: botocore.session.Session) -> Iterator[None]:
    """While botocore works, keep instance metadata and container credentials off any proxy."""
    if not any(os.environ.get(name) for name in PROXY_VARIABLES):
        yield
        return
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    current = saved["no_proxy"] or saved["NO_PROXY"] or ""  # Python prefers the lower-case one
    if current.strip() != "*":
        merged = ",".join(part for part in [current.strip(" ,"), *_metadata_hosts(session)] if part)
        os.environ["no_proxy"] = os.environ["NO_PROXY"] = merged
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _guard(client: BaseClient, budget: Budget, what: str) -> BaseClient:
    """Refuse to start an attempt (a retry included) once the budget is spent."""

    def before_send(**_: Any) -> None:
        budget.check(what)

    client.meta.events.register("before-send", before_send)
    return client


def _within(budget: Budget, what: str, call: Callable[[], T]) -> T:
    """``call()``, given up when the budget runs out even if bytes still trickle in.

    botocore's read timeout bounds each socket read, not the response: an endpoint sending one
    byte a second never trips it. The call runs in a daemon thread; past the budget it is left
    behind (the process ends soon after, and the thread with it) and the caller gets the
    budget's error at once. A grace of ``BUDGET_GRACE_SECONDS`` lets botocore report its own,
    more precise timeout first.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the caller's thread as it is
            failure.append(exc)

    thread = threading.Thread(target=run, name="aws-call", daemon=True)
    thread.start()
    thread.join(budget.remaining() + BUDGET_GRACE_SECONDS)
    if thread.is_alive():
        raise CloudCredentialError(
            f"gave up on {what}: the AWS calls of this lookup took more than {budget.seconds:.0f}s "
            "(a slow or unreachable endpoint, IMDS or proxy; the kubelet retries on the next pull)"
        )
    if failure:
        raise failure[0]
    return outcome[0]


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """One line, bounded, without any of ``secrets`` or any other secret this process knows."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return excerpt(text, MAX_MESSAGE_CHARS)


def _register_node_credentials(session: botocore.session.Session) -> None:
    """The credentials the chain resolved (from any source: env, files, IMDS, web identity),
    so an upstream message that echoes them is redacted. Only called after a signed call,
    when the chain has already run."""
    resolved = session.get_credentials()
    if resolved is not None:
        frozen = resolved.get_frozen_credentials()
        register(frozen.secret_key, frozen.token)


def _client_error_parts(exc: ClientError, secrets: tuple[str, ...]) -> tuple[str, str, int]:
    error = exc.response.get("Error", {})
    metadata = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or metadata.get("HTTPStatusCode") or "error")
    message = _scrub(str(error.get("Message") or ""), secrets)
    attempts = int(metadata.get("RetryAttempts") or 0) + 1
    return code, message, attempts


def _detail(code: str, message: str) -> str:
    return f"{code}: {message}" if message else code


def _network_error(exc: BotoCoreError, what: str, secrets: tuple[str, ...]) -> CloudCredentialError | None:
    if isinstance(exc, ProxyConnectionError):  # its message names the proxy URL, maybe with a password
        return CloudCredentialError(
            f"{what} failed: cannot connect through the proxy (check HTTPS_PROXY/NO_PROXY)"
        )
    if isinstance(
        exc, (ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, SSLError)
    ):
        kind = {
            ConnectTimeoutError: "connect timeout",
            ReadTimeoutError: "read timeout",
            SSLError: "TLS error",
            ConnectionClosedError: "connection closed",
        }.get(type(exc), "cannot connect")
        url = exc.kwargs.get("endpoint_url") or ""
        return CloudCredentialError(
            f"{what} failed: {kind} on {_scrub(str(url), secrets) or 'its endpoint'} "
            f"after {MAX_ATTEMPTS} attempts "
            "(check the node's network, HTTPS_PROXY/NO_PROXY, or the rule's 'endpoint')"
        )
    return None


def _chain_error(exc: BotoCoreError) -> CloudCredentialError | None:
    """Failures of the node's credential chain (no identity, or a broken source)."""
    if isinstance(exc, NoCredentialsError):
        return NoIdentityError(
            "no AWS credentials for the node: the SDK chain (environment, AWS_PROFILE/shared config "
            "incl. credential_process, web identity, EKS Pod Identity, IMDSv2) found none; give the "
            "instance a role (a container needs IMDSv2 hop limit 2) or set AWS_* in the provider's env"
        )
    if isinstance(exc, PartialCredentialsError):
        return CloudCredentialError(
            f"incomplete AWS credentials in {exc.kwargs.get('provider', 'the environment')}: "
            f"{exc.kwargs.get('cred_var', 'a variable')} is missing"
        )
    if isinstance(exc, CredentialRetrievalError):
        # Its message may quote a credential_process's stderr: name the source only.
        return CloudCredentialError(
            f"the node's AWS credential source '{exc.kwargs.get('provider', '?')}' failed; "
            "set REGISTRY_CREDENTIAL_PROVIDER_DEBUG=1 for its message"
        )
    if isinstance(exc, ProfileNotFound):
        return CloudCredentialError(
            f"AWS profile {exc.kwargs.get('profile', '')!r} (AWS_PROFILE) is not in the node's shared config"
        )
    return None


class BotocoreApi:
    """The real AWS, through botocore."""

    def _principal(self, credentials: RoleCredentials | None) -> str:
        if credentials is not None:
            return f"role {credentials.role_arn}"
        resolved = _get_session().get_credentials()  # cached: only asked after a signed call
        method = getattr(resolved, "method", None)
        return f"the node's identity ({method})" if method else "the node's identity"

    def authorization_token(
        self, target: Target, credentials: RoleCredentials | None, budget: Budget, *, secrets: tuple[str, ...]
    ) -> TokenData:
        service = "AWS ECR Public" if target.service == "ecr-public" else "AWS ECR"
        what = f"{service} GetAuthorizationToken in {target.region}"
        secrets = secrets + (credentials.secrets() if credentials else ())
        register_environment(os.environ)
        register(*secrets)
        budget.check(what)
        session = _get_session()
        try:
            with _metadata_bypasses_proxy(session):
                session.set_default_client_config(_client_config(budget))
                options: dict[str, Any] = {}
                if target.fips:
                    options["use_fips_endpoint"] = True
                if target.dualstack:
                    options["use_dualstack_endpoint"] = True
                keys: dict[str, Any] = {}
                if credentials is not None:
                    keys = {
                        "aws_access_key_id": credentials.access_key_id,
                        "aws_secret_access_key": credentials.secret_access_key,
                        "aws_session_token": credentials.session_token,
                    }
                client: Any = session.create_client(
                    target.service,
                    region_name=target.region,
                    endpoint_url=target.endpoint or None,
                    config=_client_config(budget, **options),
                    **keys,
                )
                _guard(client, budget, what)
                if target.service == "ecr-public":
                    reply = _within(budget, what, client.get_authorization_token)
                    data = reply.get("authorizationData") or {}
                else:
                    arguments = {"registryIds": [target.registry_id]} if target.registry_id else {}
                    reply = _within(budget, what, lambda: client.get_authorization_token(**arguments))
                    items = reply.get("authorizationData") or [{}]
                    data = items[0]
        except ClientError as exc:
            if credentials is None:
                _register_node_credentials(session)
            raise self._ecr_error(exc, what, credentials, secrets) from None
        except BotoCoreError as exc:
            mapped = _network_error(exc, what, secrets) or _chain_error(exc)
            if mapped is None:
                mapped = CloudCredentialError(
                    f"{what} failed: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
                )
            raise mapped from None
        token = data.get("authorizationToken")
        if not isinstance(token, str) or not token:
            raise CloudCredentialError(f"{what} answered without an authorization token")
        register(token)
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            register(base64.b64decode(token).decode("utf-8").partition(":")[2])
        return TokenData(token, _timestamp(data.get("expiresAt")))

    def _ecr_error(
        self, exc: ClientError, what: str, credentials: RoleCredentials | None, secrets: tuple[str, ...]
    ) -> CloudCredentialError:
        code, message, attempts = _client_error_parts(exc, secrets)
        detail = _detail(code, message)
        if code in THROTTLING_CODES:
            return CloudCredentialError(
                f"{what} was throttled ({detail}) after {attempts} attempts; "
                "the kubelet asks again on the next pull"
            )
        principal = self._principal(credentials)
        if code in ("AccessDeniedException", "AccessDenied"):
            return CloudCredentialError(
                f"{what} was denied to {principal} ({detail}); grant it ecr:GetAuthorizationToken"
                + (
                    " and ecr-public:GetAuthorizationToken, sts:GetServiceBearerToken"
                    if "Public" in what
                    else ""
                )
            )
        if code in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                    "InvalidClientTokenId", "SignatureDoesNotMatch"):  # fmt: skip
            return CloudCredentialError(f"{what}: AWS rejected the credentials of {principal} ({detail})")
        return CloudCredentialError(f"{what} failed for {principal} ({detail})")

    def assume_role_with_web_identity(
        self, *, region: str, role_arn: str, session_name: str, token: str, who: str, budget: Budget
    ) -> RoleCredentials:
        what = f"STS AssumeRoleWithWebIdentity into {role_arn} for {who}"
        secrets = (token,)
        register_environment(os.environ)
        register(token)
        budget.check(what)
        session = _get_session()
        try:
            with _metadata_bypasses_proxy(session):
                client: Any = session.create_client(
                    "sts", region_name=region, config=_client_config(budget, signature_version=UNSIGNED)
                )
                _guard(client, budget, what)
                reply = _within(
                    budget,
                    what,
                    lambda: client.assume_role_with_web_identity(
                        RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token
                    ),
                )
        except ClientError as exc:
            code, message, attempts = _client_error_parts(exc, secrets)
            detail = _detail(code, message)
            hint = {
                "AccessDenied": "the role's trust policy must allow this cluster's OIDC provider, "
                "the token's audience and this service account as subject",
                "InvalidIdentityToken": "register the cluster's OIDC issuer as an IAM identity provider and "
                "request tokens for an audience it allows (tokenAttributes.serviceAccountTokenAudience)",
                "ExpiredTokenException": "the kubelet sent an expired token; check the node's clock",
                "IDPCommunicationError": "STS could not reach the cluster's OIDC issuer; "
                "it retries on the next pull",
                "IDPRejectedClaim": "the OIDC provider's claims do not satisfy the role's trust policy",
            }.get(code, "")
            if code in THROTTLING_CODES:
                hint = f"throttled after {attempts} attempts; the kubelet asks again on the next pull"
            raise CloudCredentialError(f"{what} failed ({detail})" + (f": {hint}" if hint else "")) from None
        except BotoCoreError as exc:
            mapped = _network_error(exc, what, secrets)
            if mapped is None:
                mapped = CloudCredentialError(
                    f"{what} failed: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
                )
            raise mapped from None
        found = reply.get("Credentials") or {}
        keys = (found.get("AccessKeyId"), found.get("SecretAccessKey"), found.get("SessionToken"))
        if not all(isinstance(key, str) and key for key in keys):
            raise CloudCredentialError(f"{what} answered without credentials")
        access_key_id, secret_access_key, session_token = (str(key) for key in keys)
        register(secret_access_key, session_token)
        return RoleCredentials(
            access_key_id, secret_access_key, session_token, _timestamp(found.get("Expiration")), role_arn
        )

    def node_region(self, budget: Budget) -> str | None:
        session = _get_session()
        region = session.get_config_variable("region")
        if isinstance(region, str) and region:
            return region
        budget.check("asking IMDS for the node's region")
        from botocore.utils import IMDSRegionProvider

        try:
            with _metadata_bypasses_proxy(session):
                found = IMDSRegionProvider(session).provide()
        except BotoCoreError:
            return None
        return found if isinstance(found, str) and found else None
