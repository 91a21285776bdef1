"""What the ``gar`` backend asks of Google, as plain types and a protocol.

``provider.google.sdk.GoogleAuthApi`` implements it with google-auth; tests may hand the backend
any other implementation. Nothing here imports google-auth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Optional, Protocol

from provider.budget import CallBudget

__all__ = ["METADATA_HOST", "AccessToken", "Budget", "Federation", "GoogleApi", "metadata_host"]

METADATA_HOST = "metadata.google.internal"


def metadata_host(environ: Mapping[str, str]) -> str:
    """The metadata server's host as google-auth finds it: ``GCE_METADATA_HOST``, else
    ``GCE_METADATA_IP``, else ``metadata.google.internal``."""
    return environ.get("GCE_METADATA_HOST") or environ.get("GCE_METADATA_IP") or METADATA_HOST


class AccessToken(NamedTuple):
    """An OAuth2 access token and when it expires (Unix time; None: not said)."""

    token: str
    expires_at: Optional[float]

    def __repr__(self) -> str:
        return f"AccessToken(token=<redacted>, expires_at={self.expires_at!r})"


class Federation(NamedTuple):
    """A Workload Identity Federation exchange: the STS ``audience`` (a pool provider or GKE's
    ``identitynamespace:`` form), the Google service account to impersonate (None: use the
    federated token itself), and the endpoints (the public ones unless a rule names others)."""

    audience: str
    service_account: Optional[str]
    sts_url: str
    iam_url: str


class Budget(CallBudget):
    """The time all Google calls of one lookup may take together (monotonic clock)."""

    CALLS = "Google calls"
    CAUSES = "a slow or unreachable metadata server, STS or proxy"


class GoogleApi(Protocol):
    """The Google calls the backend makes. Each raises ``CloudCredentialError`` (one line, no
    secret) on failure, ``NoIdentityError`` when the node has no metadata server at all."""

    def node_token(self, *, service_account: str, environ: Mapping[str, str], budget: Budget) -> AccessToken:
        """The metadata server's access token for the node's ``service_account`` (``default``
        or an email)."""
        ...

    def federated_token(
        self,
        *,
        subject_token: str,
        federation: Federation,
        who: str,
        budget: Budget,
        environ: Mapping[str, str],
    ) -> AccessToken:
        """STS token exchange of the kubelet's service account token, then, when the federation
        names one, ``generateAccessToken`` as that Google service account. ``who`` names the
        Kubernetes service account for messages."""
        ...
