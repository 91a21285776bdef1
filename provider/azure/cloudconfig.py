"""The node's Azure cloud config, ``/etc/kubernetes/azure.json`` as AKS writes it.

Only what the ACR backend needs: the cloud, the tenant, and the node's identity, a managed
identity (``useManagedIdentityExtension``, optionally ``userAssignedIdentityID``) or a service
principal (``aadClientId`` and ``aadClientSecret``). Unknown keys are ignored (the file holds
much more). The secret never reaches a repr or an error. Standard library only.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from provider.errors import CloudCredentialError

__all__ = ["MAX_BYTES", "AzureConfig", "read_azure_config"]

MAX_BYTES = 1024 * 1024
# AKS writes "msi" as the client id and secret of a node that uses its managed identity.
MSI_MARKER = "msi"


class AzureConfig(NamedTuple):
    """What the file says. ``managed_identity``: use the node's managed identity, user-assigned
    when ``user_assigned_identity`` (a client id) is set; else the service principal
    ``client_id`` / ``client_secret`` in ``tenant``."""

    path: str
    cloud: str
    tenant: str
    managed_identity: bool
    user_assigned_identity: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return (
            f"AzureConfig(path={self.path!r}, cloud={self.cloud!r}, tenant={self.tenant!r}, "
            f"managed_identity={self.managed_identity!r}, "
            f"user_assigned_identity={self.user_assigned_identity!r}, client_id={self.client_id!r}, "
            f"client_secret={'<redacted>' if self.client_secret else ''!r})"
        )


def _text(document: dict[str, object], key: str, path: str) -> str:
    value = document.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CloudCredentialError(f"{path}: {key} must be a string, got {type(value).__name__}")
    return value.strip()


def read_azure_config(path: str) -> AzureConfig | None:
    """The cloud config at ``path``; None when there is no such file. ``CloudCredentialError``
    (naming the file, never its secret) when it cannot be read or is not a JSON object."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CloudCredentialError(f"cannot read the Azure cloud config {path}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise CloudCredentialError(f"the Azure cloud config {path} is larger than {MAX_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CloudCredentialError(f"the Azure cloud config {path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise CloudCredentialError(f"the Azure cloud config {path} is not a JSON object")
    use_msi = document.get("useManagedIdentityExtension", False)
    if not isinstance(use_msi, bool):
        raise CloudCredentialError(f"{path}: useManagedIdentityExtension must be true or false")
    client_id = _text(document, "aadClientId", path)
    client_secret = _text(document, "aadClientSecret", path)
    managed = use_msi or client_id.lower() == MSI_MARKER
    return AzureConfig(
        path=path,
        cloud=_text(document, "cloud", path),
        tenant=_text(document, "tenantId", path),
        managed_identity=managed,
        user_assigned_identity=_text(document, "userAssignedIdentityID", path),
        client_id="" if managed else client_id,
        client_secret="" if managed else client_secret,
    )
