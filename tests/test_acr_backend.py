"""The ``acr`` backend against loopback fakes of IMDS, Entra ID and an ACR (its token realm in
front of a real CNCF distribution registry): each identity, the hosts it takes and refuses, and
the faults (exchange 401, IMDS down or slow, wrong tenant, expired assertion, no ``service``)."""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.azure.exchange import token_expiry
from provider.azure.hosts import is_login_server
from provider.backends.acr import MIRRORS_ENV, AcrBackend, AcrRule, check_rule, doctor
from provider.errors import CloudCredentialError, ConfigError, NoIdentityError
from tests.infra.azure import (
    ACR_USERNAME,
    FOREIGN_CLIENT,
    POD_CLIENT,
    SP_CLIENT,
    SP_SECRET,
    TENANT,
    UAMI_CLIENT,
    UAMI_RESOURCE,
    AppServiceIdentity,
    AzureWorld,
    jwt_claims,
    start_azure,
    unsigned_jwt,
)
from tests.test_backend_contract import lookup
from tests.test_ecr_backend import sa_token

CLIENT_ANNOTATION = "kubernetes.azure.com/acr-client-id"
TENANT_ANNOTATION = "azure.workload.identity/tenant-id"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureWorld]:
    found = start_azure(tmp_path_factory.mktemp("azure"))
    yield found
    found.stop()


@pytest.fixture
def env(world: AzureWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The fakes' endpoints in os.environ too (azure-identity reads it), no cloud config."""
    for key, value in world.environ.items():
        monkeypatch.setenv(key, value)
    world.acr.exchange_status = None
    world.acr.refresh_exp = True
    world.imds.mode = "ok"
    return {**world.environ, "HOME": str(tmp_path)}


def azure_json(tmp_path: Path, **fields: object) -> str:
    path = tmp_path / "azure.json"
    path.write_text(json.dumps({"cloud": "AzurePublicCloud", "tenantId": TENANT, **fields}))
    return str(path)


def rule_for(world: AzureWorld, **fields: object) -> AcrRule:
    fields.setdefault("azure_config", "/nonexistent/azure.json")
    return AcrRule(match=[world.login_server], **fields)  # type: ignore[arg-type]


def pull_token(world: AzureWorld, password: str) -> int:
    """What the registry's realm answers a runtime holding the credential (200: it may pull)."""
    import base64
    import ssl
    import urllib.request

    basic = base64.b64encode(f"{ACR_USERNAME}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{world.acr.realm}?service={world.acr.service}&scope=repository:app:pull",
        headers={"Authorization": f"Basic {basic}"},
    )
    context = ssl.create_default_context(cafile=str(world.tls.ca_cert))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


# --- identities ---------------------------------------------------------------------------------


def test_system_assigned_identity_without_a_cloud_config(world: AzureWorld, env: dict[str, str]) -> None:
    before = len(world.imds.token_requests())
    answer = AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), env))
    credential = answer.credential
    assert credential is not None
    assert credential.username == ACR_USERNAME
    assert pull_token(world, credential.password) == 200
    [request] = world.imds.token_requests()[before:]
    assert request["query"] == ["api-version", "resource"]  # no client_id: the system identity
    assert answer.cacheable
    assert answer.depends_on == ()


def test_user_assigned_identity_from_azure_json(
    world: AzureWorld, env: dict[str, str], tmp_path: Path
) -> None:
    path = azure_json(tmp_path, useManagedIdentityExtension=True, userAssignedIdentityID=UAMI_CLIENT)
    before = len(world.imds.token_requests())
    answer = AcrBackend().get_credentials(
        lookup(f"{world.login_server}/app", rule_for(world, azure_config=path), env)
    )
    assert answer.credential is not None
    assert answer.depends_on == (path,)
    [request] = world.imds.token_requests()[before:]
    assert "client_id" in request["query"]
    [exchange] = world.acr.exchanges()[-1:]
    assert "tenant" in exchange["fields"]


def test_user_assigned_identity_by_resource_id(world: AzureWorld, env: dict[str, str]) -> None:
    before = len(world.imds.token_requests())
    rule = rule_for(world, resource_id=UAMI_RESOURCE)
    answer = AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule, env))
    assert answer.credential is not None
    [request] = world.imds.token_requests()[before:]
    assert "client_id" not in request["query"]
    assert {"mi_res_id", "msi_res_id"} & set(request["query"])


def test_service_principal_from_azure_json(world: AzureWorld, env: dict[str, str], tmp_path: Path) -> None:
    path = azure_json(tmp_path, aadClientId=SP_CLIENT, aadClientSecret=SP_SECRET)
    imds_before = len(world.imds.requests)
    answer = AcrBackend().get_credentials(
        lookup(f"{world.login_server}/app", rule_for(world, azure_config=path), env)
    )
    assert answer.credential is not None
    assert pull_token(world, answer.credential.password) == 200
    assert len(world.imds.requests) == imds_before, "a service principal needs no IMDS"
    assert "client_secret" in world.entra.token_requests()[-1]["fields"]


def test_pod_identity_uses_the_token_as_client_assertion(world: AzureWorld, env: dict[str, str]) -> None:
    token = unsigned_jwt({"exp": int(time.time()) + 600, "sub": "system:serviceaccount:team-a:puller"})
    annotations = {CLIENT_ANNOTATION: POD_CLIENT, TENANT_ANNOTATION: TENANT}
    imds_before = len(world.imds.requests)
    found = lookup(f"{world.login_server}/app", rule_for(world), env, token=token, annotations=annotations)
    answer = AcrBackend().get_credentials(found)
    assert answer.credential is not None
    assert pull_token(world, answer.credential.password) == 200
    assert len(world.imds.requests) == imds_before
    fields = world.entra.token_requests()[-1]["fields"]
    assert "client_assertion" in fields
    assert "client_secret" not in fields


def test_the_refresh_tokens_expiry_bounds_the_answer(world: AzureWorld, env: dict[str, str]) -> None:
    found = lookup(f"{world.login_server}/app", rule_for(world), env)
    answer = AcrBackend().get_credentials(found)
    credential = answer.credential
    assert credential is not None
    assert credential.expires_at is not None
    assert credential.expires_at == token_expiry(credential.password)
    assert answer.cache_seconds == pytest.approx((credential.expires_at - found.now()) / 2)
    world.acr.refresh_exp = False
    answer = AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), env))
    assert answer.credential is not None
    assert answer.credential.expires_at is not None
    assert "exp" not in (jwt_claims(answer.credential.password) or {})
    assert answer.credential.expires_at - found.now() == pytest.approx(3 * 3600, abs=5)


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["team.azurecr.io", "teamreg-abcd1234.azurecr.io", "teamreg.westeurope.geo.azurecr.io", "team1.azurecr.cn",
     "team1.azurecr.us", "team1.azurecr.io:443"],
)  # fmt: skip
def test_login_servers(host: str) -> None:
    assert is_login_server(host)


@pytest.mark.parametrize(
    "host",
    ["team.azurecr.io.evil.example", "azurecr.io", "a.b.azurecr.io", "team.azurecr.io:5000", "-team.azurecr.io",
     "team_x.azurecr.io", "team.westeurope.data.azurecr.io", "evilazurecr.io", "team.azurecr.de"],
)  # fmt: skip
def test_look_alikes_never_reach_entra_or_imds(world: AzureWorld, env: dict[str, str], host: str) -> None:
    assert not is_login_server(host)
    before = world.all_requests()
    rule = AcrRule(match=["*.azurecr.io", "*.*.azurecr.io"], azure_config="/nonexistent")
    backend = AcrBackend()
    found = lookup(f"{host}/app", rule, env)
    assert backend.cache_key(found) is None
    with pytest.raises(CloudCredentialError, match="not an Azure Container Registry login server"):
        backend.get_credentials(found)
    assert world.all_requests() == before


def test_a_custom_suffix_from_the_rule() -> None:
    assert is_login_server("team.azurecr.example.gov", ["azurecr.example.gov"])
    assert not is_login_server("team.azurecr.example.gov")


def test_a_mirror_is_served_from_the_acr_under_its_own_name(world: AzureWorld, env: dict[str, str]) -> None:
    rule = AcrRule(match=["mcr.microsoft.com"], azure_config="/nonexistent", registry_mirrors={})
    mirrored = {**env, MIRRORS_ENV: f"mcr.microsoft.com:{world.login_server}"}
    before = len(world.acr.exchanges())
    answer = AcrBackend().get_credentials(lookup("mcr.microsoft.com/dotnet/runtime", rule, mirrored))
    assert answer.credential is not None
    assert pull_token(world, answer.credential.password) == 200
    assert len(world.acr.exchanges()) == before + 1


# --- faults -------------------------------------------------------------------------------------


def test_exchange_401_is_one_line_without_the_token(world: AzureWorld, env: dict[str, str]) -> None:
    world.acr.exchange_status = 401
    with pytest.raises(CloudCredentialError) as caught:
        AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), env))
    message = str(caught.value)
    assert "answered 401" in message
    assert "pull role" in message
    assert "\n" not in message
    assert not any(token in message for token in world.book.secrets())


def test_imds_down_is_no_identity_quickly(world: AzureWorld, env: dict[str, str]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    down = {**env, "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{port}"}
    with pytest.raises(NoIdentityError, match="no Azure identity for the node"):
        AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), down))


def test_imds_slow_ends_within_the_deadline(world: AzureWorld, env: dict[str, str], tmp_path: Path) -> None:
    world.imds.mode = "hang"
    path = azure_json(tmp_path, useManagedIdentityExtension=True)  # on Azure: no presence probe
    with pytest.raises(CloudCredentialError, match="within"):
        AcrBackend().get_credentials(
            lookup(f"{world.login_server}/app", rule_for(world, azure_config=path), env, deadline=1.5)
        )


def test_wrong_tenant_is_refused(world: AzureWorld, env: dict[str, str]) -> None:
    token = unsigned_jwt({"exp": int(time.time()) + 600})
    annotations = {CLIENT_ANNOTATION: FOREIGN_CLIENT, TENANT_ANNOTATION: TENANT}
    found = lookup(f"{world.login_server}/app", rule_for(world), env, token=token, annotations=annotations)
    with pytest.raises(CloudCredentialError, match="AADSTS700016") as caught:
        AcrBackend().get_credentials(found)
    assert token not in str(caught.value)


def test_an_expired_assertion_is_refused(world: AzureWorld, env: dict[str, str]) -> None:
    token = unsigned_jwt({"exp": int(time.time()) - 60})
    annotations = {CLIENT_ANNOTATION: POD_CLIENT, TENANT_ANNOTATION: TENANT}
    found = lookup(f"{world.login_server}/app", rule_for(world), env, token=token, annotations=annotations)
    with pytest.raises(CloudCredentialError, match="AADSTS700024") as caught:
        AcrBackend().get_credentials(found)
    assert token not in str(caught.value)


def test_a_challenge_without_service(world: AzureWorld, env: dict[str, str]) -> None:
    from provider.azure.exchange import _realm
    from provider.registryclient import Response

    response = Response(
        url="https://team.azurecr.io/v2/",
        status=401,
        headers=[("WWW-Authenticate", 'Bearer realm="https://team.azurecr.io/oauth2/token"')],
        body=b"",
    )
    with pytest.raises(CloudCredentialError, match="without 'service'"):
        _realm("team.azurecr.io", response, ())


def test_a_realm_on_another_host_never_gets_the_token() -> None:
    from provider.azure.exchange import _realm
    from provider.registryclient import Response

    response = Response(
        url="https://team.azurecr.io/v2/",
        status=401,
        headers=[("WWW-Authenticate", 'Bearer realm="https://evil.example/oauth2/token",service="x"')],
        body=b"",
    )
    with pytest.raises(CloudCredentialError, match="not sent there"):
        _realm("team.azurecr.io", response, ())


def test_require_pod_identity_fails_closed(world: AzureWorld, env: dict[str, str]) -> None:
    before = world.all_requests()
    found = lookup(
        f"{world.login_server}/app", rule_for(world, require_pod_identity=True), env, token=sa_token()
    )
    with pytest.raises(CloudCredentialError, match="requirePodIdentity"):
        AcrBackend().get_credentials(found)
    assert world.all_requests() == before


# --- App Service's managed identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER) --------------

IDENTITY_HEADER = "app-service-identity-header-that-must-never-leak"


@pytest.fixture
def app_service(
    world: AzureWorld, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AppServiceIdentity, dict[str, str]]]:
    """The App Service endpoint, in os.environ (azure-identity reads it) and the lookup's environment."""
    fake = AppServiceIdentity(world.book, TENANT, IDENTITY_HEADER)
    monkeypatch.setenv("IDENTITY_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    yield fake, {**env, "IDENTITY_ENDPOINT": fake.endpoint, "IDENTITY_HEADER": IDENTITY_HEADER}
    fake.stop()


def test_app_service_managed_identity_instead_of_imds(
    world: AzureWorld, app_service: tuple[AppServiceIdentity, dict[str, str]]
) -> None:
    fake, environ = app_service
    imds_before = len(world.imds.requests)
    answer = AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), environ))
    assert answer.credential is not None
    assert answer.credential.username == ACR_USERNAME
    assert pull_token(world, answer.credential.password) == 200
    [request] = fake.requests
    assert request == {"path": "/msi/token", "query": ["api-version", "resource"], "header_ok": True}
    assert world.imds.requests[imds_before:] == []  # neither the presence probe nor a token request


def test_app_service_refusing_the_header_is_one_line_without_it(
    world: AzureWorld, app_service: tuple[AppServiceIdentity, dict[str, str]]
) -> None:
    fake, environ = app_service
    fake.header = "another-header-value"
    with pytest.raises(CloudCredentialError) as caught:
        AcrBackend().get_credentials(lookup(f"{world.login_server}/app", rule_for(world), environ))
    message = str(caught.value)
    assert message.startswith("Entra ID refused a token for ")
    assert "\n" not in message
    assert IDENTITY_HEADER not in message
    assert fake.requests[0]["header_ok"] is False


# --- doctor: IMDS and the exchange --------------------------------------------------------------


def test_doctor_probes_imds_and_the_exchange(world: AzureWorld, env: dict[str, str]) -> None:
    exchanges = len(world.acr.exchanges())
    [presence, exchange] = doctor(rule_for(world), env, 10.0)
    assert presence.status == "ok"
    assert "Azure IMDS answered 200" in presence.detail
    assert exchange.status == "ok"
    assert exchange.detail.startswith(f"{world.login_server}: the exchange gave a refresh token valid ")
    assert len(world.acr.exchanges()) == exchanges + 1
    assert not any(token in str([presence, exchange]) for token in world.book.secrets())


def test_doctor_shows_an_exchange_401_without_a_token(world: AzureWorld, env: dict[str, str]) -> None:
    world.acr.exchange_status = 401
    [presence, exchange] = doctor(rule_for(world), env, 10.0)
    assert presence.status == "ok"
    assert exchange.status == "fail"
    assert exchange.detail.startswith(f"{world.login_server}: ")
    assert "answered 401" in exchange.detail
    assert "\n" not in exchange.detail
    assert not any(token in exchange.detail for token in world.book.secrets())


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_doctor_shows_an_unreachable_login_server(world: AzureWorld, env: dict[str, str]) -> None:
    server = f"127.0.0.1:{_closed_port()}"
    exchanges = len(world.acr.exchanges())
    [presence, exchange] = doctor(AcrRule(match=[server], azure_config="/nonexistent/azure.json"), env, 5.0)
    assert presence.status == "ok"
    assert exchange.status == "fail"
    assert exchange.detail.startswith(f"{server}: ")
    assert "\n" not in exchange.detail
    assert len(world.acr.exchanges()) == exchanges
    assert not any(token in exchange.detail for token in world.book.secrets())


@pytest.mark.parametrize("on_no_identity", ["fail", "next"])
def test_doctor_with_imds_unreachable(world: AzureWorld, env: dict[str, str], on_no_identity: str) -> None:
    down = {**env, "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{_closed_port()}"}
    before = world.all_requests()
    rule = rule_for(world, on_no_identity=on_no_identity)
    [finding] = doctor(rule, down, 2.0)
    assert "Azure IMDS at http://127.0.0.1:" in finding.detail
    if on_no_identity == "next":
        assert finding.status == "ok"
        assert "its images go to the next matching rule" in finding.detail
    else:
        assert finding.status == "fail"
    assert world.all_requests() == before  # no exchange without an identity


# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cloud": "Mars"}, r"\$\.rules\[0\]\.cloud"),
        ({"client_id": "nope"}, r"\$\.rules\[0\]\.clientId"),
        ({"client_id": UAMI_CLIENT, "resource_id": UAMI_RESOURCE}, "not both"),
        ({"resource_id": "/x"}, r"\.resourceId"),
        ({"registry_suffixes": ("bad suffix",)}, r"\.registrySuffixes\[0\]"),
        ({"registry_mirrors": {"mcr.microsoft.com": "evil.example"}}, r"\.registryMirrors"),
        ({"azure_config": "relative.json"}, r"\.azureConfig"),
        ({"client_id_annotations": ("Not A Key!",)}, r"\.clientIdAnnotations\[0\]"),
    ],
)
def test_check_rule(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        check_rule("$.rules[0]", AcrRule(**fields))  # type: ignore[arg-type]


def test_no_secret_in_reprs(tmp_path: Path) -> None:
    from provider.azure.cloudconfig import read_azure_config

    config = read_azure_config(azure_json(tmp_path, aadClientId=SP_CLIENT, aadClientSecret=SP_SECRET))
    assert config is not None
    assert SP_SECRET not in repr(config)
    assert os.environ.get("AZURE_CLIENT_SECRET") is None


def test_a_refused_entra_token_is_one_line_on_stderr_through_the_zipapp(
    world: AzureWorld, app_service: tuple[AppServiceIdentity, dict[str, str]], zipapp: Path, tmp_path: Path
) -> None:
    """azure-identity logs its own warning for a failed token; nothing but our line may reach stderr."""
    from tests.conftest import run_zipapp

    fake, environ = app_service
    fake.header = "another-header-value"
    config = tmp_path / "provider.yaml"
    config.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules:\n"
        f"  - match: ['{world.login_server}']\n    backend: acr\n    azureConfig: /nonexistent/azure.json\n"
    )
    request = json.dumps(
        {
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": f"{world.login_server}/app",
        }
    ).encode()
    env = {key: environ[key] for key in (*world.environ, "IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(tmp_path / "cache")
    result = run_zipapp(zipapp, ["--config", str(config)], request, env)
    assert result.returncode == 1
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("registry-credential-provider: error: Entra ID refused a token for ")
    assert "IDENTITY_ENDPOINT" in line  # which endpoint was asked, not IMDS
    assert IDENTITY_HEADER not in line


def test_the_sdks_retry_backoff_is_drawn_per_exec_within_its_spread() -> None:
    """azure-core's backoff has no jitter: the factor itself is drawn, so nodes that fail together
    retry apart (make reliability sees the pauses differ between execs)."""
    from provider.azure import entra

    factors = {entra._pipeline(5.0, random.Random(seed))["retry_backoff_factor"] for seed in range(20)}
    assert len(factors) == 20
    low, high = (entra.BACKOFF_SECONDS * bound for bound in entra.BACKOFF_SPREAD)
    assert all(low <= factor <= high for factor in factors)
