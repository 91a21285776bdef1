"""Entra ID access tokens for ACR's scope, through azure-identity.

The only module that imports azure-identity (and, under it, msal, requests and cryptography);
only the backend's ``get_credentials`` imports this module. Every call is bounded twice: the
SDK's own timeouts and retries are cut to the budget, and the call runs in a daemon thread the
lookup stops waiting for when the budget ends (the SDK's IMDS retries for a 410 alone may take
70 s). Errors become one ``CloudCredentialError`` line with no secret in it.
"""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING, Any

from provider.azure.hosts import SCOPE
from provider.errors import CloudCredentialError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from provider.azure.identities import EntraIdentity

__all__ = ["access_token"]

MAX_SHOWN = 300


BACKOFF_SECONDS = 0.2
# azure-core's backoff (factor * 2**(n-1)) has no jitter of its own, and azure-identity's IMDS
# client fixes the retry policy's class, so the spread comes from the factor: drawn once per exec,
# nodes that fail together do not retry together.
BACKOFF_SPREAD = (0.5, 1.5)


def _pipeline(seconds: float, rng: random.Random | None = None) -> dict[str, Any]:
    """azure-core pipeline settings that keep one token request inside ``seconds``."""
    return {
        "connection_timeout": max(0.1, min(2.0, seconds)),
        "read_timeout": max(0.1, seconds),
        "retry_total": 2,
        "retry_backoff_factor": BACKOFF_SECONDS * (rng or random).uniform(*BACKOFF_SPREAD),
        "retry_backoff_max": 1.0,
    }


def _quiet_sdk_logs() -> None:
    """azure-identity logs a warning of its own for each failed token, which, with no logging
    configured, Python prints on stderr unredacted: our one error line says it instead."""
    import logging

    for name in ("azure", "msal"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _credential(identity: EntraIdentity, seconds: float) -> TokenCredential:
    from azure.identity import ClientAssertionCredential, ClientSecretCredential, ManagedIdentityCredential

    settings = _pipeline(seconds)
    if identity.kind == "managed":
        if identity.resource_id:
            return ManagedIdentityCredential(
                identity_config={"resource_id": identity.resource_id}, **settings
            )
        return ManagedIdentityCredential(client_id=identity.client_id or None, **settings)
    # A sovereign or test authority has no instance metadata at the public cloud's discovery.
    common = {"authority": identity.authority, "disable_instance_discovery": True, **settings}
    if identity.kind == "secret":
        return ClientSecretCredential(identity.tenant, identity.client_id, identity.secret, **common)
    if identity.kind == "token-file":
        path = identity.token_file

        def assertion() -> str:
            with open(path, encoding="utf-8") as file:  # rotated by the kubelet: read on each use
                return file.read().strip()

        return ClientAssertionCredential(identity.tenant, identity.client_id, assertion, **common)
    token = identity.assertion
    return ClientAssertionCredential(identity.tenant, identity.client_id, lambda: token, **common)


def _one_line(exc: BaseException, secrets: tuple[str, ...]) -> str:
    text = str(exc) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return " ".join(text.split())[:MAX_SHOWN]


def access_token(identity: EntraIdentity, seconds: float) -> str:
    """An Entra access token for ACR's scope as ``identity``, within ``seconds``."""
    from azure.core.exceptions import AzureError

    secrets = (identity.secret, identity.assertion)
    outcome: list[object] = []
    _quiet_sdk_logs()

    def run() -> None:
        try:
            outcome.append(_credential(identity, seconds).get_token(SCOPE).token)
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    worker = threading.Thread(target=run, name="entra-token", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise CloudCredentialError(
            f"Entra ID gave no token for {identity.describe()} within {seconds:g}s "
            "(IMDS or the authority is slow or unreachable; the kubelet retries on the next pull)"
        )
    [result] = outcome
    if isinstance(result, str):
        return result
    if isinstance(result, (AzureError, ValueError, OSError)):
        assert isinstance(result, BaseException)
        raise CloudCredentialError(
            f"Entra ID refused a token for {identity.describe()}: {_one_line(result, secrets)}"
        ) from None
    assert isinstance(result, BaseException)
    raise CloudCredentialError(
        f"Entra ID token for {identity.describe()} failed: "
        f"{type(result).__name__}: {_one_line(result, secrets)}"
    ) from None
