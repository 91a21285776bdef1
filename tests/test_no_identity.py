"""A node with no identity in a cloud: the embedded default hands that cloud's hosts to the node's
docker config files with one warning; an explicit rule fails with one line; ``doctor`` on such a
node (a kubeadm node with a docker config) is green. Through the built zipapp, as the kubelet
runs it, with every metadata address pointed at a loopback port that refuses or never answers."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.backends.presence import IdentitySource, MetadataProbe, find_identity
from tests.cmdutil import provider_config
from tests.conftest import run_zipapp

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"
GAR_IMAGE = "europe-docker.pkg.dev/project/repo/app"
ACR_IMAGE = "team.azurecr.io/app"
PASSWORD = "docker-config-password-that-must-never-leak"


def request(image: str) -> bytes:
    return json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": image,
        }
    ).encode()


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a dropped metadata address)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(50)
    yield sock.getsockname()[1]
    sock.close()


def off_cloud(tmp_path: Path, port: int) -> dict[str, str]:
    """A node on no cloud: every metadata address at ``port``, no cloud credentials, and a docker
    config with credentials for each cloud's registry host."""
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
    hosts = [image.split("/")[0] for image in (ECR_IMAGE, GAR_IMAGE, ACR_IMAGE)]
    (docker / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth} for host in hosts}}))
    return {
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(docker),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}",
        "GCE_METADATA_HOST": f"127.0.0.1:{port}",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{port}",
    }


@pytest.mark.parametrize("image", [ECR_IMAGE, GAR_IMAGE, ACR_IMAGE], ids=["ecr", "gar", "acr"])
@pytest.mark.parametrize("metadata", ["refused", "silent"])
def test_the_embedded_default_falls_back_to_docker_config(
    zipapp: Path, tmp_path: Path, image: str, metadata: str, refused_port: int, silent_port: int
) -> None:
    port = refused_port if metadata == "refused" else silent_port
    result = run_zipapp(zipapp, [], request(image), env=off_cloud(tmp_path, port))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    host = image.split("/", maxsplit=1)[0]
    assert response["auth"] == {host: {"username": "robot", "password": PASSWORD}}
    warnings = result.stderr.decode().splitlines()
    assert len(warnings) == 1, warnings
    assert "hands over to the next matching rule" in warnings[0]
    assert PASSWORD not in result.stderr.decode()


def test_an_explicit_cloud_rule_fails_without_identity(
    zipapp: Path, tmp_path: Path, refused_port: int
) -> None:
    config = provider_config(
        tmp_path, "  - match: ['*.dkr.ecr.*.amazonaws.com']\n    backend: ecr\n  - backend: dockerconfig\n"
    )
    result = run_zipapp(
        zipapp, ["--config", str(config)], request(ECR_IMAGE), env=off_cloud(tmp_path, refused_port)
    )
    assert result.returncode == 1
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert "no AWS credentials for the node" in line


def test_an_explicit_rule_may_hand_over(zipapp: Path, tmp_path: Path, refused_port: int) -> None:
    config = provider_config(
        tmp_path,
        "  - match: ['*.dkr.ecr.*.amazonaws.com']\n    backend: ecr\n    onNoIdentity: next\n"
        "  - backend: dockerconfig\n",
    )
    result = run_zipapp(
        zipapp, ["--config", str(config)], request(ECR_IMAGE), env=off_cloud(tmp_path, refused_port)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auth"][ECR_IMAGE.split("/", maxsplit=1)[0]]["username"] == "robot"


def test_doctor_on_a_node_of_no_cloud_is_green(zipapp: Path, tmp_path: Path, refused_port: int) -> None:
    result = run_zipapp(zipapp, ["doctor", "-o", "json"], b"", env=off_cloud(tmp_path, refused_port))
    report = json.loads(result.stdout)
    by_check = {check["check"]: check for check in report["checks"]}
    for backend in ("ecr", "gar", "acr"):
        assert by_check[backend]["status"] == "ok", by_check[backend]
        assert "next matching rule" in by_check[backend]["detail"]
    not_ok = [check for check in report["checks"] if check["status"] != "ok" and check["check"] != "user"]
    assert not_ok == [], not_ok
    assert result.returncode == 0


def test_an_identity_probe_is_bounded_by_its_timeout(silent_port: int) -> None:
    """A silent metadata address ends the probe with 'no answer', not a hang; the probe's own
    socket timeout is what ends it (the test's watchdog is the pytest timeout)."""
    source = IdentitySource(
        env=(),
        files=lambda environ: [],
        metadata=lambda environ: MetadataProbe(
            "fake metadata", "GET", f"http://127.0.0.1:{silent_port}/", {}, lambda status, headers: True
        ),
    )
    presence = find_identity(source, {}, timeout=0.2)
    assert not presence.found
    assert (
        presence.detail == f"no identity source: fake metadata at http://127.0.0.1:{silent_port}/: no answer"
    )


def test_a_configured_identity_needs_no_probe(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x")

    def never(environ: object) -> MetadataProbe:
        raise AssertionError("the metadata server was asked although an identity is configured")

    source = IdentitySource(env=("SOME_KEY",), files=lambda environ: [str(token)], metadata=never)
    assert find_identity(source, {"SOME_KEY": "set"}).found
    assert find_identity(source, {}).detail == f"identity from {token}"
