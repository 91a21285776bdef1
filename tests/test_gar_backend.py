"""The ``gar`` backend against the strict Google fakes (``tests.infra.google``), in process:
node tokens, Workload Identity Federation, failures of the metadata server, look-alike hosts,
the rule's checks, and the drop-in's upstream flags."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.backends.base import Lookup
from provider.backends.gar import (
    OPT_IN_ANNOTATION,
    SERVICE_ACCOUNT_ANNOTATION,
    GarBackend,
    GarRule,
    check_rule,
    is_google_host,
)
from provider.config import decode_config
from provider.errors import CloudCredentialError, ConfigError, NoIdentityError, ProviderError
from provider.google.dropin import upstream_args
from tests.infra.google import GoogleFake
from tests.test_backend_contract import lookup
from tests.test_ecr_backend import sa_token

TOKEN = sa_token("team-a", "puller")
OTHER_TOKEN = sa_token("team-b", "builder")
ISSUER = "https://container.googleapis.com/v1/projects/project/locations/europe-west3/clusters/c1"
POOL = "my-project.svc.id.goog"
AUDIENCE = f"identitynamespace:{POOL}:{ISSUER}"
GSA = "puller@my-project.iam.gserviceaccount.com"
IMAGE = "europe-docker.pkg.dev/my-project/repo/app"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith("GCE_METADATA"):
            monkeypatch.delenv(name)


@pytest.fixture
def google() -> Iterator[GoogleFake]:
    with GoogleFake(
        audience=AUDIENCE, subjects=(TOKEN,), impersonable={GSA: "ya29.impersonated-secret"}
    ) as fake:
        yield fake


def env(fake: GoogleFake) -> dict[str, str]:
    return {"GCE_METADATA_HOST": fake.host}


def pod_rule(fake: GoogleFake, **fields: object) -> GarRule:
    return GarRule(
        workload_identity_pool=POOL,
        identity_provider=ISSUER,
        sts_endpoint=fake.url,
        iam_credentials_endpoint=fake.url,
        **fields,  # type: ignore[arg-type]
    )


def answer(item: Lookup) -> tuple[str, str, float, float]:
    found = GarBackend().get_credentials(item)
    credential = found.credential
    assert credential is not None
    assert found.cacheable
    expires_at = credential.expires_at
    assert expires_at is not None
    assert found.cache_seconds is not None
    return credential.username, credential.password, expires_at - item.now(), found.cache_seconds


# --- node identity -----------------------------------------------------------------------------


def test_node_token_from_the_metadata_server(google: GoogleFake) -> None:
    username, password, life, cache = answer(lookup(f"{IMAGE}:v1", GarRule(), env(google)))
    assert (username, password) == ("oauth2accesstoken", google.node_token)
    assert 3500 < life <= 3600
    assert cache <= life / 2
    tokens = [r for r in google.requests if r.path.endswith("/token")]
    assert [r.path for r in tokens] == ["/computeMetadata/v1/instance/service-accounts/default/token"]
    assert all(r.flavored for r in google.requests), "every metadata request says Metadata-Flavor: Google"


def test_a_named_service_account_is_asked_for_by_name(google: GoogleFake) -> None:
    rule = GarRule(service_account="nodes@project.iam.gserviceaccount.com")
    assert answer(lookup("gcr.io/p/app", rule, env(google)))[1] == google.node_token
    assert google.requests[-1].path.endswith("/service-accounts/nodes@project.iam.gserviceaccount.com/token")


def test_an_unknown_service_account_says_so(google: GoogleFake) -> None:
    rule = GarRule(service_account="absent@project.iam.gserviceaccount.com")
    with pytest.raises(CloudCredentialError, match="no such service account on this node"):
        GarBackend().get_credentials(lookup("gcr.io/p/app", rule, env(google)))


def test_a_short_lived_token_is_kept_for_its_real_life_only() -> None:
    with GoogleFake(token_seconds=90) as fake:
        _, _, life, cache = answer(lookup("us.gcr.io/p/app", GarRule(), env(fake)))
    assert 80 < life <= 91  # counted from the lookup's frozen now, a moment before the request
    assert cache <= life / 2 < 46


def test_metadata_5xx_is_retried_with_jitter() -> None:
    with GoogleFake(mode="5xx", failures=2) as fake:
        assert answer(lookup("gcr.io/p/app", GarRule(), env(fake)))[1] == fake.node_token
        assert fake.token_requests() == 3


def test_metadata_answering_5xx_for_good_fails_after_three_attempts() -> None:
    with GoogleFake(mode="5xx", failures=100) as fake:
        with pytest.raises(CloudCredentialError, match="HTTP 503 after 3 attempts") as failed:
            GarBackend().get_credentials(lookup("gcr.io/p/app", GarRule(), env(fake)))
        assert fake.token_requests() == 3
        assert fake.node_token not in str(failed.value)


def test_slow_metadata_ends_within_the_deadline() -> None:
    with GoogleFake(mode="slow", hang_seconds=30) as fake:
        with pytest.raises(ProviderError):
            GarBackend().get_credentials(lookup("gcr.io/p/app", GarRule(), env(fake), deadline=1.5))
        assert fake.token_requests() >= 1


def test_no_metadata_server_is_no_identity() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(NoIdentityError, match="no GCE metadata server"):
        GarBackend().get_credentials(
            lookup("gcr.io/p/app", GarRule(), {"GCE_METADATA_HOST": f"127.0.0.1:{port}"})
        )


# --- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "google"),
    [
        ("gcr.io", True),
        ("us.gcr.io", True),
        ("GCR.IO", True),
        ("europe-west3-docker.pkg.dev", True),
        ("container.cloud.google.com", True),
        ("gcr.io:443", True),
        ("gcr.io.evil.example", False),
        ("evilgcr.io", False),
        ("a.b.gcr.io", False),
        ("pkg.dev", False),
        ("evil.example/gcr.io", False),
        ("gcr.io:5000", False),
        ("-x.gcr.io", False),
        ("container.cloud.google.com.evil.example", False),
    ],
)
def test_google_hosts_are_checked_strictly(host: str, google: bool) -> None:
    assert is_google_host(host) is google


@pytest.mark.parametrize("host", ["gcr.io.evil.example", "evilgcr.io", "xgcr.io", "pkg.dev.evil.example"])
def test_look_alikes_never_reach_google(google: GoogleFake, host: str) -> None:
    item = lookup(f"{host}/p/app", GarRule(), env(google))
    with pytest.raises(CloudCredentialError, match="is not a Google registry host"):
        GarBackend().get_credentials(item)
    assert GarBackend().cache_key(item) is None
    assert google.requests == []


def test_look_alikes_under_the_embedded_default_go_to_docker_config(
    google: GoogleFake, tmp_path: Path
) -> None:
    from provider.deadline import Deadline
    from provider.defaults import DEFAULT_CONFIG
    from provider.fullpath import respond
    from provider.kubelet import CredentialProviderRequest

    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text('{"auths": {}}')
    environ = {**env(google), "DOCKER_CONFIG": str(docker), "HOME": str(tmp_path)}
    for image in ("gcr.io.evil.example/p/app", "evilgcr.io/p/app"):
        request = CredentialProviderRequest(
            api_version="credentialprovider.kubelet.k8s.io/v1", kind="CredentialProviderRequest", image=image
        )
        outcome = respond(
            request, DEFAULT_CONFIG, deadline=Deadline(10), environ=environ, warn=lambda m: None
        )
        assert outcome.match is not None
        assert outcome.match.backend == "dockerconfig"
    assert google.requests == []


def test_a_rule_with_match_may_send_any_host(google: GoogleFake) -> None:
    rule = GarRule(match=["registry.psc.example"])
    assert answer(lookup("registry.psc.example/p/app", rule, env(google)))[1] == google.node_token


# --- pod identity ------------------------------------------------------------------------------


def test_opted_in_pod_is_federated_and_impersonates(google: GoogleFake) -> None:
    annotations = {OPT_IN_ANNOTATION: "true", SERVICE_ACCOUNT_ANNOTATION: GSA}
    item = lookup(IMAGE, pod_rule(google), env(google), token=TOKEN, annotations=annotations)
    username, password, life, _ = answer(item)
    assert (username, password) == ("oauth2accesstoken", "ya29.impersonated-secret")
    assert 3000 < life <= 3600
    assert google.kinds() == ["sts", "iam"], "the node's metadata server is never asked"
    assert google.audiences == [AUDIENCE]


def test_opted_in_pod_without_a_google_service_account_uses_the_federated_token(google: GoogleFake) -> None:
    item = lookup(IMAGE, pod_rule(google), env(google), token=TOKEN, annotations={OPT_IN_ANNOTATION: "true"})
    assert answer(item)[1] == google.federated_token
    assert google.kinds() == ["sts"]


def test_an_explicit_audience_is_sent_as_is(google: GoogleFake) -> None:
    audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s"
    google.audience = audience
    rule = GarRule(audience=audience, sts_endpoint=google.url, pod_identity="always")
    assert answer(lookup(IMAGE, rule, env(google), token=TOKEN))[1] == google.federated_token
    assert google.audiences == [audience]


def test_a_pod_that_has_not_opted_in_gets_the_node_identity(google: GoogleFake) -> None:
    item = lookup(
        IMAGE, pod_rule(google), env(google), token=TOKEN, annotations={SERVICE_ACCOUNT_ANNOTATION: GSA}
    )
    assert answer(item)[1] == google.node_token
    assert "sts" not in google.kinds()


def test_opted_in_without_a_pool_fails_closed(google: GoogleFake) -> None:
    item = lookup(IMAGE, GarRule(), env(google), token=TOKEN, annotations={OPT_IN_ANNOTATION: "true"})
    with pytest.raises(CloudCredentialError, match="names no pool") as failed:
        GarBackend().get_credentials(item)
    assert "node's identity is not used" in str(failed.value)
    assert google.requests == []
    assert GarBackend().cache_key(item) is None


def test_a_refused_impersonation_fails_closed_without_secrets(google: GoogleFake) -> None:
    annotations = {
        OPT_IN_ANNOTATION: "true",
        SERVICE_ACCOUNT_ANNOTATION: "other@my-project.iam.gserviceaccount.com",
    }
    item = lookup(IMAGE, pod_rule(google), env(google), token=TOKEN, annotations=annotations)
    with pytest.raises(CloudCredentialError, match=r"HTTP 403.*workloadIdentityUser") as failed:
        GarBackend().get_credentials(item)
    assert google.kinds() == ["sts", "iam"]
    assert all(secret not in str(failed.value) for secret in [TOKEN, *google.secrets()])


def test_a_token_sts_refuses_fails_closed(google: GoogleFake) -> None:
    item = lookup(
        IMAGE, pod_rule(google), env(google), token=OTHER_TOKEN, annotations={OPT_IN_ANNOTATION: "true"}
    )
    with pytest.raises(
        CloudCredentialError, match="STS token exchange for service account team-b/builder"
    ) as failed:
        GarBackend().get_credentials(item)
    assert "invalid_grant" in str(failed.value)
    assert OTHER_TOKEN not in str(failed.value)
    assert "metadata" not in google.kinds()


def test_cache_keys_name_the_identity(google: GoogleFake) -> None:
    rule = pod_rule(google)
    node = GarBackend().cache_key(lookup(IMAGE, rule, env(google)))
    pod = GarBackend().cache_key(
        lookup(
            IMAGE,
            rule,
            env(google),
            token=TOKEN,
            annotations={OPT_IN_ANNOTATION: "true", SERVICE_ACCOUNT_ANNOTATION: GSA},
        )
    )
    federated = GarBackend().cache_key(
        lookup(IMAGE, rule, env(google), token=TOKEN, annotations={OPT_IN_ANNOTATION: "true"})
    )
    assert node == ("node", "default")
    assert pod is not None
    assert federated is not None
    assert len({node, pod, federated}) == 3
    assert AUDIENCE in pod
    assert GSA in pod


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"serviceAccount": "not an email"},
            "rules[0].serviceAccount: expected 'default' or a service account",
        ),
        ({"audience": "https://example.com"}, "rules[0].audience: expected '//iam.googleapis.com/projects/"),
        (
            {"workloadIdentityPool": POOL},
            "rules[0].identityProvider: 'workloadIdentityPool' and 'identityProvider'",
        ),
        (
            {"workloadIdentityPool": "bad", "identityProvider": ISSUER},
            "rules[0].workloadIdentityPool: expected GKE",
        ),
        (
            {"workloadIdentityPool": POOL, "identityProvider": "http://x"},
            "rules[0].identityProvider: expected",
        ),
        ({"audience": AUDIENCE, "workloadIdentityPool": POOL, "identityProvider": ISSUER}, "not both"),
        ({"stsEndpoint": "http://sts.example.com"}, "rules[0].stsEndpoint: expected an https:// URL"),
        ({"iamCredentialsEndpoint": "https://x/v1"}, "rules[0].iamCredentialsEndpoint: expected a URL"),
        ({"podIdentity": "sometimes"}, "podIdentity"),
    ],
)
def test_rule_checks_name_the_field(fields: dict[str, object], message: str) -> None:
    import json

    text = json.dumps(
        {
            "apiVersion": "registry-credential-provider/v1alpha1",
            "kind": "ProviderConfig",
            "rules": [{"backend": "gar", **fields}],
        }
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        decode_config(text.encode(), "config.json")


def test_a_full_rule_is_valid() -> None:
    check_rule(
        "rules[0]",
        GarRule(
            service_account="nodes@p-1.iam.gserviceaccount.com",
            workload_identity_pool=POOL,
            identity_provider=ISSUER,
        ),
    )
    check_rule("rules[0]", GarRule(audience=AUDIENCE, sts_endpoint="https://sts.psc.example"))


# --- the drop-in's flags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["get-credentials", "--v=3"], ["get-credentials", "--v=3"]),
        (["get-credentials", "--authFlow=gcr", "--v=2"], ["get-credentials", "--v=2"]),
        (["get-credentials", "-a", "gcr"], ["get-credentials"]),
        (["get-credentials", "--logtostderr", "--vmodule", "x=2"], ["get-credentials"]),
        (["get-credentials", "--bogus"], ["get-credentials", "--bogus"]),
    ],
)
def test_upstream_flags_are_accepted(argv: list[str], kept: list[str]) -> None:
    assert upstream_args(argv) == kept


@pytest.mark.parametrize("argv", [["--authFlow=dockercfg"], ["-a", "dockercfg-url"], ["--authFlow"]])
def test_unserved_auth_flows_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(ValueError, match=r"authFlow|-a"):
        upstream_args(["get-credentials", *argv])


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_asks_the_metadata_server_and_for_the_token(google: GoogleFake) -> None:
    from provider.backends.gar import SPEC

    findings = SPEC.doctor(GarRule(), env(google), 3.0)
    assert [finding.status for finding in findings] == ["ok", "ok", "warn"]
    assert "valid for 3599s" in findings[1].detail
    assert "no Workload Identity pool" in findings[2].detail
    assert all(google.node_token not in finding.detail for finding in findings)
    assert [r.path for r in google.requests][-1].endswith("/service-accounts/default/token")
    bad = SPEC.doctor(
        GarRule(service_account="absent@p.iam.gserviceaccount.com", pod_identity="never"), env(google), 3.0
    )
    assert [finding.status for finding in bad] == ["ok", "fail"]
    assert "HTTP 404" in bad[1].detail


def test_a_failing_metadata_server_is_an_error_not_a_node_off_google() -> None:
    """A metadata server that says it is Google's but answers 503 (throttled, restarting) is
    there: the lookup fails with a reason, instead of handing the image to the next rule."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Busy(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(CloudCredentialError) as failed:
            GarBackend().get_credentials(
                lookup("gcr.io/p/app", GarRule(), {"GCE_METADATA_HOST": host}, deadline=5.0)
            )
        assert not isinstance(failed.value, NoIdentityError)
    finally:
        server.shutdown()
        server.server_close()
