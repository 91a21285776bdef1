"""The ``ecr`` backend's decisions, with a fake ``AwsApi``: which registry, whose identity, how
long the answer lives, and what an operator reads when it fails.

``tests/test_ecr_aws.py`` runs the same backend against botocore, moto and the IMDSv2 fake;
``tests/test_ecr_e2e.py`` through the kubelet simulator, the zipapp and a real pull.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest

from provider.aws.api import Budget, RoleCredentials, Target, TokenData
from provider.backends import load_backend
from provider.backends.base import Lookup
from provider.backends.ecr import (
    AWS_BUDGET_SECONDS,
    DEFAULT_SESSION_NAME,
    UNKNOWN_EXPIRY_SECONDS,
    EcrBackend,
    session_name,
)
from provider.config import EcrRule, decode_config
from provider.deadline import Deadline
from provider.errors import CloudCredentialError, ConfigError, DeadlineExceededError
from provider.kubelet import CredentialProviderRequest
from tests.conftest import ROOT

NOW = 1_800_000_000.0
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/team-a-puller"
OTHER_ROLE = "arn:aws:iam::123456789012:role/from-env"
ANNOTATION = "eks.amazonaws.com/ecr-role-arn"
PASSWORD = "ecr-password-that-must-never-leak"


def sa_token(namespace: str = "team-a", name: str = "puller", uid: str = "uid-1") -> str:
    """A service account JWT as the kubelet sends it (signature not checked by us)."""
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"k"}').decode().rstrip("=")
    claims = {
        "aud": ["sts.amazonaws.com"],
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{payload}.c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr"


TOKEN = sa_token()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeApi:
    """Records what the backend asks; answers as configured."""

    def __init__(
        self,
        *,
        token: str = b64(f"AWS:{PASSWORD}"),
        expires_at: float | None = NOW + 12 * 3600,
        role_expires_at: float | None = NOW + 3600,
        node_region: str | None = None,
    ) -> None:
        self.token = token
        self.expires_at = expires_at
        self.role_expires_at = role_expires_at
        self._node_region = node_region
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def authorization_token(
        self, target: Target, credentials: RoleCredentials | None, budget: Budget, *, secrets: tuple[str, ...]
    ) -> TokenData:
        self.calls.append(
            ("token", {"target": target, "credentials": credentials, "budget": budget, "secrets": secrets})
        )
        return TokenData(self.token, self.expires_at)

    def assume_role_with_web_identity(
        self, *, region: str, role_arn: str, session_name: str, token: str, who: str, budget: Budget
    ) -> RoleCredentials:
        self.calls.append(
            ("assume", {"region": region, "role_arn": role_arn, "session_name": session_name, "who": who})
        )
        return RoleCredentials("ASIAPOD", "pod-secret", "pod-session", self.role_expires_at, role_arn)

    def node_region(self, budget: Budget) -> str | None:
        self.calls.append(("node_region", {}))
        return self._node_region

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class NoApi:
    """An API that must not be touched."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the backend called AwsApi.{name}")


def make_lookup(
    host: str = HOST,
    *,
    rule: EcrRule | None = None,
    token: str = "",
    annotations: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
    deadline: float = 30.0,
    now: Callable[[], float] = lambda: NOW,
) -> Lookup:
    image = f"{host}/team/app"
    request = CredentialProviderRequest(
        api_version="credentialprovider.kubelet.k8s.io/v1",
        kind="CredentialProviderRequest",
        image=image,
        service_account_token=token,
        service_account_annotations=dict(annotations or {}),
    )
    sink = warnings if warnings is not None else []
    return Lookup(
        request=request,
        image=image,
        host=host,
        path="/team/app",
        rule=rule or EcrRule(),
        deadline=Deadline(deadline),
        environ=dict(environ or {}),
        warn=sink.append,
        now=now,
    )


# -- the registry -----------------------------------------------------------------------------


def test_loads_by_name_and_computes_cache_keys_without_importing_botocore() -> None:
    assert isinstance(load_backend("ecr"), EcrBackend)
    code = (
        "import sys\n"
        "from provider.backends import load_backend\n"
        "from tests.test_ecr_backend import make_lookup\n"
        "assert load_backend('ecr').cache_key(make_lookup()) is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('botocore', 'boto3', 'urllib3'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("host", "rule", "target"),
    [
        (HOST, EcrRule(), Target("ecr", "aws", "us-east-1", "123456789012")),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            EcrRule(),
            Target("ecr", "aws-us-gov", "us-gov-west-1", "123456789012", fips=True),
        ),
        (
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            EcrRule(),
            Target("ecr", "aws", "eu-west-1", "123456789012", dualstack=True),
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            EcrRule(),
            Target("ecr", "aws-cn", "cn-north-1", "123456789012"),
        ),
        (
            HOST,
            EcrRule(
                match=[HOST],
                region="us-west-2",
                registry_id="210987654321",
                endpoint="https://vpce-1.api.ecr.us-west-2.vpce.amazonaws.com",
            ),
            Target(
                "ecr",
                "aws",
                "us-west-2",
                "210987654321",
                "https://vpce-1.api.ecr.us-west-2.vpce.amazonaws.com",
            ),
        ),
        (
            "vpce-0a1b2c3d.dkr.ecr.eu-central-1.vpce.amazonaws.com",
            EcrRule(),
            Target("ecr", "aws", "eu-central-1", ""),
        ),
        (
            "mirror.example.com:5000",
            EcrRule(match=["mirror.example.com:5000"], region="eu-west-1", registry_id="210987654321"),
            Target("ecr", "aws", "eu-west-1", "210987654321"),
        ),
        ("public.ecr.aws", EcrRule(), Target("ecr-public", "aws", "us-east-1")),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_registry_comes_from_the_host_and_the_rule(host: str, rule: EcrRule, target: Target) -> None:
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(host, rule=rule, environ={"AWS_REGION": "us-east-1"}))
    assert api.calls[-1][1]["target"] == target


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "docker.io",
    ],
)
def test_a_host_that_is_not_ecr_is_an_error_before_any_aws_call(host: str) -> None:
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend(NoApi()).get_credentials(make_lookup(host))
    message = str(failed.value)
    assert message.startswith(f"{host} is not an AWS ECR registry host")
    assert "'match' and 'region'" in message
    assert EcrBackend(NoApi()).cache_key(make_lookup(host)) is None


# -- the answer ---------------------------------------------------------------------------------


def test_node_identity_answer_lives_half_the_token_lifetime() -> None:
    api = FakeApi(expires_at=NOW + 12 * 3600)
    answer = EcrBackend(api).get_credentials(make_lookup())
    assert api.names() == ["token"]
    assert api.calls[0][1]["credentials"] is None
    assert answer.credential is not None
    assert (answer.credential.username, answer.credential.password) == ("AWS", PASSWORD)
    assert answer.credential.expires_at == NOW + 12 * 3600
    assert answer.cache_seconds == 6 * 3600
    assert answer.cacheable
    assert not answer.per_image


@pytest.mark.parametrize(
    ("expires_at", "why"), [(None, "no expiry"), (1_420_070_400.0, "an expiry in the past")]
)
def test_unknown_or_past_expiry_is_kept_one_minute_not_the_kubelet_default(
    expires_at: float | None, why: str
) -> None:
    warnings: list[str] = []
    answer = EcrBackend(FakeApi(expires_at=expires_at)).get_credentials(make_lookup(warnings=warnings))
    assert answer.credential is not None
    assert answer.cache_seconds == UNKNOWN_EXPIRY_SECONDS
    assert answer.credential.expires_at == NOW + UNKNOWN_EXPIRY_SECONDS
    assert len(warnings) == 1
    assert why in warnings[0]
    assert PASSWORD not in warnings[0]


@pytest.mark.parametrize("token", [b64("AWS"), b64(":only-password"), b64("AWS:"), "not base64!", ""])
def test_a_malformed_token_is_an_error_without_its_content(token: str) -> None:
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend(FakeApi(token=token)).get_credentials(make_lookup())
    assert (
        str(failed.value) == "AWS ECR returned an authorization token that is not base64 of 'user:password'"
    )


def test_deadline_bounds_the_aws_budget() -> None:
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(deadline=5.0))
    budget: Budget = api.calls[0][1]["budget"]
    assert budget.seconds <= 5.0
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(deadline=50.0))
    assert api.calls[0][1]["budget"].seconds == AWS_BUDGET_SECONDS


def test_a_spent_deadline_fails_before_any_aws_call() -> None:
    lookup = make_lookup(deadline=0.0)
    with pytest.raises(DeadlineExceededError):
        EcrBackend(NoApi()).get_credentials(lookup)


# -- whose identity -------------------------------------------------------------------------------


def test_annotation_role_is_assumed_with_the_pods_token() -> None:
    api = FakeApi()
    answer = EcrBackend(api).get_credentials(make_lookup(token=TOKEN, annotations={ANNOTATION: ROLE}))
    assert api.names() == ["assume", "token"]
    assume = api.calls[0][1]
    assert assume == {
        "region": "us-east-1",
        "role_arn": ROLE,
        "session_name": "team-a@puller",
        "who": "service account team-a/puller",
    }
    credentials = api.calls[1][1]["credentials"]
    assert credentials.access_key_id == "ASIAPOD"
    assert TOKEN in api.calls[1][1]["secrets"]
    # A token made with the role's temporary credentials ends with them.
    assert answer.credential is not None
    assert answer.credential.expires_at == NOW + 3600
    assert answer.cache_seconds == 1800


def test_env_role_when_the_service_account_has_no_annotation() -> None:
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(token=TOKEN, environ={"AWS_ECR_ROLE_ARN": OTHER_ROLE}))
    assert api.calls[0][1]["role_arn"] == OTHER_ROLE


def test_annotation_wins_over_env() -> None:
    api = FakeApi()
    lookup = make_lookup(
        token=TOKEN, annotations={ANNOTATION: ROLE}, environ={"AWS_ECR_ROLE_ARN": OTHER_ROLE}
    )
    EcrBackend(api).get_credentials(lookup)
    assert api.calls[0][1]["role_arn"] == ROLE


def test_configured_annotation_keys_first_present_wins() -> None:
    rule = EcrRule(role_arn_annotations=("example.com/ecr-role", "eks.amazonaws.com/role-arn"))
    api = FakeApi()
    annotations = {"eks.amazonaws.com/role-arn": OTHER_ROLE, ANNOTATION: "ignored: not configured"}
    EcrBackend(api).get_credentials(make_lookup(rule=rule, token=TOKEN, annotations=annotations))
    assert api.calls[0][1]["role_arn"] == OTHER_ROLE


def test_neither_annotation_nor_env_uses_the_node_identity() -> None:
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(token=TOKEN, annotations={"other": "x"}))
    assert api.names() == ["token"]
    assert api.calls[0][1]["credentials"] is None


def test_annotations_without_a_token_are_ignored() -> None:
    api = FakeApi()
    EcrBackend(api).get_credentials(make_lookup(annotations={ANNOTATION: ROLE}))
    assert api.names() == ["token"]


def test_fail_closed_without_a_role() -> None:
    rule = EcrRule(require_pod_identity=True)
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend(NoApi()).get_credentials(make_lookup(rule=rule, token=TOKEN))
    message = str(failed.value)
    assert "no role for service account team-a/puller" in message
    assert ANNOTATION in message
    assert "AWS_ECR_ROLE_ARN" in message
    assert TOKEN not in message
    assert EcrBackend(NoApi()).cache_key(make_lookup(rule=rule, token=TOKEN)) is None


def test_fail_closed_without_a_token() -> None:
    rule = EcrRule(require_pod_identity=True)
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend(NoApi()).get_credentials(make_lookup(rule=rule))
    assert "no service account token" in str(failed.value)
    assert "tokenAttributes" in str(failed.value)
    assert EcrBackend(NoApi()).cache_key(make_lookup(rule=rule)) is None


def test_fail_closed_with_a_role_works() -> None:
    api = FakeApi()
    rule = EcrRule(require_pod_identity=True)
    EcrBackend(api).get_credentials(make_lookup(rule=rule, token=TOKEN, annotations={ANNOTATION: ROLE}))
    assert api.names() == ["assume", "token"]


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("team-a-puller", "which is not an IAM role ARN"),
        ("arn:aws:iam::123456789012:user/someone", "which is not an IAM role ARN"),
        ("arn:aws-cn:iam::123456789012:role/puller", "names a role in partition aws-cn, but"),
    ],
)
def test_a_bad_role_is_an_error_naming_where_it_came_from(role: str, message: str) -> None:
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend(NoApi()).get_credentials(make_lookup(token=TOKEN, annotations={ANNOTATION: role}))
    assert message in str(failed.value)
    assert f"annotation {ANNOTATION}" in str(failed.value)


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("team-a", "puller", "team-a@puller"),
        ("kube-system", "a.b.c", "kube-system@a.b.c"),
        ("n" * 63, "s" * 253, None),
    ],
)
def test_session_name_identifies_the_service_account_within_sts_limits(
    namespace: str, name: str, expected: str | None
) -> None:
    found = session_name(sa_token(namespace, name))
    assert 2 <= len(found) <= 64
    assert all(c.isalnum() or c in "_+=,.@-" for c in found)
    if expected is not None:
        assert found == expected
    else:
        assert found.startswith(f"{namespace[:30]}")
        assert found != session_name(sa_token(namespace, name[:-1] + "t"))  # the hash keeps them apart


@pytest.mark.parametrize(
    "token", ["opaque-token", "a.b.c", "x." + base64.urlsafe_b64encode(b"[1]").decode() + ".y"]
)
def test_session_name_of_a_token_that_is_not_a_service_account_jwt(token: str) -> None:
    assert session_name(token) == DEFAULT_SESSION_NAME


# -- ECR Public -----------------------------------------------------------------------------------


def test_public_in_the_commercial_partition_gets_a_token() -> None:
    api = FakeApi()
    answer = EcrBackend(api).get_credentials(
        make_lookup("public.ecr.aws", environ={"AWS_REGION": "eu-west-1"})
    )
    assert answer.credential is not None
    assert api.calls[0][1]["target"] == Target("ecr-public", "aws", "us-east-1")


@pytest.mark.parametrize(
    ("environ", "node_region"),
    [
        ({"AWS_REGION": "cn-north-1"}, None),
        ({"AWS_DEFAULT_REGION": "us-gov-west-1"}, None),
        ({}, "us-isob-east-1"),
    ],
)
def test_public_elsewhere_is_an_anonymous_pull_with_one_warning(
    environ: dict[str, str], node_region: str | None
) -> None:
    api = FakeApi(node_region=node_region)
    warnings: list[str] = []
    answer = EcrBackend(api).get_credentials(
        make_lookup("public.ecr.aws", environ=environ, warnings=warnings)
    )
    assert answer.credential is None
    assert answer.cache_seconds is not None
    assert api.names() == ([] if environ else ["node_region"])
    assert len(warnings) == 1
    assert "ECR Public's API is not available in partition" in warnings[0]
    assert "pulled anonymously" in warnings[0]


def test_public_with_an_unknown_node_region_tries_the_commercial_partition() -> None:
    api = FakeApi(node_region=None)
    answer = EcrBackend(api).get_credentials(make_lookup("ecr-public.aws.com"))
    assert api.names() == ["node_region", "token"]
    assert answer.credential is not None


# -- the cache key --------------------------------------------------------------------------------


def test_cache_key_names_partition_region_registry_endpoint_and_role_without_aws() -> None:
    backend = EcrBackend(NoApi())
    assert backend.cache_key(make_lookup()) == ("aws", "us-east-1", "123456789012", "", "")
    with_role = make_lookup(token=TOKEN, annotations={ANNOTATION: ROLE})
    assert backend.cache_key(with_role) == ("aws", "us-east-1", "123456789012", "", ROLE)
    env_role = make_lookup(token=TOKEN, environ={"AWS_ECR_ROLE_ARN": OTHER_ROLE})
    assert backend.cache_key(env_role) == ("aws", "us-east-1", "123456789012", "", OTHER_ROLE)
    rule = EcrRule(
        match=["m.example.com"], region="eu-west-1", registry_id="210987654321", endpoint="https://e.example"
    )
    assert backend.cache_key(make_lookup("m.example.com", rule=rule)) == (
        "aws",
        "eu-west-1",
        "210987654321",
        "https://e.example",
        "",
    )


# -- the rule's options ---------------------------------------------------------------------------

HEADER = '{"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": ['


def decode_rule(rule: str) -> EcrRule:
    config = decode_config((HEADER + rule + "]}").encode(), "test.json")
    found = config.rules[0]
    assert isinstance(found, EcrRule)
    return found


def test_rule_options_decode_from_camel_case() -> None:
    rule = decode_rule(
        '{"backend": "ecr", "match": ["mirror.example.com"], "region": "eu-west-1", "registryId": "210987654321",'
        ' "endpoint": "https://vpce-1.api.ecr.eu-west-1.vpce.amazonaws.com", "requirePodIdentity": true,'
        ' "roleArnAnnotations": ["eks.amazonaws.com/role-arn"]}'
    )
    assert rule.region == "eu-west-1"
    assert rule.registry_id == "210987654321"
    assert rule.endpoint == "https://vpce-1.api.ecr.eu-west-1.vpce.amazonaws.com"
    assert rule.require_pod_identity
    assert rule.role_arn_annotations == ("eks.amazonaws.com/role-arn",)
    default = decode_rule('{"backend": "ecr"}')
    assert default.role_arn_annotations == (ANNOTATION,)
    assert not default.require_pod_identity
    assert msgspec.json.decode(msgspec.json.encode(default), type=EcrRule) == default


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            '{"backend": "ecr", "match": ["m.io"], "region": "us-east"}',
            "$.rules[0].region: expected an AWS region such as 'us-east-1', got 'us-east'",
        ),
        (
            '{"backend": "ecr", "region": "us-east-1"}',
            "$.rules[0].region: a rule naming its registry needs 'match'",
        ),
        (
            '{"backend": "ecr", "registryId": "12345678901"}',
            "$.rules[0].registryId: expected a 12-digit AWS account id, got '12345678901'",
        ),
        (
            '{"backend": "ecr", "registryId": "١٢٣٤٥٦٧٨٩٠١٢"}',
            "$.rules[0].registryId: expected a 12-digit AWS account id",
        ),
        (
            '{"backend": "ecr", "endpoint": "http://vpce.example.com"}',
            "$.rules[0].endpoint: expected an https:// URL (http only on loopback)",
        ),
        (
            '{"backend": "ecr", "endpoint": "https://e.example.com/path"}',
            "$.rules[0].endpoint: expected a URL such as",
        ),
        (
            '{"backend": "ecr", "endpoint": "https://user:pw@e.example.com"}',
            "$.rules[0].endpoint: expected a URL such as",
        ),
        ('{"backend": "ecr", "endpoint": "ecr.example.com"}', "$.rules[0].endpoint: expected a URL such as"),
        (
            '{"backend": "ecr", "roleArnAnnotations": ["Bad Key"]}',
            "$.rules[0].roleArnAnnotations[0]: expected an annotation key",
        ),
        (
            '{"backend": "ecr", "roleArnAnnotations": ["a/b", "EKS.com/x"]}',
            "$.rules[0].roleArnAnnotations[1]: expected an annotation key",
        ),
        (
            '{"backend": "ecr", "roleArnAnnotations": "eks.amazonaws.com/role-arn"}',
            "$.rules[0].roleArnAnnotations: Expected `array`, got `str`",
        ),
        (
            '{"backend": "ecr", "requirePodIdentity": "yes"}',
            "$.rules[0].requirePodIdentity: Expected `bool`, got `str`",
        ),
        ('{"backend": "ecr", "roleArn": "x"}', "$.rules[0]: Object contains unknown field `roleArn`"),
    ],
)
def test_rule_options_are_validated_with_field_paths(rule: str, message: str) -> None:
    with pytest.raises(ConfigError) as failed:
        decode_rule(rule)
    assert str(failed.value).startswith(f"test.json: {message}")


def test_loopback_http_endpoint_is_allowed_for_tests() -> None:
    assert (
        decode_rule('{"backend": "ecr", "endpoint": "http://127.0.0.1:5000"}').endpoint
        == "http://127.0.0.1:5000"
    )
