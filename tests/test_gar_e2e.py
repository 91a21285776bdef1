"""GAR end to end, as on a GKE node: kubelet simulator -> the zipapp -> the Google fakes -> a real
CRI pull.

The registries' htpasswd holds user ``oauth2accesstoken`` with the token the fake metadata
server (or the fake IAM credentials) hands out, and containerd serves Google's hosts from them
on loopback, so the token the plugin gets really authenticates the pull. The plugin reaches the
fakes through ``GCE_METADATA_HOST`` and the rule's endpoints, set as an operator would.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_zipapp
from tests.infra.containerd import Containerd, PullError
from tests.infra.fixtures import RegistryFactory, RegistryFixture
from tests.infra.google import GoogleFake
from tests.kubelet_sim import KubeletSimulator, ProviderStatus, ServiceAccount
from tests.test_ecr_backend import sa_token
from tests.test_ecr_e2e import kubelet_config, ran_cleanly, simulator

pytestmark = pytest.mark.e2e

PROVIDER = "registry-credential-provider"
DROP_IN = "auth-provider-gcp"
NODE_HOST = "europe-docker.pkg.dev"
POD_HOST = "us-docker.pkg.dev"
NODE_TOKEN = "ya29.node-" + secrets.token_urlsafe(24)
POD_TOKEN = "ya29.pod-" + secrets.token_urlsafe(24)
GSA = "puller@my-project.iam.gserviceaccount.com"
POOL = "my-project.svc.id.goog"
ISSUER = "https://container.googleapis.com/v1/projects/my-project/locations/europe-west3/clusters/c1"
AUDIENCE = f"identitynamespace:{POOL}:{ISSUER}"
# What GKE puts in matchImages for auth-provider-gcp.
GKE_MATCH_IMAGES = ["container.cloud.google.com", "gcr.io", "*.gcr.io", "*.pkg.dev"]
SA_TOKEN = sa_token("team-a", "puller", "00000000-0000-0000-0000-000000000001")


@pytest.fixture(scope="module")
def node_registry(registry_factory: RegistryFactory) -> RegistryFixture:
    return registry_factory(users={"oauth2accesstoken": NODE_TOKEN})


@pytest.fixture(scope="module")
def pod_registry(registry_factory: RegistryFactory) -> RegistryFixture:
    return registry_factory(users={"oauth2accesstoken": POD_TOKEN})


@pytest.fixture
def google() -> Iterator[GoogleFake]:
    with GoogleFake(
        node_token=NODE_TOKEN, audience=AUDIENCE, subjects=(SA_TOKEN,), impersonable={GSA: POD_TOKEN}
    ) as fake:
        yield fake


def google_env(fake: GoogleFake, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"GCE_METADATA_HOST": fake.host, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache")}
    env.update(extra)
    return env


def gke_config(name: str, env: dict[str, str], **options: Any) -> dict[str, Any]:
    return kubelet_config(name, env, match_images=GKE_MATCH_IMAGES, **options)


def test_node_token_pulls_through_cri_and_the_disk_cache_serves_a_restart(
    node_registry: RegistryFixture, containerd: Containerd, google: GoogleFake, zipapp: Path, tmp_path: Path
) -> None:
    containerd.map_host(NODE_HOST, node_registry.registry)
    config = gke_config(PROVIDER, google_env(google, tmp_path), args=["get-credentials"])
    image = f"{NODE_HOST}/team/app:v1"

    credentials = simulator(zipapp.parent, config).pull(image)
    assert credentials == [("oauth2accesstoken", NODE_TOKEN)]
    assert containerd.pull_like_kubelet(image, credentials) == node_registry.image.image_id
    assert google.token_requests() == 1

    restarted = simulator(zipapp.parent, config)  # a kubelet restart forgets its own cache
    assert restarted.pull(image) == credentials
    ran_cleanly(restarted)
    response = restarted.results[-1].by_provider(PROVIDER).response
    assert response is not None
    assert response.cache_key_type == "Registry"
    assert 0 < (response.cache_duration or 0) <= 1800 * 10**9  # at most half the token's hour
    assert google.token_requests() == 1, "the disk cache answered the restarted kubelet"

    with pytest.raises(PullError) as refused:
        containerd.pull_like_kubelet(image, [])
    assert refused.value.unauthorized


def test_opted_in_pod_pulls_with_its_google_service_account(
    pod_registry: RegistryFixture, containerd: Containerd, google: GoogleFake, zipapp: Path, tmp_path: Path
) -> None:
    containerd.map_host(POD_HOST, pod_registry.registry)
    ours = tmp_path / "provider.json"
    rule = {
        "backend": "gar",
        "workloadIdentityPool": POOL,
        "identityProvider": ISSUER,
        "stsEndpoint": google.url,
        "iamCredentialsEndpoint": google.url,
    }
    ours.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": [rule]}
        )
    )
    token_attributes = {
        "serviceAccountTokenAudience": POOL,
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
        "optionalServiceAccountAnnotationKeys": [
            "iam.gke.io/gcp-service-account",
            "iam.gke.io/enable-wi-image-pull",
        ],
    }
    config = gke_config(
        PROVIDER,
        google_env(google, tmp_path),
        args=["--config", str(ours)],
        token_attributes=token_attributes,
    )
    sim = simulator(zipapp.parent, config)
    image = f"{POD_HOST}/team/app:v1"
    account = ServiceAccount(
        name="puller",
        namespace="team-a",
        annotations={"iam.gke.io/gcp-service-account": GSA, "iam.gke.io/enable-wi-image-pull": "true"},
        token=SA_TOKEN,
    )

    credentials = sim.pull(image, account)
    ran_cleanly(sim)
    assert credentials == [("oauth2accesstoken", POD_TOKEN)]
    assert containerd.pull_like_kubelet(image, credentials) == pod_registry.image.image_id
    assert google.kinds() == ["sts", "iam"], "the node's metadata server was never asked"


# -- the drop-in --------------------------------------------------------------------------------


@pytest.fixture
def drop_in(zipapp: Path, tmp_path: Path) -> Path:
    bin_dir = tmp_path / "image-credential-provider"
    bin_dir.mkdir()
    shutil.copy2(zipapp, bin_dir / DROP_IN)
    return bin_dir


def test_drop_in_for_the_gke_plugin_pulls_through_cri(
    drop_in: Path, node_registry: RegistryFixture, containerd: Containerd, google: GoogleFake, tmp_path: Path
) -> None:
    containerd.map_host(NODE_HOST, node_registry.registry)
    # A GKE node's provider entry, untouched but for the fake metadata server.
    config = gke_config(
        DROP_IN, google_env(google, tmp_path), args=["get-credentials", "--v=3", "--authFlow=gcr"]
    )
    sim = simulator(drop_in, config)
    image = f"{NODE_HOST}/team/app:v1"

    credentials = sim.pull(image)
    ran_cleanly(sim, DROP_IN)
    assert containerd.pull_like_kubelet(image, credentials) == node_registry.image.image_id


def request(image: str) -> bytes:
    return json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": image,
        }
    ).encode()


def test_drop_in_refuses_look_alikes_and_unknown_flags(
    drop_in: Path, google: GoogleFake, tmp_path: Path
) -> None:
    env = google_env(google, tmp_path)
    for host in ("gcr.io.evil.example", "evilgcr.io"):
        result = run_zipapp(drop_in / DROP_IN, ["get-credentials"], request(f"{host}/p/app"), env=env)
        assert result.returncode == 1
        assert result.stdout == b""
        assert b"is not a Google registry host" in result.stderr
    assert google.requests == [], "a look-alike never reaches the metadata server"

    for args in (["get-credentials", "--bogus"], ["get-credentials", "--authFlow=dockercfg"]):
        result = run_zipapp(drop_in / DROP_IN, args, request("gcr.io/p/app"), env=env)
        assert result.returncode == 2, result.stderr
        assert result.stdout == b""
    assert google.requests == []


def test_drop_in_name_alone_does_not_change_our_own_binary(
    zipapp: Path, google: GoogleFake, tmp_path: Path
) -> None:
    """Under its own name the binary keeps its embedded default: a look-alike goes to docker config."""
    result = run_zipapp(
        zipapp, ["get-credentials"], request("evilgcr.io/p/app"), env=google_env(google, tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auth"] == {}
    assert google.requests == []


def test_kubelet_sees_a_failed_opt_in_as_a_rejection(
    google: GoogleFake, zipapp: Path, tmp_path: Path
) -> None:
    """Opted in, but the embedded default names no pool: the pull fails, never the node's token."""
    token_attributes = {
        "serviceAccountTokenAudience": POOL,
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
        "optionalServiceAccountAnnotationKeys": ["iam.gke.io/enable-wi-image-pull"],
    }
    sim: KubeletSimulator = simulator(
        zipapp.parent, gke_config(PROVIDER, google_env(google, tmp_path), token_attributes=token_attributes)
    )
    account = ServiceAccount(
        name="puller",
        namespace="team-a",
        annotations={"iam.gke.io/enable-wi-image-pull": "true"},
        token=SA_TOKEN,
    )
    assert sim.pull(f"{NODE_HOST}/p/app", account) == []
    result = sim.results[-1].by_provider(PROVIDER)
    assert result.status is ProviderStatus.REJECTED
    assert result.exec is not None
    assert b"names no pool" in result.exec.stderr
    assert google.requests == []
