"""The ``gar`` backend: Google Artifact Registry and Container Registry, through Google identities.

Which registry: ``gcr.io``, ``*.gcr.io``, ``*.pkg.dev`` and ``container.cloud.google.com``,
checked strictly (``is_google_host``): a rule without ``match`` never sends another host (a
look-alike such as ``gcr.io.evil.example``) to Google or to the metadata server. A rule with
``match`` vouches for its hosts (Private Service Connect names, pull-through mirrors).

Whose identity: without a service account token, or when the pod has not opted in, the node's:
the metadata server's access token for the rule's ``serviceAccount`` (``default``). With the
kubelet's service account token (``tokenAttributes``) and the ServiceAccount annotated
``iam.gke.io/enable-wi-image-pull: "true"`` (or a rule with ``podIdentity: always``), the pod's:
Workload Identity Federation, the token exchanged at STS for the rule's audience, then, when
the ServiceAccount carries ``iam.gke.io/gcp-service-account``, ``generateAccessToken`` as that
Google service account. Once a pod has opted in, a failure fails the pull (never the node's
identity instead), as the upstream plugin does.

The answer: username ``oauth2accesstoken``, the access token as password, valid until the
token's own expiry. The upstream plugin answers ``cacheDuration: 0``; we let the kubelet keep it
for half its remaining life, and our disk cache serves every exec until shortly before expiry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Optional

from provider.backends.base import Answer, BackendSpec, CloudRule, Credential, Finding, Lookup, RuleBase
from provider.backends.presence import (
    IdentitySource,
    MetadataProbe,
    identity_findings,
    require_identity,
)
from provider.errors import CloudCredentialError, ConfigError
from provider.fieldchecks import check_endpoint
from provider.google.api import Budget, Federation, metadata_host

if TYPE_CHECKING:
    from provider.google.api import GoogleApi

__all__ = [
    "GAR_DROP_IN_NAME",
    "GAR_GLOBS",
    "OPT_IN_ANNOTATION",
    "SERVICE_ACCOUNT_ANNOTATION",
    "SPEC",
    "GarBackend",
    "GarRule",
    "is_google_host",
]

GAR_GLOBS = ("gcr.io", "*.gcr.io", "*.pkg.dev", "container.cloud.google.com")
_GOOGLE_HOST = re.compile(
    r"(?:gcr\.io|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:gcr\.io|pkg\.dev)|container\.cloud\.google\.com)"
)
USERNAME = "oauth2accesstoken"
SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"
OPT_IN_ANNOTATION = "iam.gke.io/enable-wi-image-pull"
STS_ENDPOINT = "https://sts.googleapis.com"
IAM_CREDENTIALS_ENDPOINT = "https://iamcredentials.googleapis.com"
# The upstream plugin's name: installed or invoked under it, the executable stands in for it.
GAR_DROP_IN_NAME = "auth-provider-gcp"
# Metadata answers in milliseconds and STS in well under a second: a broken path must fail well
# inside the kubelet's 60 s and leave it time to read why.
GOOGLE_BUDGET_SECONDS = 15.0
# A token whose expiry is unknown or already past (a wrong clock?) is kept this long.
UNKNOWN_EXPIRY_SECONDS = 60.0
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_GKE_POOL = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]\.svc\.id\.goog")
_POOL_PROVIDER = re.compile(
    r"//iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+"
)


def is_google_host(host: str) -> bool:
    """Whether ``host`` (as the kubelet parses it, maybe with a port) is one of Google's registry
    hosts: ``gcr.io``, ``<region>.gcr.io``, ``<location>-docker.pkg.dev`` (any one label before
    ``pkg.dev``), ``container.cloud.google.com``; an explicit ``:443`` is allowed."""
    name, _, port = host.lower().partition(":")
    return port in ("", "443") and _GOOGLE_HOST.fullmatch(name) is not None


class GarRule(CloudRule, tag="gar", frozen=True):
    """Google Artifact Registry and Container Registry, through the node's or the pod's identity.

    ``serviceAccount``: the node's metadata service account whose token is used (``default``, or
    the email of another one attached to the instance). ``podIdentity``: when a request carries
    the kubelet's service account token, ``optIn`` (the upstream plugin's rule) uses Workload
    Identity Federation for ServiceAccounts annotated ``iam.gke.io/enable-wi-image-pull: "true"``
    and the node's identity for the others; ``always`` for every token; ``never`` ignores tokens.
    ``audience``: the STS audience of Workload Identity Federation
    (``//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X``, or
    GKE's ``identitynamespace:...``); for GKE, give ``workloadIdentityPool`` and
    ``identityProvider`` instead. ``workloadIdentityPool``: GKE's pool (``PROJECT.svc.id.goog``),
    with ``identityProvider``. ``identityProvider``: the cluster's issuer URL, with
    ``workloadIdentityPool``. ``stsEndpoint`` / ``iamCredentialsEndpoint``: base URLs replacing
    Google's (a Private Service Connect endpoint).
    """

    service_account: str = "default"
    pod_identity: Literal["optIn", "always", "never"] = "optIn"
    audience: Optional[str] = None
    workload_identity_pool: Optional[str] = None
    identity_provider: Optional[str] = None
    sts_endpoint: Optional[str] = None
    iam_credentials_endpoint: Optional[str] = None


def check_rule(path: str, rule: RuleBase) -> None:
    assert isinstance(rule, GarRule)
    if rule.service_account != "default" and not _EMAIL.fullmatch(rule.service_account):
        raise ConfigError(
            f"{path}.serviceAccount: expected 'default' or a service account email "
            f"such as 'nodes@my-project.iam.gserviceaccount.com', got {rule.service_account!r}"
        )
    if rule.audience is not None:
        if rule.workload_identity_pool is not None or rule.identity_provider is not None:
            raise ConfigError(f"{path}.audience: give either 'audience' or 'workloadIdentityPool', not both")
        if not (_POOL_PROVIDER.fullmatch(rule.audience) or rule.audience.startswith("identitynamespace:")):
            raise ConfigError(
                f"{path}.audience: expected '//iam.googleapis.com/projects/<number>/locations/global/"
                f"workloadIdentityPools/<pool>/providers/<provider>' or 'identitynamespace:...', "
                f"got {rule.audience!r}"
            )
    if (rule.workload_identity_pool is None) != (rule.identity_provider is None):
        missing = "identityProvider" if rule.identity_provider is None else "workloadIdentityPool"
        raise ConfigError(f"{path}.{missing}: 'workloadIdentityPool' and 'identityProvider' go together")
    pool = rule.workload_identity_pool
    if pool is not None and not _GKE_POOL.fullmatch(pool):
        raise ConfigError(
            f"{path}.workloadIdentityPool: expected GKE's pool '<project>.svc.id.goog', got {pool!r}"
        )
    provider = rule.identity_provider
    if provider is not None and not (provider.startswith("https://") and " " not in provider):
        raise ConfigError(
            f"{path}.identityProvider: expected the cluster's issuer URL such as "
            f"'https://container.googleapis.com/v1/projects/P/locations/L/clusters/C', got {provider!r}"
        )
    if rule.sts_endpoint is not None:
        check_endpoint(f"{path}.stsEndpoint", rule.sts_endpoint, STS_ENDPOINT)
    if rule.iam_credentials_endpoint is not None:
        check_endpoint(
            f"{path}.iamCredentialsEndpoint", rule.iam_credentials_endpoint, IAM_CREDENTIALS_ENDPOINT
        )


def audience_of(rule: GarRule) -> str | None:
    """The STS audience the rule names, or None."""
    if rule.audience is not None:
        return rule.audience
    if rule.workload_identity_pool is not None and rule.identity_provider is not None:
        return f"identitynamespace:{rule.workload_identity_pool}:{rule.identity_provider}"
    return None


def _metadata(environ: Mapping[str, str]) -> MetadataProbe:
    return MetadataProbe(
        name="GCE metadata server",
        method="GET",
        url=f"http://{metadata_host(environ)}/computeMetadata/v1/instance/service-accounts/",
        headers={"Metadata-Flavor": "Google"},
        # Google's header says the server is there, whatever the status: a throttled or failing
        # metadata server is an error to report, not a node off Google to hand over.
        accept=lambda status, headers: headers.get("metadata-flavor") == "Google",
    )


NO_NODE_IDENTITY = (
    "no Google identity for the node: no GCE metadata server ({found}); run on Google Cloud "
    "(GKE or Compute Engine), or set GCE_METADATA_HOST for a metadata server elsewhere"
)
# Only the metadata server: the node's identity is never read from a key file.
IDENTITY = IdentitySource(env=(), files=lambda environ: [], metadata=_metadata)


def _who(token: str) -> str:
    from provider.identity import token_claims

    claims = token_claims(token)
    return f"service account {claims.namespace}/{claims.name}" if claims else "the pod's service account"


class GarBackend:
    """Google access tokens for the node's or the pod's identity. ``api``: the Google calls
    (default: google-auth, imported on first use)."""

    def __init__(self, api: GoogleApi | None = None) -> None:
        self._api = api
        # The metadata server is probed before google-auth loads; an injected api brings its own.
        self._probe_node = api is None

    @property
    def api(self) -> GoogleApi:
        if self._api is None:
            from provider.google.sdk import GoogleAuthApi

            self._api = GoogleAuthApi()
        return self._api

    # -- cheap -------------------------------------------------------------------------------

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        rule = lookup.rule
        assert isinstance(rule, GarRule)
        try:
            self._check_host(lookup, rule)
            federation = self._federation(lookup, rule)
        except CloudCredentialError:
            return None  # the answer is an error: nothing to look up
        if federation is None:
            return ("node", rule.service_account)
        return (
            "pod",
            federation.audience,
            federation.service_account or "",
            federation.sts_url,
            federation.iam_url,
        )

    @staticmethod
    def _check_host(lookup: Lookup, rule: GarRule) -> None:
        if rule.match is None and not is_google_host(lookup.host):
            raise CloudCredentialError(
                f"{lookup.host} is not a Google registry host (gcr.io, *.gcr.io, *.pkg.dev, "
                "container.cloud.google.com), so no Google token is sent to it; "
                "to serve another name (Private Service Connect, a mirror), give its rule 'match'"
            )

    def _federation(self, lookup: Lookup, rule: GarRule) -> Federation | None:
        """The exchange for a pod identity, None for the node's; ``CloudCredentialError`` for a
        pod that opted in but cannot be served (fail closed)."""
        request = lookup.request
        token = request.service_account_token
        if not token or rule.pod_identity == "never":
            return None
        annotations = request.service_account_annotations
        opted_in = annotations.get(OPT_IN_ANNOTATION, "").strip().lower() == "true"
        if rule.pod_identity == "optIn" and not opted_in:
            return None
        why = f"{OPT_IN_ANNOTATION} is 'true'" if opted_in else "the rule sets podIdentity: always"
        audience = audience_of(rule)
        if audience is None:
            raise CloudCredentialError(
                f"{lookup.host}: {_who(token)} asks for Workload Identity ({why}) but the rule names no "
                "pool: set 'workloadIdentityPool' and 'identityProvider' (GKE) or 'audience'; "
                "the node's identity is not used"
            )
        account = annotations.get(SERVICE_ACCOUNT_ANNOTATION, "").strip() or None
        if account is not None and not _EMAIL.fullmatch(account):
            raise CloudCredentialError(
                f"{lookup.host}: the annotation {SERVICE_ACCOUNT_ANNOTATION} of {_who(token)} holds "
                f"{account[:100]!r}, which is not a service account email; the node's identity is not used"
            )
        return Federation(
            audience=audience,
            service_account=account,
            sts_url=(rule.sts_endpoint or STS_ENDPOINT).rstrip("/") + "/v1/token",
            iam_url=(rule.iam_credentials_endpoint or IAM_CREDENTIALS_ENDPOINT).rstrip("/"),
        )

    # -- the lookup --------------------------------------------------------------------------

    def get_credentials(self, lookup: Lookup) -> Answer:
        rule = lookup.rule
        assert isinstance(rule, GarRule)
        self._check_host(lookup, rule)
        federation = self._federation(lookup, rule)
        if federation is None and self._probe_node:
            require_identity(IDENTITY, lookup, NO_NODE_IDENTITY)
        budget = Budget(lookup.deadline.bound(GOOGLE_BUDGET_SECONDS))
        if federation is None:
            found = self.api.node_token(
                service_account=rule.service_account, environ=lookup.environ, budget=budget
            )
        else:
            token = lookup.request.service_account_token
            found = self.api.federated_token(
                subject_token=token,
                federation=federation,
                who=_who(token),
                budget=budget,
                environ=lookup.environ,
            )
        now = lookup.now()
        expires_at = found.expires_at
        if expires_at is None or expires_at <= now:
            why = "no expiry" if expires_at is None else "an expiry in the past (is the node's clock right?)"
            lookup.warn(
                f"{lookup.host}: the Google token came with {why}; it is kept {UNKNOWN_EXPIRY_SECONDS:g}s"
            )
            expires_at = now + UNKNOWN_EXPIRY_SECONDS
        return Answer(
            credential=Credential(username=USERNAME, password=found.token, expires_at=expires_at),
            cache_seconds=(expires_at - now) / 2,
            cacheable=True,
        )


def _token_probe(rule: GarRule, environ: Mapping[str, str], timeout: float) -> Finding:
    """Ask the metadata server for the rule's service account token; report its life, never it."""
    import http.client

    host = metadata_host(environ)
    path = f"/computeMetadata/v1/instance/service-accounts/{rule.service_account}/token"
    connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Metadata-Flavor": "Google"})
        reply = connection.getresponse()
        body = reply.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return Finding("fail", f"token of service account {rule.service_account!r}: {type(exc).__name__}")
    finally:
        connection.close()
    if reply.status != 200:
        return Finding("fail", f"token of service account {rule.service_account!r}: HTTP {reply.status}")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document.get("access_token"):
        return Finding(
            "fail", f"token of service account {rule.service_account!r}: no access_token in the answer"
        )
    return Finding(
        "ok",
        f"token of service account {rule.service_account!r}: valid for {document.get('expires_in', '?')}s",
    )


def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    """The metadata server, then the token the node's identity would use."""
    assert isinstance(rule, GarRule)
    found, findings = identity_findings(IDENTITY, "Google Cloud", rule, environ, timeout)
    if not found:
        return findings
    findings.append(_token_probe(rule, environ, timeout))
    if rule.pod_identity != "never" and audience_of(rule) is None:
        findings.append(
            Finding(
                "warn",
                f"no Workload Identity pool in the rule: pods annotated {OPT_IN_ANNOTATION} fail their pulls",
            )
        )
    return findings


def unavailable(environ: Mapping[str, str]) -> str | None:
    """Why Google cannot be asked from this build: google-auth is missing (a trimmed build)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("google")  # a namespace package: finding google.auth would import it
    places = list(spec.submodule_search_locations or ()) if spec is not None else []
    if any(os.path.isdir(os.path.join(place, "auth")) for place in places):
        return None
    return "google-auth, Google's auth library, is not in this build"


SPEC = BackendSpec(
    name="gar",
    title="Google Artifact Registry and GCR",
    rule=GarRule,
    backend=GarBackend,
    doctor=doctor,
    check_rule=check_rule,
    token_annotations=lambda rule: (SERVICE_ACCOUNT_ANNOTATION, OPT_IN_ANNOTATION),
    uses_token=True,
    default_globs=GAR_GLOBS,
    unavailable=unavailable,
)
