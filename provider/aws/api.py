"""What the ``ecr`` backend asks of AWS, as plain types and a protocol.

``provider.aws.sdk.BotocoreApi`` implements it with botocore; tests may hand the backend any
other implementation. Nothing here imports botocore.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

from provider.budget import CallBudget

__all__ = ["AwsApi", "Budget", "RoleCredentials", "Target", "TokenData"]


class Target(NamedTuple):
    """Where a registry token comes from: ``service`` is ``ecr`` or ``ecr-public``;
    ``registry_id`` empty means the caller's own registry; ``endpoint`` empty means the SDK's
    endpoint for the region (``fips``, ``dualstack``: which of its variants)."""

    service: str
    partition: str
    region: str
    registry_id: str = ""
    endpoint: str = ""
    fips: bool = False
    dualstack: bool = False


class TokenData(NamedTuple):
    """An ECR authorization token (base64 of ``user:password``) and when it expires (Unix time)."""

    token: str
    expires_at: Optional[float]

    def __repr__(self) -> str:
        return f"TokenData(token=<redacted>, expires_at={self.expires_at!r})"


class RoleCredentials(NamedTuple):
    """Temporary credentials of an assumed role."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: Optional[float]
    role_arn: str

    def __repr__(self) -> str:
        return f"RoleCredentials(role_arn={self.role_arn!r}, <redacted>, expires_at={self.expires_at!r})"

    def secrets(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key, self.session_token)


class Budget(CallBudget):
    """The time all AWS calls of one lookup may take together (monotonic clock)."""

    CALLS = "AWS calls"
    CAUSES = "a slow or unreachable endpoint, IMDS or proxy"


class AwsApi(Protocol):
    """The AWS calls the backend makes. Each raises ``CloudCredentialError`` (one line, no
    secret) on failure. ``secrets``: strings that must never appear in an error message."""

    def authorization_token(
        self, target: Target, credentials: RoleCredentials | None, budget: Budget, *, secrets: tuple[str, ...]
    ) -> TokenData:
        """``GetAuthorizationToken`` of ECR or ECR Public, as ``credentials`` or the node's identity."""
        ...

    def assume_role_with_web_identity(
        self, *, region: str, role_arn: str, session_name: str, token: str, who: str, budget: Budget
    ) -> RoleCredentials:
        """STS ``AssumeRoleWithWebIdentity`` (unsigned: it needs no AWS identity of the node).
        ``who`` names the service account for messages."""
        ...

    def node_region(self, budget: Budget) -> str | None:
        """The node's region from the SDK's shared config or IMDS, or None."""
        ...
