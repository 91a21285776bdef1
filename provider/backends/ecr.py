"""The ``ecr`` backend: AWS ECR and ECR Public tokens for the node's or the pod's identity.

Which registry: the image host, parsed strictly (``provider.aws.hosts``); a rule's ``region``
(with ``registryId``) names the registry behind any other host (a mirror, a pull-through
cache), and its ``endpoint`` replaces the ECR API URL (a VPC interface endpoint).

Whose identity: without a service account token, the node's (botocore's default chain:
environment, shared config and ``credential_process``, web identity, EKS Pod Identity,
IMDSv2). With one (the kubelet's ``tokenAttributes``), the role named by the first of the
rule's ``roleArnAnnotations`` present on the ServiceAccount, else by ``AWS_ECR_ROLE_ARN`` in
the provider's environment, assumed with STS ``AssumeRoleWithWebIdentity``; with no role, the
node's identity, unless the rule sets ``requirePodIdentity`` (fail closed).

The answer: username and password from ``GetAuthorizationToken``, valid until its
``expiresAt`` (or the assumed role's expiry, if sooner). The kubelet may cache it for half
that time, as the upstream plugin does: the token must still be valid when the runtime, some
time later, uses it for the last layer of a pull.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional

from provider.aws.api import Budget, RoleCredentials, Target
from provider.aws.hosts import (
    ECR_PUBLIC_REGION,
    is_region,
    parse_host,
    parse_role_arn,
    partition_of_region,
    partition_public,
)
from provider.backends.base import Answer, BackendSpec, CloudRule, Credential, Lookup, RuleBase
from provider.backends.presence import IdentitySource, MetadataProbe, doctor_for, require_identity
from provider.errors import CloudCredentialError, ConfigError
from provider.fieldchecks import check_annotation_key, check_endpoint

if TYPE_CHECKING:
    from provider.aws.api import AwsApi

__all__ = ["ECR_GLOBS", "SPEC", "EcrBackend", "EcrRule", "resolve_target", "session_name"]

ECR_PRIVATE_SUFFIXES = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
)
ECR_DUALSTACK_SUFFIXES = ("on.aws", "on.amazonwebservices.com.cn")
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")
# The embedded default's globs: kubelet semantics (``*`` is one host label), so each host shape
# is listed; ``parse_host`` checks a host precisely.
ECR_GLOBS = (
    *(f"*.dkr.{service}.*.{suffix}" for suffix in ECR_PRIVATE_SUFFIXES for service in ("ecr", "ecr-fips")),
    *(f"*.{kind}.*.{suffix}" for suffix in ECR_DUALSTACK_SUFFIXES for kind in ("dkr-ecr", "dkr-ecr-fips")),
    *ECR_PUBLIC_HOSTS,
)


class EcrRule(CloudRule, tag="ecr", frozen=True):
    """AWS Elastic Container Registry, through the node's or the pod's IAM identity.

    ``region`` / ``registryId``: the registry, when the image host does not say (a mirror, a
    pull-through cache or a VPC endpoint name served under another host; such a rule needs
    ``match``) or to override what it says. ``endpoint``: the ECR API URL to call instead of the
    region's (``https://vpce-....api.ecr.<region>.vpce.amazonaws.com``). ``roleArnAnnotations``:
    ServiceAccount annotations naming the role to assume for a pod, first present wins (the
    kubelet must list them in ``tokenAttributes``). ``requirePodIdentity``: fail instead of
    falling back to the node's identity when a request has no token or no role.
    """

    region: Optional[str] = None
    registry_id: Optional[str] = None
    endpoint: Optional[str] = None
    role_arn_annotations: tuple[str, ...] = ("eks.amazonaws.com/ecr-role-arn",)
    require_pod_identity: bool = False


def check_rule(path: str, rule: RuleBase) -> None:
    assert isinstance(rule, EcrRule)
    if rule.region is not None and not is_region(rule.region):
        raise ConfigError(f"{path}.region: expected an AWS region such as 'us-east-1', got {rule.region!r}")
    if rule.region is not None and rule.match is None:
        raise ConfigError(
            f"{path}.region: a rule naming its registry needs 'match', or every image would get ECR tokens"
        )
    registry_id = rule.registry_id
    if registry_id is not None and not (
        len(registry_id) == 12 and registry_id.isascii() and registry_id.isdigit()
    ):
        raise ConfigError(f"{path}.registryId: expected a 12-digit AWS account id, got {registry_id!r}")
    if rule.endpoint is not None:
        check_endpoint(f"{path}.endpoint", rule.endpoint, "https://api.ecr.us-east-1.amazonaws.com")
    for position, key in enumerate(rule.role_arn_annotations):
        check_annotation_key(f"{path}.roleArnAnnotations[{position}]", key, "eks.amazonaws.com/ecr-role-arn")


def _aws_files(environ: Mapping[str, str]) -> list[str]:
    """The files botocore would read an identity from: the web identity token and the shared
    credentials and config files (with a profile in them)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    return [
        environ.get("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
        environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"),
        environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
    ]


def _imds(environ: Mapping[str, str]) -> MetadataProbe:
    ipv6 = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").lower() == "ipv6"
    base = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or (
        "http://[fd00:ec2::254]" if ipv6 else "http://169.254.169.254"
    )
    return MetadataProbe(
        name="AWS IMDSv2",
        method="PUT",
        url=base.rstrip("/") + "/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        accept=lambda status, headers: status == 200,
    )


NO_NODE_IDENTITY = (
    "no AWS credentials for the node: the SDK chain (environment, AWS_PROFILE/shared config "
    "incl. credential_process, web identity, EKS Pod Identity, IMDSv2) found none ({found}); give "
    "the instance a role (a container needs IMDSv2 hop limit 2) or set AWS_* in the provider's env"
)
# botocore's credential chain, as far as it can be seen without botocore.
IDENTITY = IdentitySource(
    env=(
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ),
    files=_aws_files,
    metadata=_imds,
    disabled=("AWS_EC2_METADATA_DISABLED", "true"),
)

ROLE_ARN_ENV = "AWS_ECR_ROLE_ARN"
# A broken credential chain must fail well inside the kubelet's 60 s, and leave the kubelet
# time to read why.
AWS_BUDGET_SECONDS = 15.0
# A token whose expiry is unknown or already past (a wrong clock?) is kept this long, by the
# kubelet and by our disk cache: never the kubelet's default, which is 12 h on EKS.
UNKNOWN_EXPIRY_SECONDS = 60.0
# The node's partition does not change: an "ECR Public is not served here" answer may be kept.
NO_PUBLIC_API_CACHE_SECONDS = 3600.0
DEFAULT_SESSION_NAME = "registry-credential-provider"
MAX_SESSION_NAME = 64  # STS RoleSessionName: 2-64 of [\w+=,.@-]
_SESSION_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_+=,.@-]")
EXPECTED_HOSTS = (
    "<12-digit account>.dkr.ecr.<region>.amazonaws.com or another partition's form, "
    "public.ecr.aws or ecr-public.aws.com"
)


def resolve_target(host: str, rule: EcrRule) -> Target:
    """Where the token for ``host`` comes from under ``rule``; ``CloudCredentialError`` for a host
    that is not ECR when the rule does not name the registry itself. Cheap: no I/O."""
    parsed = parse_host(host)
    if parsed is not None and parsed.public:
        return Target("ecr-public", "aws", ECR_PUBLIC_REGION, "", rule.endpoint or "")
    if parsed is not None:
        region = rule.region or parsed.region
        return Target(
            "ecr",
            partition_of_region(region) or parsed.partition,
            region,
            rule.registry_id or parsed.account,
            rule.endpoint or "",
            parsed.fips,
            parsed.dualstack,
        )
    if rule.region:  # a mirror or pull-through cache the rule vouches for (validated: it has 'match')
        return Target(
            "ecr",
            partition_of_region(rule.region) or "aws",
            rule.region,
            rule.registry_id or "",
            rule.endpoint or "",
        )
    raise CloudCredentialError(
        f"{host} is not an AWS ECR registry host (expected {EXPECTED_HOSTS}), "
        "so no ECR token is made for it; "
        "to serve a mirror, pull-through cache or VPC endpoint name, give its rule 'match' and 'region'"
    )


def session_name(token: str) -> str:
    """``<namespace>@<service account>`` from the token's claims (read, not verified: STS verifies
    the token), shortened with a hash to fit STS; the plugin's name for other tokens."""
    from provider.identity import token_claims

    claims = token_claims(token)
    if claims is None or not claims.namespace or not claims.name:
        return DEFAULT_SESSION_NAME
    name = _SESSION_NAME_UNSAFE.sub("-", f"{claims.namespace}@{claims.name}")
    if len(name) > MAX_SESSION_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_SESSION_NAME - 9]}+{digest}"
    return name if len(name) >= 2 else DEFAULT_SESSION_NAME


def _service_account(token: str) -> str:
    from provider.identity import token_claims

    claims = token_claims(token)
    return f"service account {claims.namespace}/{claims.name}" if claims else "the pod's service account"


class EcrBackend:
    """ECR tokens for the node's identity or the pod's role. ``api``: the AWS calls (default:
    botocore, imported on first use)."""

    def __init__(self, api: AwsApi | None = None) -> None:
        self._api = api
        # botocore's chain finds the node's identity, so its presence is checked before botocore
        # loads; an injected api brings its own identity.
        self._node_chain = api is None

    @property
    def api(self) -> AwsApi:
        if self._api is None:
            from provider.aws.sdk import BotocoreApi

            self._api = BotocoreApi()
        return self._api

    # -- cheap -------------------------------------------------------------------------------

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        rule = lookup.rule
        assert isinstance(rule, EcrRule)
        try:
            target = resolve_target(lookup.host, rule)
            role = self._role(lookup, rule)
        except CloudCredentialError:
            return None  # the answer is an error: nothing to look up
        if role is None and rule.require_pod_identity:
            return None
        return (target.partition, target.region, target.registry_id, target.endpoint, role[0] if role else "")

    def _role(self, lookup: Lookup, rule: EcrRule) -> tuple[str, str] | None:
        """(role ARN, where it came from) for a request with a token; None: the node's identity."""
        request = lookup.request
        if not request.service_account_token:
            return None
        for key in rule.role_arn_annotations:
            value = request.service_account_annotations.get(key, "").strip()
            if value:
                return value, f"the service account's annotation {key}"
        value = lookup.environ.get(ROLE_ARN_ENV, "").strip()
        if value:
            return value, ROLE_ARN_ENV
        return None

    # -- the lookup --------------------------------------------------------------------------

    def get_credentials(self, lookup: Lookup) -> Answer:
        rule = lookup.rule
        assert isinstance(rule, EcrRule)
        target = resolve_target(lookup.host, rule)
        token = lookup.request.service_account_token
        role = self._role(lookup, rule)
        if rule.require_pod_identity and role is None:
            raise CloudCredentialError(self._no_pod_identity(lookup, rule))
        if role is None and self._node_chain:
            require_identity(IDENTITY, lookup, NO_NODE_IDENTITY)
        budget = Budget(lookup.deadline.bound(AWS_BUDGET_SECONDS))

        if target.service == "ecr-public":
            node_region = (
                rule.region or lookup.environ.get("AWS_REGION") or lookup.environ.get("AWS_DEFAULT_REGION")
            )
            if not node_region:
                node_region = self.api.node_region(budget)
            partition = partition_of_region(node_region) if node_region else None
            if partition is not None and not partition_public(partition):
                lookup.warn(
                    f"{lookup.host}: ECR Public's API is not available in partition {partition} "
                    f"(region {node_region}); the image is pulled anonymously"
                )
                return Answer(credential=None, cache_seconds=NO_PUBLIC_API_CACHE_SECONDS)

        credentials: RoleCredentials | None = None
        if role is not None:
            credentials = self._assume_role(lookup, target, role, token, budget)
        data = self.api.authorization_token(target, credentials, budget, secrets=(token,) if token else ())
        username, password = self._decode(data.token, target)
        now = lookup.now()
        expires_at = data.expires_at
        if credentials is not None and credentials.expires_at is not None:
            # A token made with temporary credentials is no good after they expire.
            expires_at = min(expires_at or credentials.expires_at, credentials.expires_at)
        if expires_at is None or expires_at <= now:
            why = "no expiry" if expires_at is None else "an expiry in the past (is the node's clock right?)"
            lookup.warn(
                f"{lookup.host}: the ECR token came with {why}; it is kept {UNKNOWN_EXPIRY_SECONDS:g}s"
            )
            expires_at = now + UNKNOWN_EXPIRY_SECONDS
            cache_seconds = UNKNOWN_EXPIRY_SECONDS
        else:
            cache_seconds = (expires_at - now) / 2
        return Answer(
            credential=Credential(username=username, password=password, expires_at=expires_at),
            cache_seconds=cache_seconds,
            cacheable=True,
        )

    def _no_pod_identity(self, lookup: Lookup, rule: EcrRule) -> str:
        if not lookup.request.service_account_token:
            return (
                f"{lookup.host}: the rule sets requirePodIdentity but the request has no "
                "service account token; "
                "give this provider tokenAttributes in the kubelet's CredentialProviderConfig"
            )
        keys = ", ".join(rule.role_arn_annotations) or "(none configured)"
        return (
            f"{lookup.host}: no role for {_service_account(lookup.request.service_account_token)}: "
            f"annotate it with {keys} (and list the key in tokenAttributes) or set {ROLE_ARN_ENV} "
            "in the provider's env; the rule "
            "sets requirePodIdentity, so the node's identity is not used"
        )

    def _assume_role(
        self, lookup: Lookup, target: Target, role: tuple[str, str], token: str, budget: Budget
    ) -> RoleCredentials:
        role_arn, source = role
        role_partition = parse_role_arn(role_arn)
        if role_partition is None:
            raise CloudCredentialError(
                f"{source} holds {role_arn[:200]!r}, which is not an IAM role ARN "
                "(arn:aws:iam::123456789012:role/NAME)"
            )
        if role_partition != target.partition:
            raise CloudCredentialError(
                f"{source} names a role in partition {role_partition}, "
                f"but {lookup.host} is in {target.partition}"
            )
        return self.api.assume_role_with_web_identity(
            region=target.region,
            role_arn=role_arn,
            session_name=session_name(token),
            token=token,
            who=_service_account(token),
            budget=budget,
        )

    @staticmethod
    def _decode(token: str, target: Target) -> tuple[str, str]:
        service = "AWS ECR Public" if target.service == "ecr-public" else "AWS ECR"
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        username, colon, password = decoded.partition(":")
        if not colon or not username or not password:
            raise CloudCredentialError(
                f"{service} returned an authorization token that is not base64 of 'user:password'"
            )
        return username, password


def unavailable(environ: Mapping[str, str]) -> str | None:
    """Why ECR cannot be asked from this build: botocore is missing (a trimmed build)."""
    import importlib.util

    return None if importlib.util.find_spec("botocore") else "botocore, the AWS SDK, is not in this build"


SPEC = BackendSpec(
    name="ecr",
    title="AWS ECR and ECR Public",
    rule=EcrRule,
    backend=EcrBackend,
    doctor=doctor_for(IDENTITY, "AWS"),
    check_rule=check_rule,
    token_annotations=lambda rule: tuple(getattr(rule, "role_arn_annotations", ())),
    uses_token=True,
    default_globs=ECR_GLOBS,
    unavailable=unavailable,
)
