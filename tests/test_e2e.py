"""End to end, as on a node: kubelet simulator -> zipapp -> credentials -> a real pull.

A real CNCF distribution registry (htpasswd, over http and over TLS with a test CA) holds a
pushed image; the kubelet simulator execs the built zipapp with a CredentialProviderConfig's
args and env; the credentials it hands over go to containerd's CRI ``PullImage`` (the
kubelet's own call) and to skopeo. Wrong or missing credentials must make the pull fail.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kubelet_environ
from tests.infra.containerd import Containerd, PullError
from tests.infra.fixtures import RegistryFixture
from tests.infra.images import skopeo_inspect
from tests.kubelet_sim import KubeletSimulator, ProviderStatus

pytestmark = pytest.mark.e2e

V1 = "credentialprovider.kubelet.k8s.io/v1"
PROVIDER = "registry-credential-provider"


def kubelet_config(
    match_images: list[str], args: list[str], *, env: dict[str, str] | None = None, api_version: str = V1
) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": PROVIDER,
        "apiVersion": api_version,
        "matchImages": match_images,
        "defaultCacheDuration": "12h",
        "args": args,
    }
    if env:
        provider["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [provider],
    }


def our_config(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "provider.yaml"
    path.write_text(
        f"apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules:\n{rules}"
    )
    return path


def docker_config(tmp_path: Path, entries: dict[str, tuple[str, str]], name: str = "config.json") -> Path:
    auths = {key: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for key, (u, p) in entries.items()}
    path = tmp_path / name
    path.write_text(json.dumps({"auths": auths}))
    path.chmod(0o600)
    return path


def simulator(zipapp: Path, config: dict[str, Any]) -> KubeletSimulator:
    return KubeletSimulator(config, zipapp.parent, base_env=kubelet_environ())


def plugin_ran_cleanly(sim: KubeletSimulator) -> None:
    """The last pull ran our plugin and the kubelet accepted its response."""
    result = sim.results[-1].by_provider(PROVIDER)
    assert result is not None
    assert result.status is ProviderStatus.OK, (
        f"{result.reason}; plugin stderr: {result.exec.stderr if result.exec else ''!r}"
    )


@pytest.mark.parametrize("transport", ["http", "tls"])
def test_docker_config_credentials_pull_through_cri(
    transport: str,
    registry_http: RegistryFixture,
    registry_tls: RegistryFixture,
    containerd: Containerd,
    zipapp: Path,
    tmp_path: Path,
) -> None:
    registry = registry_tls if transport == "tls" else registry_http
    scheme = "https" if registry.tls else "http"
    files = docker_config(tmp_path, {f"{scheme}://{registry.host}/v2/": registry.creds})
    config = our_config(
        tmp_path, f"  - match: ['{registry.host}']\n    backend: dockerconfig\n    files: [{files}]\n"
    )
    sim = simulator(zipapp, kubelet_config([registry.host], ["get-credentials", "--config", str(config)]))

    image = registry.ref("team/app:v1")
    credentials = sim.pull(image)
    plugin_ran_cleanly(sim)
    assert len(credentials) == 1
    assert containerd.pull_like_kubelet(image, credentials) == registry.image.image_id

    inspected = skopeo_inspect(f"docker://{image}", creds=credentials[0], registry=registry.registry)
    assert inspected.returncode == 0, inspected.stderr


def test_credential_helper_pull_over_tls(
    registry_tls: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-e2e"
    username, password = registry_tls.creds
    calls = tmp_path / "calls"
    reply = json.dumps({"ServerURL": registry_tls.host, "Username": username, "Secret": password})
    helper.write_text(f"#!/bin/sh\nread server\necho \"$server\" >> {calls}\ncat <<'EOF'\n{reply}\nEOF\n")
    helper.chmod(0o700)
    files = tmp_path / "config.json"
    files.write_text(json.dumps({"credHelpers": {registry_tls.host: "e2e"}}))
    config = our_config(tmp_path, f"  - backend: dockerconfig\n    files: [{files}]\n")
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    sim = simulator(zipapp, kubelet_config([registry_tls.host], ["--config", str(config)], env=env))

    image = registry_tls.ref("other/app:v1")
    credentials = sim.pull(image)
    plugin_ran_cleanly(sim)
    assert calls.read_text() == f"{registry_tls.host}\n"
    assert containerd.pull_like_kubelet(image, credentials) == registry_tls.image.image_id


def test_wrong_credentials_fail_the_pull(
    registry_http: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    files = docker_config(tmp_path, {registry_http.host: (registry_http.username, "not-the-password")})
    config = our_config(tmp_path, f"  - backend: dockerconfig\n    files: [{files}]\n")
    sim = simulator(zipapp, kubelet_config([registry_http.host], ["--config", str(config)]))

    image = registry_http.ref("team/app:v1")
    credentials = sim.pull(image)
    plugin_ran_cleanly(sim)
    assert credentials == [(registry_http.username, "not-the-password")]
    with pytest.raises(PullError) as failed:
        containerd.pull_like_kubelet(image, credentials)
    assert failed.value.unauthorized
    assert (
        skopeo_inspect(f"docker://{image}", creds=credentials[0], registry=registry_http.registry).returncode
        != 0
    )


def test_missing_credentials_mean_an_anonymous_pull_that_fails(
    registry_http: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    files = docker_config(tmp_path, {"registry.example.com": ("someone", "else")})
    config = our_config(
        tmp_path, f"  - backend: dockerconfig\n    files: [{files}, {tmp_path / 'absent.json'}]\n"
    )
    sim = simulator(zipapp, kubelet_config([registry_http.host], ["--config", str(config)]))

    image = registry_http.ref("team/app:v1")
    assert sim.pull(image) == []
    plugin_ran_cleanly(sim)
    with pytest.raises(PullError) as failed:
        containerd.pull_like_kubelet(image, [])
    assert failed.value.unauthorized


def test_anonymous_rule_answers_empty_auth(
    registry_http: RegistryFixture, zipapp: Path, tmp_path: Path
) -> None:
    config = our_config(
        tmp_path, f"  - match: ['{registry_http.host}']\n    backend: anonymous\n    cacheDuration: 90m\n"
    )
    sim = simulator(zipapp, kubelet_config([registry_http.host], ["--config", str(config)]))
    assert sim.pull(registry_http.ref("team/app:v1")) == []
    plugin_ran_cleanly(sim)
    response = sim.results[-1].by_provider(PROVIDER)
    assert response is not None
    assert response.response is not None
    assert response.response.cache_duration == 90 * 60 * 10**9  # nanoseconds, as Go decodes it


def test_path_scoped_rules_keep_each_image_on_its_credentials(
    registry_factory: Any, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    """Two rules split one registry by path: the kubelet's cache must never hand team's
    credentials to other's images (cacheKeyType Image), across repeated pulls."""
    registry: RegistryFixture = registry_factory(
        users={"team-puller": "team-pw-1", "other-puller": "other-pw-2"}
    )
    team = docker_config(tmp_path, {registry.host: ("team-puller", "team-pw-1")}, "team.json")
    other = docker_config(tmp_path, {registry.host: ("other-puller", "other-pw-2")}, "other.json")
    config = our_config(
        tmp_path,
        f"  - match: ['{registry.host}/team']\n    backend: dockerconfig\n    files: [{team}]\n"
        f"  - match: ['{registry.host}']\n    backend: dockerconfig\n    files: [{other}]\n",
    )
    sim = simulator(zipapp, kubelet_config([registry.host], ["--config", str(config)]))
    for _ in range(2):
        assert sim.pull(registry.ref("team/app:v1")) == [("team-puller", "team-pw-1")]
        assert sim.pull(registry.ref("other/app:v1")) == [("other-puller", "other-pw-2")]
    # Each image's first pull ran the plugin, the repeats were kubelet cache hits.
    assert len(sim.execs) == 2
    for repo in ("team/app:v1", "other/app:v1"):
        image = registry.ref(repo)
        assert containerd.pull_like_kubelet(image, sim.pull(image)) == registry.image.image_id


@pytest.mark.parametrize(
    "api_version", ["credentialprovider.kubelet.k8s.io/v1beta1", "credentialprovider.kubelet.k8s.io/v1alpha1"]
)
def test_older_api_versions_work_end_to_end(
    api_version: str, registry_http: RegistryFixture, containerd: Containerd, zipapp: Path, tmp_path: Path
) -> None:
    files = docker_config(tmp_path, {registry_http.host: registry_http.creds})
    config = our_config(tmp_path, f"  - backend: dockerconfig\n    files: [{files}]\n")
    sim = simulator(
        zipapp, kubelet_config([registry_http.host], ["--config", str(config)], api_version=api_version)
    )
    image = registry_http.ref("team/app:v1")
    credentials = sim.pull(image)
    plugin_ran_cleanly(sim)
    assert containerd.pull_like_kubelet(image, credentials) == registry_http.image.image_id
