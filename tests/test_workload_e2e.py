"""Per-workload credentials end to end: kubelet simulator in token mode -> the zipapp -> a real
containerd CRI pull from the test registry.

Two namespaces pull from one registry host; the registry knows one robot per namespace. Each
pod must get its own namespace's robot on every pull (the kubelet's cache keys by service
account, ours by the caller's identity), a namespace without a rule gets nothing and its
pull is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kubelet_environ
from tests.infra.containerd import Containerd, PullError
from tests.infra.fixtures import RegistryFactory, RegistryFixture
from tests.infra.vault import VaultFake, VaultRole
from tests.kubelet_sim import KubeletSimulator, ProviderStatus, ServiceAccount
from tests.test_ecr_backend import sa_token

pytestmark = pytest.mark.e2e

V1 = "credentialprovider.kubelet.k8s.io/v1"
PROVIDER = "registry-credential-provider"
ROBOT_A = ("robot-team-a", "password-of-team-a-robot")
ROBOT_B = ("robot-team-b", "password-of-team-b-robot")
TOKEN_ATTRIBUTES = {
    "serviceAccountTokenAudience": "registry-credential-provider",
    "cacheType": "ServiceAccount",
    "requireServiceAccount": False,
}


@pytest.fixture(scope="module")
def registry(registry_factory: RegistryFactory) -> RegistryFixture:
    return registry_factory(users=dict([ROBOT_A, ROBOT_B]))


def account(namespace: str, name: str = "puller") -> ServiceAccount:
    uid = f"uid-{namespace}-{name}"
    return ServiceAccount(name=name, namespace=namespace, uid=uid, token=sa_token(namespace, name, uid))


def docker_config(host: str, robot: tuple[str, str]) -> str:
    return json.dumps({"auths": {host: {"username": robot[0], "password": robot[1]}}})


def simulator(zipapp: Path, tmp_path: Path, ours: dict[str, Any], host: str) -> KubeletSimulator:
    config_file = tmp_path / "provider.json"
    config_file.write_text(
        json.dumps({"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", **ours})
    )
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache")}
    provider = {
        "name": PROVIDER,
        "apiVersion": V1,
        "matchImages": [host],
        "defaultCacheDuration": "1h",
        "args": ["get-credentials", "--config", str(config_file)],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "tokenAttributes": TOKEN_ATTRIBUTES,
    }
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [provider],
    }
    return KubeletSimulator(config, zipapp.parent, base_env=kubelet_environ())


def pulls_as(sim: KubeletSimulator, containerd: Containerd, registry: RegistryFixture) -> None:
    """Team A and team B pull alternately, twice, then again after a kubelet restart (its cache
    lost, ours kept): each gets its own robot every time, and the robot really pulls."""
    image = f"{registry.host}/team/app:v1"
    for restart in (False, True):
        if restart:
            sim.restart()
        for again in (False, True):
            for who, robot in ((account("team-a"), ROBOT_A), (account("team-b"), ROBOT_B)):
                credentials = sim.pull(image, who)
                result = sim.results[-1].by_provider(PROVIDER)
                expected = ProviderStatus.CACHE_HIT if again else ProviderStatus.OK
                assert result.status is expected, result.reason
                assert credentials == [robot], who.namespace
    assert containerd.pull_like_kubelet(image, [ROBOT_A]) == registry.image.image_id
    assert containerd.pull_like_kubelet(image, [ROBOT_B]) == registry.image.image_id
    # Another namespace: no rule for it, no credentials, and the registry refuses it.
    assert sim.pull(image, account("team-c")) == []
    assert sim.results[-1].by_provider(PROVIDER).status is ProviderStatus.OK
    with pytest.raises(PullError) as refused:
        containerd.pull_like_kubelet(f"{registry.host}/other/app:v1", [])
    assert refused.value.unauthorized
    # Without a token (token mode off for this pull): identity rules never match.
    assert sim.pull(image) == []


def test_identity_rules_give_each_namespace_its_own_robot(
    registry: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.json").write_text(docker_config(registry.host, ROBOT_A))
    (tmp_path / "b.json").write_text(docker_config(registry.host, ROBOT_B))
    rules = [
        {
            "match": [registry.host],
            "namespaces": ["team-a"],
            "backend": "dockerconfig",
            "files": [str(tmp_path / "a.json")],
        },
        {
            "match": [registry.host],
            "serviceAccounts": ["team-b/puller"],
            "backend": "dockerconfig",
            "files": [str(tmp_path / "b.json")],
        },
    ]
    pulls_as(simulator(zipapp, tmp_path, {"rules": rules}, registry.host), containerd, registry)


def test_files_backend_gives_each_namespace_its_file(
    registry: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    workloads = tmp_path / "workloads"
    for namespace, robot in (("team-a", ROBOT_A), ("team-b", ROBOT_B)):
        (workloads / namespace).mkdir(parents=True)
        (workloads / namespace / "puller.json").write_text(docker_config(registry.host, robot))
    rules = [
        {
            "match": [registry.host],
            "backend": "files",
            "paths": [f"{workloads}/{{namespace}}/{{serviceAccount}}.json"],
        }
    ]
    pulls_as(simulator(zipapp, tmp_path, {"rules": rules}, registry.host), containerd, registry)


def test_vault_backend_gives_each_namespace_its_secret(
    registry: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    vault = VaultFake().start()
    try:
        vault.mount(
            "kubernetes",
            "kubernetes",
            {"puller": VaultRole(paths=("registry/{namespace}/{serviceAccount}",))},
        )
        vault.put_secret("registry/team-a/puller", {"username": ROBOT_A[0], "password": ROBOT_A[1]})
        vault.put_secret("registry/team-b/puller", {"username": ROBOT_B[0], "password": ROBOT_B[1]})
        for namespace in ("team-a", "team-b", "team-c"):
            vault.trusted_jwts.add(str(account(namespace).token))
        rules = [{"match": [registry.host], "backend": "vault", "address": vault.url, "role": "puller"}]
        sim = simulator(zipapp, tmp_path, {"rules": rules}, registry.host)
        pulls_as(sim, containerd, registry)
        logins = [call for call in vault.requests if call.path == "/v1/auth/kubernetes/login"]
        # One login per namespace: the kubelet's cache, then ours (after the restart), answer the rest.
        assert (
            len([c for c in logins if c.status == 200]) == 3
        )  # team-a, team-b, team-c (its secret is missing)
        assert [c.status for c in vault.requests if c.path.endswith("/registry/team-c/puller")] == [404]
    finally:
        vault.stop()
