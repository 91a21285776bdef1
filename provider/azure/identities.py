"""Whose Entra identity answers a lookup, and which cloud: decided without the network.

In order, the first that applies:

1. the pod's: a request with a service account token whose ServiceAccount carries a client id
   annotation (the rule's ``clientIdAnnotations``, first present wins); the token is the client
   assertion; the tenant from a tenant annotation, else the rule's ``tenantId``, else the
   node's cloud config, else ``AZURE_TENANT_ID``;
2. the rule's user-assigned managed identity (``clientId`` or ``resourceId``);
3. workload identity of the provider itself (``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and
   ``AZURE_FEDERATED_TOKEN_FILE`` in its environment, as a pod with workload identity has);
4. the node's cloud config (``/etc/kubernetes/azure.json`` or the rule's ``azureConfig``): its
   managed identity (user-assigned when it names one) or its service principal;
5. the node's system-assigned managed identity.

The cloud (registry suffix, Entra authority) is the rule's ``cloud``, else the cloud config's,
else the public cloud; ``AZURE_AUTHORITY_HOST`` replaces the authority, as in azure-identity.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

from provider.azure.cloudconfig import AzureConfig
from provider.azure.hosts import DEFAULT_CLOUD, Cloud, cloud_named
from provider.errors import CloudCredentialError

__all__ = ["EntraIdentity", "choose_cloud", "choose_identity", "pod_client"]

Kind = Literal["managed", "secret", "assertion", "token-file"]


class EntraIdentity(NamedTuple):
    """An Entra identity. ``kind``: ``managed`` (IMDS; ``client_id`` or ``resource_id`` for a
    user-assigned one), ``secret`` (a service principal), ``assertion`` (the pod's token as the
    client assertion), ``token-file`` (a federated token file, read when used). ``source``: where
    it was configured, for messages. ``secret`` and ``assertion`` never reach a repr."""

    kind: Kind
    source: str
    authority: str = ""
    tenant: str = ""
    client_id: str = ""
    resource_id: str = ""
    secret: str = ""
    assertion: str = ""
    token_file: str = ""

    def __repr__(self) -> str:
        return (
            f"EntraIdentity(kind={self.kind!r}, source={self.source!r}, authority={self.authority!r}, "
            f"tenant={self.tenant!r}, client_id={self.client_id!r}, resource_id={self.resource_id!r}, "
            f"token_file={self.token_file!r}, <secrets redacted>)"
        )

    def describe(self) -> str:
        """One line naming the identity (no secret)."""
        if self.kind == "managed":
            which = (
                f"user-assigned managed identity {self.resource_id or self.client_id}"
                if self.resource_id or self.client_id
                else "the system-assigned managed identity"
            )
            return f"{which} (from {self.source})"
        what = {"secret": "service principal", "assertion": "pod identity", "token-file": "workload identity"}
        return f"{what[self.kind]} {self.client_id} in tenant {self.tenant} (from {self.source})"

    def cache_parts(self) -> tuple[str, ...]:
        """What names this identity in a cache key (never a secret)."""
        return (self.kind, self.authority, self.tenant, self.client_id, self.resource_id, self.token_file)


def choose_cloud(rule_cloud: str | None, config: AzureConfig | None) -> Cloud:
    """The rule's cloud, else the cloud config's, else the public cloud."""
    name = rule_cloud or (config.cloud if config is not None else "")
    if not name:
        return DEFAULT_CLOUD
    cloud = cloud_named(name)
    if cloud is None:
        where = "the rule's cloud" if rule_cloud else f"{config.path if config else ''}: cloud"
        raise CloudCredentialError(
            f"{where} {name[:100]!r} is not a cloud this provider knows "
            "(AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud)"
        )
    return cloud


def pod_client(annotations: Mapping[str, str], keys: tuple[str, ...]) -> tuple[str, str] | None:
    """(value, annotation key) of the first of ``keys`` with a value, or None."""
    for key in keys:
        value = annotations.get(key, "").strip()
        if value:
            return value, key
    return None


def choose_identity(  # noqa: PLR0911 - one return per identity source, in the docstring's order
    *,
    token: str,
    annotations: Mapping[str, str],
    client_keys: tuple[str, ...],
    tenant_keys: tuple[str, ...],
    rule_client_id: str | None,
    rule_resource_id: str | None,
    rule_tenant_id: str | None,
    config: AzureConfig | None,
    authority: str,
    environ: Mapping[str, str],
) -> EntraIdentity | None:
    """The identity for a lookup (see the module docstring); None for a request with a token
    but no client annotation, which the caller may hand to the node's identity."""
    node_tenant = rule_tenant_id or (config.tenant if config is not None else "")
    if token:
        client = pod_client(annotations, client_keys)
        if client is None:
            return None
        tenant_found = pod_client(annotations, tenant_keys)
        tenant = tenant_found[0] if tenant_found else node_tenant or environ.get("AZURE_TENANT_ID", "")
        if not tenant:
            raise CloudCredentialError(
                f"the service account's {client[1]} names a client, but no tenant is known: annotate it "
                f"with {' or '.join(tenant_keys) or 'a tenant id'}, or set the rule's tenantId"
            )
        return EntraIdentity(
            "assertion",
            f"the service account's annotation {client[1]}",
            authority,
            tenant,
            client[0],
            assertion=token,
        )
    if rule_client_id or rule_resource_id:
        return EntraIdentity(
            "managed",
            "the rule",
            authority,
            node_tenant,
            client_id=rule_client_id or "",
            resource_id=rule_resource_id or "",
        )
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if token_file and environ.get("AZURE_CLIENT_ID") and environ.get("AZURE_TENANT_ID"):
        return EntraIdentity(
            "token-file",
            "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE",
            authority,
            environ["AZURE_TENANT_ID"],
            environ["AZURE_CLIENT_ID"],
            token_file=token_file,
        )
    if config is not None and config.managed_identity:
        return EntraIdentity(
            "managed", config.path, authority, node_tenant, client_id=config.user_assigned_identity
        )
    if config is not None:
        if not (config.client_id and config.client_secret and node_tenant):
            raise CloudCredentialError(
                f"{config.path}: neither useManagedIdentityExtension nor a complete service principal "
                "(aadClientId, aadClientSecret, tenantId)"
            )
        return EntraIdentity(
            "secret", config.path, authority, node_tenant, config.client_id, secret=config.client_secret
        )
    # azure-identity asks the endpoint IDENTITY_ENDPOINT names (App Service, Arc) before IMDS.
    source = "the node (IDENTITY_ENDPOINT)" if environ.get("IDENTITY_ENDPOINT") else "the node (IMDS)"
    return EntraIdentity("managed", source, authority, node_tenant)
