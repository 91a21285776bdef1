"""The ``acr`` backend: Azure Container Registry refresh tokens for the node's or the pod's
Entra identity.

Which registry: the image host when it is an ACR login server (``provider.azure.hosts``:
``<name>.azurecr.io`` and the other clouds' suffixes, domain-name-label names, geo-replica
endpoints, and the rule's ``registrySuffixes``); a host the rule's ``match`` names literally (a
private endpoint, a registry behind another name); or, through ``registryMirrors``, another
ACR serving a host's images (``mcr.microsoft.com`` from a private ACR), answered under the
host the kubelet asked for. Any other host gets an error and no request leaves the node.

Whose identity: see ``provider.azure.identities`` (the pod's, through its service account
token as a client assertion; the rule's or the cloud config's managed identity or service
principal; the node's system-assigned managed identity).

The answer: an Entra token for ACR's scope, exchanged at the registry's ``/oauth2/exchange``
for an ACR refresh token, the password of user ``00000000-0000-0000-0000-000000000000``; valid
until its ``exp`` claim (about 3 h; when it has none, 3 h is assumed). The kubelet may keep it
for half its remaining life; our disk cache keeps it until 50-70 % of its life (upstream
exchanges again every 60 minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Optional

import msgspec

from provider.backends.base import Answer, BackendSpec, CloudRule, Credential, Finding, Lookup, RuleBase
from provider.backends.presence import IdentitySource, MetadataProbe, identity_findings, require_identity
from provider.errors import CloudCredentialError, ConfigError, ProviderError

if TYPE_CHECKING:
    from provider.azure.cloudconfig import AzureConfig
    from provider.azure.hosts import Cloud
    from provider.azure.identities import EntraIdentity

__all__ = ["ACR_GLOBS", "SPEC", "AcrBackend", "AcrRule", "Target", "resolve"]

ACR_GLOBS = (
    *(f"*.azurecr.{tld}" for tld in ("io", "cn", "us")),
    *(f"*.*.geo.azurecr.{tld}" for tld in ("io", "cn", "us")),
)
DEFAULT_AZURE_CONFIG = "/etc/kubernetes/azure.json"
# The drop-in (``acr-credential-provider <azure.json> --registry-mirror=...``) passes its
# arguments to every acr rule through these; they are part of the fast path's environment key.
AZURE_CONFIG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_AZURE_CONFIG"
MIRRORS_ENV = "REGISTRY_CREDENTIAL_PROVIDER_ACR_MIRRORS"
CLIENT_ID_ANNOTATIONS = ("kubernetes.azure.com/acr-client-id", "azure.workload.identity/client-id")
TENANT_ID_ANNOTATIONS = ("kubernetes.azure.com/acr-tenant-id", "azure.workload.identity/tenant-id")
# Entra and the exchange together must fail well inside the kubelet's 60 s.
AZURE_BUDGET_SECONDS = 15.0
# An ACR refresh token without an ``exp`` claim lives about 3 h.
ASSUMED_LIFETIME_SECONDS = 3 * 3600.0
# A token already expired when it arrives (a wrong clock?) is kept this long.
UNKNOWN_EXPIRY_SECONDS = 60.0
RESOURCE_ID_PREFIX = "/subscriptions/"
EXAMPLE_GUID = "00000000-0000-0000-0000-000000000000"


class AcrRule(CloudRule, tag="acr", frozen=True):
    """Azure Container Registry, through the node's or the pod's Entra identity.

    ``azureConfig``: the node's cloud config (AKS: ``/etc/kubernetes/azure.json``); its cloud,
    tenant and identity are used when it exists. ``cloud``: ``AzurePublicCloud``,
    ``AzureChinaCloud`` or ``AzureUSGovernmentCloud`` (registry suffix and Entra authority),
    overriding the cloud config's. ``clientId`` / ``resourceId``: a user-assigned managed
    identity of the node to use instead; ``tenantId``: the tenant for the exchange and for pod
    identities without a tenant annotation. ``registrySuffixes``: login server suffixes beyond
    the clouds' own (a custom cloud). ``registryMirrors``: image host -> the ACR login server
    whose token serves it (answered under the image host). ``clientIdAnnotations`` /
    ``tenantIdAnnotations``: ServiceAccount annotations naming a pod identity, first present
    wins (list them in the kubelet's ``tokenAttributes``). ``requirePodIdentity``: fail instead
    of using the node's identity when a request has no token or no client annotation.
    """

    azure_config: str = DEFAULT_AZURE_CONFIG
    cloud: Optional[str] = None
    client_id: Optional[str] = None
    resource_id: Optional[str] = None
    tenant_id: Optional[str] = None
    registry_suffixes: tuple[str, ...] = ()
    registry_mirrors: dict[str, str] = msgspec.field(default_factory=dict)
    client_id_annotations: tuple[str, ...] = CLIENT_ID_ANNOTATIONS
    tenant_id_annotations: tuple[str, ...] = TENANT_ID_ANNOTATIONS
    require_pod_identity: bool = False


def _is_guid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def check_rule(path: str, rule: RuleBase) -> None:
    from provider.azure.hosts import CLOUDS, cloud_named, is_suffix
    from provider.fieldchecks import check_absolute_path, check_annotation_key

    assert isinstance(rule, AcrRule)
    check_absolute_path(f"{path}.azureConfig", rule.azure_config)
    if rule.cloud is not None and cloud_named(rule.cloud) is None:
        names = ", ".join(cloud.name for cloud in CLOUDS.values())
        raise ConfigError(f"{path}.cloud: expected one of {names}, got {rule.cloud!r}")
    if rule.client_id is not None and rule.resource_id is not None:
        raise ConfigError(f"{path}: name a user-assigned identity by clientId or by resourceId, not both")
    for field, value in (("clientId", rule.client_id), ("tenantId", rule.tenant_id)):
        if value is not None and not _is_guid(value):
            raise ConfigError(
                f"{path}.{field}: expected a GUID such as '{'0' * 8}-0000-0000-0000-{'0' * 12}'"
            )
    if rule.resource_id is not None and not (
        rule.resource_id.lower().startswith(RESOURCE_ID_PREFIX)
        and "/providers/microsoft.managedidentity/userassignedidentities/" in rule.resource_id.lower()
    ):
        raise ConfigError(
            f"{path}.resourceId: expected '/subscriptions/<id>/resourceGroups/<group>/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/<name>', got {rule.resource_id[:200]!r}"
        )
    for position, suffix in enumerate(rule.registry_suffixes):
        if not is_suffix(suffix):
            raise ConfigError(
                f"{path}.registrySuffixes[{position}]: expected a DNS suffix such as 'azurecr.example', "
                f"got {suffix!r}"
            )
    _check_mirrors(path, rule)
    for field, keys in (
        ("clientIdAnnotations", rule.client_id_annotations),
        ("tenantIdAnnotations", rule.tenant_id_annotations),
    ):
        for position, key in enumerate(keys):
            check_annotation_key(f"{path}.{field}[{position}]", key, "kubernetes.azure.com/acr-client-id")


def _check_mirrors(path: str, rule: AcrRule) -> None:
    from provider.azure.hosts import is_login_server
    from provider.matching import BadURLError, parse_schemeless

    for source, target in rule.registry_mirrors.items():
        try:
            parsed = parse_schemeless(source)
        except BadURLError:
            parsed = None
        if parsed is None or not parsed.host or parsed.path or "*" in source:
            raise ConfigError(
                f"{path}.registryMirrors: key {source!r}: expected an image host such as 'mcr.microsoft.com'"
            )
        if not is_login_server(target, rule.registry_suffixes):
            raise ConfigError(
                f"{path}.registryMirrors[{source!r}]: expected an ACR login server such as "
                f"'myregistry.azurecr.io', got {target!r}"
            )


def _mirrors(rule: AcrRule, environ: Mapping[str, str]) -> dict[str, str]:
    """The rule's mirrors plus the drop-in's (``src:dst,...`` in ``MIRRORS_ENV``)."""
    found = {source.lower(): target.lower() for source, target in rule.registry_mirrors.items()}
    for pair in environ.get(MIRRORS_ENV, "").split(","):
        source, colon, target = pair.strip().partition(":")
        if colon and source and target:
            found.setdefault(source.lower(), target.lower())
    return found


def _named_by_match(rule: AcrRule, host: str) -> bool:
    """Whether one of the rule's globs names ``host`` literally (no wildcard in its host)."""
    from provider.matching import BadURLError, parse_schemeless

    for glob in rule.match or ():
        try:
            glob_host = parse_schemeless(glob).host
        except BadURLError:
            continue
        if "*" not in glob_host and glob_host.lower() == host.lower():
            return True
    return False


class Target(NamedTuple):
    """Where a lookup's token comes from: the login server (``host[:port]``), the cloud, the
    cloud config read (None: absent), the identity (None: a pod without a client annotation)."""

    login_server: str
    cloud: Cloud
    config: Optional[AzureConfig]
    identity: Optional[EntraIdentity]
    suffixes: tuple[str, ...]


def resolve(lookup: Lookup) -> Target:
    """The registry, cloud and identity for ``lookup``; ``CloudCredentialError`` for a host that
    is no ACR login server the rule vouches for, or a broken cloud config. No network."""
    from provider.azure.cloudconfig import read_azure_config
    from provider.azure.hosts import is_login_server
    from provider.azure.identities import choose_cloud, choose_identity

    rule = lookup.rule
    assert isinstance(rule, AcrRule)
    config = read_azure_config(lookup.environ.get(AZURE_CONFIG_ENV) or rule.azure_config)
    cloud = choose_cloud(rule.cloud, config)
    suffixes = (*rule.registry_suffixes, cloud.suffix)
    host = lookup.host.lower()
    mirrors = _mirrors(rule, lookup.environ)
    if host in mirrors:
        login_server = mirrors[host]
    elif is_login_server(host, suffixes) or _named_by_match(rule, host):
        login_server = host
    else:
        raise CloudCredentialError(
            f"{lookup.host} is not an Azure Container Registry login server (expected <name>.azurecr.io, "
            "<name>-<hash>.azurecr.io, <name>.<region>.geo.azurecr.io or another cloud's suffix), so no "
            "Entra token is made for it; name it in the rule's 'match' (a private endpoint) or map it "
            "with 'registryMirrors'"
        )
    authority = lookup.environ.get("AZURE_AUTHORITY_HOST") or cloud.authority
    request = lookup.request
    identity = choose_identity(
        token=request.service_account_token,
        annotations=request.service_account_annotations,
        client_keys=rule.client_id_annotations,
        tenant_keys=rule.tenant_id_annotations,
        rule_client_id=rule.client_id,
        rule_resource_id=rule.resource_id,
        rule_tenant_id=rule.tenant_id,
        config=config,
        authority=authority,
        environ=lookup.environ,
    )
    if identity is None and not rule.require_pod_identity:
        identity = choose_identity(
            token="",
            annotations={},
            client_keys=(),
            tenant_keys=(),
            rule_client_id=rule.client_id,
            rule_resource_id=rule.resource_id,
            rule_tenant_id=rule.tenant_id,
            config=config,
            authority=authority,
            environ=lookup.environ,
        )
    if identity is not None and identity.kind != "assertion" and rule.require_pod_identity:
        identity = None
    return Target(login_server=login_server, cloud=cloud, config=config, identity=identity, suffixes=suffixes)


def _imds(environ: Mapping[str, str]) -> MetadataProbe:
    base = environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or "http://169.254.169.254"
    return MetadataProbe(
        name="Azure IMDS",
        method="GET",
        url=base.rstrip("/") + "/metadata/instance?api-version=2021-02-01",
        headers={"Metadata": "true"},
        accept=lambda status, headers: status == 200,
    )


IDENTITY = IdentitySource(
    env=("IDENTITY_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"),
    files=lambda environ: [environ.get(AZURE_CONFIG_ENV) or DEFAULT_AZURE_CONFIG],
    metadata=_imds,
)
# A managed identity with no cloud config on the node: only IMDS can tell whether it is on Azure.
IMDS_ONLY = IdentitySource(env=("IDENTITY_ENDPOINT",), files=lambda environ: [], metadata=_imds)
NO_NODE_IDENTITY = (
    "no Azure identity for the node: no cloud config ({config}) and {{found}}; on AKS the kubelet's "
    "azure.json names it, elsewhere give the VM a managed identity or name one in the rule"
)


class AcrBackend:
    """ACR refresh tokens. ``entra``: how an Entra token is got (default: azure-identity,
    imported on first use); tests may inject another."""

    def __init__(self, entra: Callable[[EntraIdentity, float], str] | None = None) -> None:
        self._entra = entra

    def _access_token(self, identity: EntraIdentity, seconds: float) -> str:
        if self._entra is not None:
            return self._entra(identity, seconds)
        from provider.azure.entra import access_token

        return access_token(identity, seconds)

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        try:
            target = resolve(lookup)
        except CloudCredentialError:
            return None  # the answer is an error: nothing to look up
        if target.identity is None:
            return None
        config = target.config.path if target.config is not None else ""
        return (target.login_server, target.cloud.name, config, *target.identity.cache_parts())

    def get_credentials(self, lookup: Lookup) -> Answer:
        from provider.azure.exchange import ACR_USERNAME, exchange

        rule = lookup.rule
        assert isinstance(rule, AcrRule)
        target = resolve(lookup)
        identity = target.identity
        if identity is None:
            raise CloudCredentialError(self._no_pod_identity(lookup, rule))
        if identity.kind == "managed" and target.config is None and self._entra is None:
            path = lookup.environ.get(AZURE_CONFIG_ENV) or rule.azure_config
            require_identity(IMDS_ONLY, lookup, NO_NODE_IDENTITY.format(config=f"{path} is absent"))
        budget = lookup.deadline.bound(AZURE_BUDGET_SECONDS)
        import time

        ends = time.monotonic() + budget
        access_token = self._access_token(identity, budget)
        refresh = exchange(
            target.login_server,
            access_token,
            identity.tenant,
            environ=lookup.environ,
            remaining=lambda: min(ends - time.monotonic(), lookup.deadline.remaining()),
            extra_suffixes=target.suffixes,
        )
        now = lookup.now()
        expires_at = refresh.expires_at if refresh.expires_at is not None else now + ASSUMED_LIFETIME_SECONDS
        if expires_at <= now:
            lookup.warn(
                f"{lookup.host}: the ACR refresh token expired before it arrived (is the node's clock "
                f"right?); it is kept {UNKNOWN_EXPIRY_SECONDS:g}s"
            )
            expires_at = now + UNKNOWN_EXPIRY_SECONDS
            cache_seconds = UNKNOWN_EXPIRY_SECONDS
        else:
            cache_seconds = (expires_at - now) / 2
        return Answer(
            credential=Credential(username=ACR_USERNAME, password=refresh.token, expires_at=expires_at),
            cache_seconds=cache_seconds,
            cacheable=True,
            depends_on=(target.config.path,) if target.config is not None else (),
        )

    @staticmethod
    def _no_pod_identity(lookup: Lookup, rule: AcrRule) -> str:
        if not lookup.request.service_account_token:
            return (
                f"{lookup.host}: the rule sets requirePodIdentity but the request has no service account "
                "token; give this provider tokenAttributes in the kubelet's CredentialProviderConfig"
            )
        keys = " or ".join(rule.client_id_annotations) or "(none configured)"
        return (
            f"{lookup.host}: the pod's service account has no {keys} annotation (list the key in "
            "tokenAttributes); the rule sets requirePodIdentity, so the node's identity is not used"
        )


def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    """Is there an Azure identity here; and for the login servers the rule names (mirror
    targets, literal ``match`` hosts), does the exchange give a refresh token."""
    assert isinstance(rule, AcrRule)
    found, findings = identity_findings(IDENTITY, "Azure", rule, environ, timeout)
    if not found:
        return findings
    servers = sorted({*_mirrors(rule, environ).values(), *_literal_hosts(rule)})[:3]
    for server in servers:
        findings.append(_probe_exchange(rule, server, environ, timeout))
    return findings


def _literal_hosts(rule: AcrRule) -> list[str]:
    from provider.matching import BadURLError, parse_schemeless

    hosts = []
    for glob in rule.match or ():
        try:
            host = parse_schemeless(glob).host
        except BadURLError:
            continue
        if "*" not in host:
            hosts.append(host.lower())
    return hosts


def _probe_exchange(rule: AcrRule, server: str, environ: Mapping[str, str], timeout: float) -> Finding:
    import time as clock

    from provider.deadline import Deadline
    from provider.kubelet import CredentialProviderRequest

    request = CredentialProviderRequest(
        api_version="credentialprovider.kubelet.k8s.io/v1", kind="CredentialProviderRequest", image=server
    )
    lookup = Lookup(
        request=request,
        image=f"{server}/doctor",
        host=server,
        path="/doctor",
        rule=rule,
        deadline=Deadline(timeout),
        environ=environ,
        warn=lambda message: None,
        now=clock.time,
    )
    try:
        answer = AcrBackend().get_credentials(lookup)
    except ProviderError as exc:
        return Finding("fail", f"{server}: {exc}")
    credential = answer.credential
    left = (credential.expires_at - clock.time()) / 60 if credential and credential.expires_at else 0
    return Finding("ok", f"{server}: the exchange gave a refresh token valid {left:.0f} min")


def unavailable(environ: Mapping[str, str]) -> str | None:
    """Why ACR cannot be asked from this build: azure-identity is missing (a trimmed build)."""
    import importlib.util

    return None if importlib.util.find_spec("azure.identity") else "azure-identity is not in this build"


def _token_annotations(rule: RuleBase) -> tuple[str, ...]:
    assert isinstance(rule, AcrRule)
    return (*rule.client_id_annotations, *rule.tenant_id_annotations)


SPEC = BackendSpec(
    name="acr",
    title="Azure Container Registry",
    rule=AcrRule,
    backend=AcrBackend,
    doctor=doctor,
    check_rule=check_rule,
    token_annotations=_token_annotations,
    uses_token=True,
    default_globs=ACR_GLOBS,
    unavailable=unavailable,
)
