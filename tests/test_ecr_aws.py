"""The ``ecr`` backend through real botocore, against moto (ECR, STS), the recording front and
the strict IMDSv2 fake: identities, faults, proxies.

botocore reads the process environment, so each test gets a clean one (no AWS_*, no proxy,
no shared config files) pointing at the fakes, and a fresh botocore session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.aws import sdk
from provider.backends.ecr import EcrBackend
from provider.config import EcrRule
from provider.errors import CloudCredentialError, ProviderError
from tests.infra.imds import ImdsFake
from tests.infra.moto import PUBLIC_PASSWORD, AwsFront, MotoServer, moto_password
from tests.test_ecr_backend import ANNOTATION, ROLE, make_lookup, sa_token

TOKEN = sa_token("team-a", "puller")


@pytest.fixture
def aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_front: AwsFront, imds: ImdsFake
) -> Iterator[dict[str, str]]:
    """A clean AWS environment for botocore: endpoints at the front, instance metadata at the fake."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    values = {
        "AWS_ENDPOINT_URL_ECR": aws_front.url,
        "AWS_ENDPOINT_URL_ECR_PUBLIC": aws_front.url,
        "AWS_ENDPOINT_URL_STS": aws_front.url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    sdk.reset_session()
    yield values
    sdk.reset_session()


def secrets_of(imds: ImdsFake) -> list[str]:
    creds = imds.credentials
    return [TOKEN, creds.access_key_id, creds.secret_access_key, creds.token]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, "a secret reached the message"


# -- identities -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_node_identity_from_imdsv2(aws_front: AwsFront, imds: ImdsFake) -> None:
    answer = EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert answer.credential is not None
    assert (answer.credential.username, answer.credential.password) == ("AWS", moto_password())
    [call] = aws_front.calls
    assert (call.service, call.operation) == ("ecr", "GetAuthorizationToken")
    assert call.access_key_id == imds.credentials.access_key_id  # signed as the instance role
    assert call.region == "us-east-1"
    # One token request is our identity probe (before botocore loads), one is botocore's.
    assert imds.paths("PUT") == ["/latest/api/token", "/latest/api/token"]
    assert all(r.authorized for r in imds.requests)  # IMDSv2 only: every GET carried the token


@pytest.mark.usefixtures("aws_env")
def test_the_registry_id_and_region_of_the_host_reach_ecr(aws_front: AwsFront) -> None:
    answer = EcrBackend().get_credentials(
        make_lookup("210987654321.dkr.ecr.eu-central-1.amazonaws.com", environ=dict(os.environ))
    )
    assert answer.credential is not None
    assert answer.credential.password == moto_password("210987654321")
    assert aws_front.calls[0].region == "eu-central-1"


@pytest.mark.usefixtures("aws_env")
def test_cache_duration_is_half_of_the_tokens_remaining_lifetime(aws_front: AwsFront) -> None:
    aws_front.expires_in = 12 * 3600
    backend = EcrBackend()
    lookup = make_lookup(environ=dict(os.environ), now=time.time)
    answer = backend.get_credentials(lookup)
    assert answer.credential is not None
    assert answer.credential.expires_at is not None
    remaining = answer.credential.expires_at - lookup.now()
    assert answer.cache_seconds == pytest.approx(remaining / 2)
    assert answer.cacheable


@pytest.mark.usefixtures("aws_env")
def test_moto_2015_expiry_is_kept_one_minute(aws_front: AwsFront) -> None:
    warnings: list[str] = []
    answer = EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), warnings=warnings))
    assert answer.cache_seconds == 60
    assert "expiry in the past" in warnings[0]


@pytest.mark.usefixtures("aws_env")
def test_pod_identity_from_the_annotation_never_touches_the_node_identity(
    aws_front: AwsFront, imds: ImdsFake
) -> None:
    answer = EcrBackend().get_credentials(
        make_lookup(environ=dict(os.environ), token=TOKEN, annotations={ANNOTATION: ROLE})
    )
    assert answer.credential is not None
    assert answer.credential.password == moto_password()
    sts, ecr = aws_front.calls
    assert (sts.service, sts.operation, sts.access_key_id) == (
        "sts",
        "AssumeRoleWithWebIdentity",
        "",
    )  # unsigned
    assert ecr.operation == "GetAuthorizationToken"
    assert ecr.access_key_id.startswith("ASIA")
    assert ecr.access_key_id != imds.credentials.access_key_id
    assert imds.requests == []


@pytest.mark.usefixtures("aws_env")
def test_pod_identity_from_the_env_role(
    monkeypatch: pytest.MonkeyPatch, aws_front: AwsFront, imds: ImdsFake
) -> None:
    monkeypatch.setenv("AWS_ECR_ROLE_ARN", ROLE)
    EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), token=TOKEN))
    assert [c.operation for c in aws_front.calls] == ["AssumeRoleWithWebIdentity", "GetAuthorizationToken"]
    assert imds.requests == []


@pytest.mark.usefixtures("aws_env")
def test_token_without_a_role_falls_back_to_the_node(aws_front: AwsFront, imds: ImdsFake) -> None:
    EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), token=TOKEN))
    [call] = aws_front.calls
    assert call.access_key_id == imds.credentials.access_key_id


@pytest.mark.usefixtures("aws_env")
def test_fail_closed_never_asks_aws(aws_front: AwsFront, imds: ImdsFake) -> None:
    rule = EcrRule(require_pod_identity=True)
    with pytest.raises(CloudCredentialError):
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), token=TOKEN, rule=rule))
    assert aws_front.calls == []
    assert imds.requests == []


@pytest.mark.usefixtures("aws_env")
def test_ecr_public_through_us_east_1(aws_front: AwsFront, imds: ImdsFake) -> None:
    answer = EcrBackend().get_credentials(
        make_lookup("public.ecr.aws", environ=dict(os.environ), now=time.time)
    )
    assert answer.credential is not None
    assert answer.credential.password == PUBLIC_PASSWORD
    assert answer.cache_seconds == pytest.approx(6 * 3600, abs=60)
    node_region, token = imds.paths()[0], aws_front.calls[-1]
    assert node_region == "/latest/meta-data/placement/availability-zone/"
    assert (token.service, token.region) == ("ecr-public", "us-east-1")


@pytest.mark.usefixtures("aws_env")
def test_ecr_public_from_a_china_node_is_an_anonymous_pull(aws_front: AwsFront, imds: ImdsFake) -> None:
    imds.region = "cn-northwest-1"
    warnings: list[str] = []
    answer = EcrBackend().get_credentials(
        make_lookup("public.ecr.aws", environ=dict(os.environ), warnings=warnings)
    )
    assert answer.credential is None
    assert aws_front.calls == []
    assert imds.paths() == ["/latest/meta-data/placement/availability-zone/"]
    assert warnings == [
        "public.ecr.aws: ECR Public's API is not available in partition aws-cn (region cn-northwest-1); "
        "the image is pulled anonymously"
    ]


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_sts_denies(aws_front: AwsFront, imds: ImdsFake) -> None:
    aws_front.fail(
        "AssumeRoleWithWebIdentity",
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        status=403,
    )
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(
            make_lookup(environ=dict(os.environ), token=TOKEN, annotations={ANNOTATION: ROLE})
        )
    message = str(failed.value)
    assert message.startswith(
        f"STS AssumeRoleWithWebIdentity into {ROLE} for service account team-a/puller failed "
        "(AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity): the role's trust policy"
    )
    assert_no_secret(message, secrets_of(imds))
    assert [c.operation for c in aws_front.calls] == ["AssumeRoleWithWebIdentity"]  # not retried, no ECR call
    assert imds.requests == []


@pytest.mark.usefixtures("aws_env")
def test_sts_rejects_the_token(aws_front: AwsFront, imds: ImdsFake) -> None:
    aws_front.fail(
        "AssumeRoleWithWebIdentity", "InvalidIdentityToken", "No OpenIDConnect provider found", status=400
    )
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(
            make_lookup(environ=dict(os.environ), token=TOKEN, annotations={ANNOTATION: ROLE})
        )
    assert "InvalidIdentityToken" in str(failed.value)
    assert "OIDC issuer" in str(failed.value)
    assert_no_secret(str(failed.value), secrets_of(imds))


@pytest.mark.usefixtures("aws_env")
def test_ecr_throttles_every_attempt(aws_front: AwsFront, imds: ImdsFake) -> None:
    aws_front.fail("GetAuthorizationToken", "ThrottlingException", "Rate exceeded")
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value) == (
        "AWS ECR GetAuthorizationToken in us-east-1 was throttled (ThrottlingException: Rate exceeded) "
        "after 3 attempts; the kubelet asks again on the next pull"
    )
    assert len(aws_front.calls_of("GetAuthorizationToken")) == sdk.MAX_ATTEMPTS


@pytest.mark.usefixtures("aws_env")
def test_ecr_throttling_that_passes_is_retried(aws_front: AwsFront) -> None:
    aws_front.fail("GetAuthorizationToken", "ThrottlingException", "Rate exceeded", times=2)
    answer = EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert answer.credential is not None
    assert len(aws_front.calls_of("GetAuthorizationToken")) == 3


@pytest.mark.usefixtures("aws_env")
def test_ecr_denies_the_node_role(aws_front: AwsFront, imds: ImdsFake) -> None:
    aws_front.fail("GetAuthorizationToken", "AccessDeniedException", "User is not authorized", status=400)
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value) == (
        "AWS ECR GetAuthorizationToken in us-east-1 was denied to the node's identity (iam-role) "
        "(AccessDeniedException: User is not authorized); grant it ecr:GetAuthorizationToken"
    )


@pytest.mark.usefixtures("aws_env")
def test_ecr_denies_the_pod_role(aws_front: AwsFront, imds: ImdsFake) -> None:
    aws_front.fail("GetAuthorizationToken", "AccessDeniedException", "User is not authorized", status=400)
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(
            make_lookup(environ=dict(os.environ), token=TOKEN, annotations={ANNOTATION: ROLE})
        )
    assert f"was denied to role {ROLE}" in str(failed.value)
    assert_no_secret(str(failed.value), secrets_of(imds))


NO_CREDENTIALS = "no AWS credentials for the node: the SDK chain"


@pytest.mark.usefixtures("aws_env")
def test_imds_down(aws_front: AwsFront, imds: ImdsFake) -> None:
    imds.stop()
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value).startswith(NO_CREDENTIALS)
    assert "IMDSv2 hop limit 2" in str(failed.value)
    assert aws_front.calls == []


@pytest.mark.usefixtures("aws_env")
def test_imds_without_the_v2_token_is_not_used_as_v1(aws_front: AwsFront, imds: ImdsFake) -> None:
    imds.mode = "no-token"
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value).startswith(NO_CREDENTIALS)
    assert not any(r.authorized for r in imds.requests)  # the fake served nothing without a token
    assert aws_front.calls == []


@pytest.mark.usefixtures("aws_env")
def test_imds_that_never_answers_the_token_request(aws_front: AwsFront, imds: ImdsFake) -> None:
    imds.mode = "hang-token"  # what a container sees with hop limit 1
    imds.hang_seconds = 3.0
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value).startswith(NO_CREDENTIALS)
    assert aws_front.calls == []


@pytest.mark.usefixtures("aws_env")
def test_unreachable_ecr_endpoint(monkeypatch: pytest.MonkeyPatch, moto_server: MotoServer) -> None:
    from tests.infra._util import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", closed)
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert str(failed.value) == (
        f"AWS ECR GetAuthorizationToken in us-east-1 failed: cannot connect on {closed}/ after 3 attempts "
        "(check the node's network, HTTPS_PROXY/NO_PROXY, or the rule's 'endpoint')"
    )


@pytest.mark.usefixtures("aws_env")
def test_rule_endpoint_replaces_the_ecr_api_url(monkeypatch: pytest.MonkeyPatch, aws_front: AwsFront) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_ECR")
    rule = EcrRule(endpoint=aws_front.url)
    answer = EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), rule=rule))
    assert answer.credential is not None
    assert [c.operation for c in aws_front.calls] == ["GetAuthorizationToken"]


@pytest.mark.usefixtures("aws_env")
def test_a_spent_budget_stops_before_the_first_attempt(aws_front: AwsFront) -> None:
    with pytest.raises(ProviderError):
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ), deadline=0.000001))
    assert aws_front.calls == []


# -- proxies --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_proxy_carries_aws_calls_but_never_instance_metadata(
    monkeypatch: pytest.MonkeyPatch, moto_server: MotoServer, aws_front: AwsFront, imds: ImdsFake
) -> None:
    # The front is the proxy now; ECR is addressed as localhost so that NO_PROXY entries for the
    # metadata endpoint (127.0.0.1 here) cannot exempt it.
    monkeypatch.setenv("HTTP_PROXY", aws_front.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://localhost:{moto_server.port}")
    monkeypatch.setenv("NO_PROXY", "registry.example.com")
    answer = EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert answer.credential is not None
    [call] = aws_front.calls
    assert (call.operation, call.via_proxy, call.target) == (
        "GetAuthorizationToken",
        True,
        f"localhost:{moto_server.port}",
    )
    assert imds.requests  # the credentials came from IMDS...
    assert not any(r.forwarded for r in imds.requests)  # ...directly
    assert os.environ["NO_PROXY"] == "registry.example.com"  # restored afterwards
    assert "no_proxy" not in os.environ


@pytest.mark.usefixtures("aws_env")
def test_no_proxy_star_is_respected(
    monkeypatch: pytest.MonkeyPatch, moto_server: MotoServer, aws_front: AwsFront
) -> None:
    monkeypatch.setenv("HTTP_PROXY", aws_front.url)
    monkeypatch.setenv("NO_PROXY", "*")
    EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    assert not any(c.via_proxy for c in aws_front.calls)


class _Dribbler:
    """An ECR endpoint that answers 200 and then sends its body one byte at a time, ``interval``
    apart: every socket read succeeds well within botocore's read timeout, so it never fires."""

    def __init__(self, total_bytes: int = 100, interval: float = 0.2) -> None:
        import socket
        import threading

        self.total_bytes = total_bytes
        self.interval = interval
        self.sent = 0
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(5)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self._sock.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {self.total_bytes}\r\n\r\n"
            connection.sendall(head.encode())
            for _ in range(self.total_bytes):
                if self._stop.wait(self.interval):
                    return
                try:
                    connection.sendall(b" ")
                except OSError:
                    return
                self.sent += 1
        self.finished.set()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.mark.usefixtures("aws_env")
def test_a_slow_body_is_bounded_by_the_aws_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from provider.aws.api import Budget, Target

    dribbler = _Dribbler()
    try:
        target = Target("ecr", "aws", "us-east-1", "123456789012", dribbler.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDDRIBBLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dribble-secret-that-must-never-leak")
        sdk.reset_session()
        with pytest.raises(CloudCredentialError) as failed:
            sdk.BotocoreApi().authorization_token(target, None, Budget(2.0), secrets=())
        # The call gave up while the endpoint was still sending: the budget ended it, not the body.
        assert not dribbler.finished.is_set()
        assert dribbler.sent < dribbler.total_bytes
        assert "took more than 2s" in str(failed.value)
    finally:
        dribbler.close()
