"""ACR end to end, as on an AKS node: kubelet simulator -> the zipapp -> IMDS / Entra ID / ACR
fakes -> a real containerd CRI pull as ``00000000-...`` with the refresh token.

The registry is a real CNCF distribution registry with token auth whose realm is the ACR fake;
the refresh token the plugin gets from the exchange is what containerd presents to the realm,
so only a credential the exchange really issued lets the pull through.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kubelet_environ
from tests.infra.azure import (
    ACR_USERNAME,
    PUSHER_PASSWORD,
    SP_CLIENT,
    SP_SECRET,
    TENANT,
    AzureWorld,
    start_azure,
)
from tests.infra.containerd import Containerd, PullError
from tests.infra.images import build_test_image, push_image
from tests.kubelet_sim import KubeletSimulator, ProviderStatus

pytestmark = pytest.mark.e2e

V1 = "credentialprovider.kubelet.k8s.io/v1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureWorld]:
    found = start_azure(tmp_path_factory.mktemp("azure-e2e"))
    image = build_test_image(tmp_path_factory.mktemp("acr-image"))
    push_image(image, found.registry, "team/app:v1", username="pusher", password=PUSHER_PASSWORD)  # type: ignore[arg-type]
    found.image_id = image.image_id  # type: ignore[attr-defined]
    yield found
    found.stop()


def kubelet_config(name: str, world: AzureWorld, tmp_path: Path, args: list[str]) -> dict[str, Any]:
    env = {**world.environ, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache")}
    provider = {
        "name": name,
        "apiVersion": V1,
        "matchImages": [
            "*.azurecr.io",
            "*.azurecr.cn",
            "*.azurecr.us",
            "mcr.microsoft.com",
            world.login_server,
        ],
        "defaultCacheDuration": "10m",
        "args": args,
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    return {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [provider],
    }


def pull_through_cri(
    sim: KubeletSimulator, name: str, world: AzureWorld, containerd: Containerd, host: str = ""
) -> None:
    host = host or world.login_server
    image = f"{host}/team/app:v1"
    credentials = sim.pull(image)
    result = sim.results[-1].by_provider(name)
    assert result.status is ProviderStatus.OK, result.exec.stderr if result.exec else result.reason
    assert [user for user, _ in credentials] == [ACR_USERNAME]
    assert list(sim.results[-1].by_provider(name).auth) == [host]  # answered under the name asked for
    containerd.map_host(host, world.registry)  # type: ignore[arg-type]
    assert containerd.pull_like_kubelet(image, credentials) == world.image_id  # type: ignore[attr-defined]


def test_managed_identity_through_our_config(
    zipapp: Path, world: AzureWorld, containerd: Containerd, tmp_path: Path
) -> None:
    config = tmp_path / "provider.json"
    rule = {"match": [world.login_server], "backend": "acr", "azureConfig": str(tmp_path / "none.json")}
    config.write_text(json.dumps({"apiVersion": "registry-credential-provider/v1alpha1",
                                  "kind": "ProviderConfig", "rules": [rule]}))  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy2(zipapp, bin_dir / "registry-credential-provider")
    sim = KubeletSimulator(
        kubelet_config("registry-credential-provider", world, tmp_path, ["--config", str(config)]),
        bin_dir,
        base_env=kubelet_environ(),
    )
    exchanges = len(world.acr.exchanges())
    pull_through_cri(sim, "registry-credential-provider", world, containerd)
    assert len(world.acr.exchanges()) == exchanges + 1
    with pytest.raises(PullError):  # the registry refuses what the exchange did not issue
        containerd.pull_like_kubelet(f"{world.login_server}/team/app:v1", [(ACR_USERNAME, "e30.e30.e30")])


def test_drop_in_for_the_upstream_plugin(
    zipapp: Path, world: AzureWorld, containerd: Containerd, tmp_path: Path
) -> None:
    azure_json = tmp_path / "azure.json"
    azure_json.write_text(json.dumps({"cloud": "AzurePublicCloud", "tenantId": TENANT,
                                      "aadClientId": SP_CLIENT, "aadClientSecret": SP_SECRET}))  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy2(zipapp, bin_dir / "acr-credential-provider")
    # AKS's kubelet config, untouched but for the test endpoints: the cloud config and a mirror.
    args = [str(azure_json), f"--registry-mirror=mcr.microsoft.com:{world.login_server}"]
    sim = KubeletSimulator(
        kubelet_config("acr-credential-provider", world, tmp_path, args), bin_dir, base_env=kubelet_environ()
    )
    entra = len(world.entra.token_requests())
    # The drop-in's rule has no 'match': the loopback ACR serves only through the mirror mapping.
    pull_through_cri(sim, "acr-credential-provider", world, containerd, "mcr.microsoft.com")
    assert len(world.entra.token_requests()) == entra + 1  # the service principal of azure.json
    stderr = sim.results[-1].by_provider("acr-credential-provider").exec.stderr  # type: ignore[union-attr]
    assert SP_SECRET.encode() not in stderr
