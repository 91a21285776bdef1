"""ECR end to end, as on an EKS node: kubelet simulator -> the zipapp -> moto -> a real CRI pull.

The registry's htpasswd holds user ``AWS`` with moto's deterministic token, and containerd serves
``123456789012.dkr.ecr.us-east-1.amazonaws.com`` from it on loopback, so the token the plugin
gets from "ECR" really authenticates the pull. The plugin reaches moto through the recording
front (``AWS_ENDPOINT_URL_*``) and the strict IMDSv2 fake, all set in the
CredentialProviderConfig's ``env`` exactly as an operator would set them for the kubelet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kubelet_environ, run_zipapp
from tests.infra.containerd import Containerd, PullError
from tests.infra.fixtures import RegistryFactory, RegistryFixture
from tests.infra.imds import ImdsFake
from tests.infra.moto import AwsFront, moto_password
from tests.kubelet_sim import KubeletSimulator, ProviderStatus, ServiceAccount
from tests.test_ecr_backend import sa_token

pytestmark = pytest.mark.e2e

V1 = "credentialprovider.kubelet.k8s.io/v1"
PROVIDER = "registry-credential-provider"
DROP_IN = "ecr-credential-provider"
ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/team-a-puller"
ANNOTATION = "eks.amazonaws.com/ecr-role-arn"
# What EKS (nodeadm) puts in matchImages for ecr-credential-provider.
EKS_MATCH_IMAGES = [
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.csp.hci.ic.gov",
    "*.dkr.ecr.*.amazonaws.eu",
    "public.ecr.aws",
    "ecr-public.aws.com",
]
TOKEN_ATTRIBUTES = {
    "serviceAccountTokenAudience": "sts.amazonaws.com",
    "cacheType": "ServiceAccount",
    "requireServiceAccount": False,
    "optionalServiceAccountAnnotationKeys": [ANNOTATION],
}


@pytest.fixture(scope="module")
def ecr_registry(registry_factory: RegistryFactory) -> RegistryFixture:
    """A registry whose only user is ``AWS`` with moto's token for ``ACCOUNT``."""
    return registry_factory(users={"AWS": moto_password(ACCOUNT)})


def aws_env(front: AwsFront, imds: ImdsFake, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The provider's env: AWS at the fakes, nothing from the machine, a private disk cache."""
    env = {
        "AWS_ENDPOINT_URL_ECR": front.url,
        "AWS_ENDPOINT_URL_ECR_PUBLIC": front.url,
        "AWS_ENDPOINT_URL_STS": front.url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.update(extra)
    return env


def kubelet_config(
    name: str,
    env: dict[str, str],
    *,
    args: list[str] | None = None,
    match_images: list[str] | None = None,
    token_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": name,
        "apiVersion": V1,
        "matchImages": match_images or EKS_MATCH_IMAGES,
        "defaultCacheDuration": "12h",
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    if args is not None:
        provider["args"] = args
    if token_attributes is not None:
        provider["tokenAttributes"] = token_attributes
    return {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [provider],
    }


def simulator(bin_dir: Path, config: dict[str, Any]) -> KubeletSimulator:
    return KubeletSimulator(config, bin_dir, base_env=kubelet_environ())


def ran_cleanly(sim: KubeletSimulator, name: str = PROVIDER) -> None:
    result = sim.results[-1].by_provider(name)
    assert result.status is ProviderStatus.OK, (
        f"{result.reason}; plugin stderr: {result.exec.stderr if result.exec else ''!r}"
    )


def failed_with(sim: KubeletSimulator, message: str, name: str = PROVIDER) -> str:
    """The plugin ran and failed (exit 1, one line on stderr containing ``message``)."""
    result = sim.results[-1].by_provider(name)
    assert result.status is ProviderStatus.REJECTED
    assert result.exec is not None
    assert result.exec.exit_code == 1
    assert result.exec.stdout == b""
    stderr = result.exec.stderr.decode()
    assert stderr.count("\n") == 1, stderr
    assert message in stderr, stderr
    return stderr


def service_account(annotations: dict[str, str] | None = None) -> ServiceAccount:
    return ServiceAccount(
        name="puller",
        namespace="team-a",
        annotations=annotations or {},
        token=sa_token("team-a", "puller", "00000000-0000-0000-0000-000000000001"),
    )


def test_node_identity_token_pulls_through_cri(
    ecr_registry: RegistryFixture,
    containerd: Containerd,
    aws_front: AwsFront,
    imds: ImdsFake,
    zipapp: Path,
    tmp_path: Path,
) -> None:
    containerd.map_host(ECR_HOST, ecr_registry.registry)
    sim = simulator(
        zipapp.parent, kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path), args=["get-credentials"])
    )
    image = f"{ECR_HOST}/team/app:v1"

    credentials = sim.pull(image)
    ran_cleanly(sim)
    assert credentials == [("AWS", moto_password(ACCOUNT))]
    assert containerd.pull_like_kubelet(image, credentials) == ecr_registry.image.image_id
    [call] = aws_front.calls
    assert call.access_key_id == imds.credentials.access_key_id
    response = sim.results[-1].by_provider(PROVIDER).response
    assert response is not None
    assert response.cache_key_type == "Registry"
    assert 0 < (response.cache_duration or 0) <= 60 * 10**9  # moto's 2015 expiry: a minute at most

    # Without the token the registry refuses the pull: the credentials above did the work.
    with pytest.raises(PullError) as refused:
        containerd.pull_like_kubelet(f"{ECR_HOST}/other/app:v1", [])
    assert refused.value.unauthorized


def test_pod_role_from_the_annotation_pulls_through_cri(
    ecr_registry: RegistryFixture,
    containerd: Containerd,
    aws_front: AwsFront,
    imds: ImdsFake,
    zipapp: Path,
    tmp_path: Path,
) -> None:
    containerd.map_host(ECR_HOST, ecr_registry.registry)
    config = kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path), token_attributes=TOKEN_ATTRIBUTES)
    sim = simulator(zipapp.parent, config)
    image = f"{ECR_HOST}/team/app:v1"

    credentials = sim.pull(image, service_account({ANNOTATION: ROLE}))
    ran_cleanly(sim)
    assert credentials == [("AWS", moto_password(ACCOUNT))]
    assert containerd.pull_like_kubelet(image, credentials) == ecr_registry.image.image_id
    sts, ecr = aws_front.calls
    assert (sts.operation, sts.access_key_id) == ("AssumeRoleWithWebIdentity", "")
    assert ecr.access_key_id.startswith("ASIA")
    assert ecr.access_key_id != imds.credentials.access_key_id
    assert imds.requests == []  # the node's identity was never looked up


def test_fail_closed_rule_refuses_a_pod_without_a_role(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    ours = tmp_path / "provider.json"
    ours.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "rules": [
                    {"match": ["*.dkr.ecr.*.amazonaws.com"], "backend": "ecr", "requirePodIdentity": True}
                ],
            }
        )
    )
    config = kubelet_config(
        PROVIDER,
        aws_env(aws_front, imds, tmp_path),
        args=["--config", str(ours)],
        token_attributes=TOKEN_ATTRIBUTES,
    )
    sim = simulator(zipapp.parent, config)
    assert sim.pull(f"{ECR_HOST}/team/app:v1", service_account()) == []
    failed_with(
        sim, "no role for service account team-a/puller: annotate it with eks.amazonaws.com/ecr-role-arn"
    )
    assert aws_front.calls == []
    assert imds.requests == []


def test_sts_denial_reaches_the_kubelet_log_without_the_token(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    aws_front.fail("AssumeRoleWithWebIdentity", "AccessDenied", "Not authorized", status=403)
    config = kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path), token_attributes=TOKEN_ATTRIBUTES)
    sim = simulator(zipapp.parent, config)
    account = service_account({ANNOTATION: ROLE})
    assert sim.pull(f"{ECR_HOST}/team/app:v1", account) == []
    stderr = failed_with(
        sim, f"STS AssumeRoleWithWebIdentity into {ROLE} for service account team-a/puller failed"
    )
    assert str(account.token) not in stderr
    assert str(account.token).split(".")[2] not in stderr


def test_throttling_is_one_line_and_exit_1(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    aws_front.fail("GetAuthorizationToken", "ThrottlingException", "Rate exceeded")
    sim = simulator(zipapp.parent, kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path)))
    assert sim.pull(f"{ECR_HOST}/team/app:v1") == []
    stderr = failed_with(sim, "was throttled (ThrottlingException: Rate exceeded) after 3 attempts")
    for secret in (
        imds.credentials.access_key_id,
        imds.credentials.secret_access_key,
        imds.credentials.token,
    ):
        assert secret not in stderr


@pytest.mark.parametrize("mode", ["down", "no-token"])
def test_broken_imds_fails_with_the_chain_explained(
    mode: str, aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    if mode == "down":
        imds.stop()
    else:
        imds.mode = "no-token"
    # An explicit ECR rule fails closed (the embedded default would hand over to the node's
    # docker config files instead: see the test below and tests/test_no_identity.py).
    config = tmp_path / "ecr.json"
    config.write_text(
        '{"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", '
        '"rules": [{"backend": "ecr"}]}'
    )
    env = aws_env(aws_front, imds, tmp_path)
    sim = simulator(zipapp.parent, kubelet_config(PROVIDER, env, args=["--config", str(config)]))
    assert sim.pull(f"{ECR_HOST}/team/app:v1") == []
    failed_with(sim, "no AWS credentials for the node")
    assert aws_front.calls == []


def test_the_embedded_default_hands_a_node_without_aws_identity_to_docker_config(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    imds.stop()
    sim = simulator(
        zipapp.parent, kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path, HOME=str(tmp_path)))
    )
    assert sim.pull(f"{ECR_HOST}/team/app:v1") == []  # no docker config here: empty auth, no failure
    ran_cleanly(sim)
    result = sim.results[-1].by_provider(PROVIDER)
    assert result.exec is not None
    [warning] = result.exec.stderr.decode().splitlines()
    assert "no AWS credentials for the node" in warning
    assert "hands over to the next matching rule" in warning
    assert aws_front.calls == []


@pytest.mark.parametrize(
    "host",
    [
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # the kubelet's glob matches, the account is short
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
    ],
)
def test_look_alikes_sent_by_the_kubelet_never_reach_aws(
    host: str, aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    sim = simulator(zipapp.parent, kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path)))
    assert sim.pull(f"{host}/team/app:v1") == []
    failed_with(sim, f"{host} is not an AWS ECR registry host")
    assert aws_front.calls == []
    assert imds.requests == []


def test_ecr_public_from_a_govcloud_node_is_an_anonymous_pull(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    env = aws_env(aws_front, imds, tmp_path, AWS_REGION="us-gov-west-1")
    sim = simulator(zipapp.parent, kubelet_config(PROVIDER, env))
    assert sim.pull("public.ecr.aws/eks-distro/kubernetes/pause:v1") == []
    ran_cleanly(sim)
    result = sim.results[-1].by_provider(PROVIDER)
    assert result.exec is not None
    assert b"ECR Public's API is not available in partition aws-us-gov" in result.exec.stderr
    assert aws_front.calls == []


def test_ecr_public_from_a_commercial_node(
    aws_front: AwsFront, imds: ImdsFake, zipapp: Path, tmp_path: Path
) -> None:
    sim = simulator(zipapp.parent, kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path)))
    assert sim.pull("public.ecr.aws/eks-distro/kubernetes/pause:v1") == [("AWS", "public-auth-token")]
    ran_cleanly(sim)
    response = sim.results[-1].by_provider(PROVIDER).response
    assert response is not None
    assert response.cache_duration is not None
    assert 5 * 3600 * 10**9 < response.cache_duration <= 6 * 3600 * 10**9  # half of 12 h


# -- the drop-in --------------------------------------------------------------------------------


@pytest.fixture
def drop_in(zipapp: Path, tmp_path: Path) -> Path:
    """The zipapp installed under the upstream plugin's name, as a node's bin dir holds it."""
    bin_dir = tmp_path / "image-credential-provider"
    bin_dir.mkdir()
    shutil.copy2(zipapp, bin_dir / DROP_IN)
    return bin_dir


def test_drop_in_for_the_upstream_plugin_pulls_through_cri(
    drop_in: Path,
    ecr_registry: RegistryFixture,
    containerd: Containerd,
    aws_front: AwsFront,
    imds: ImdsFake,
    tmp_path: Path,
) -> None:
    containerd.map_host(ECR_HOST, ecr_registry.registry)
    # An EKS node's config, untouched but for the test endpoints: no args, upstream's env var.
    env = aws_env(aws_front, imds, tmp_path, AWS_ECR_ROLE_ARN=ROLE)
    sim = simulator(drop_in, kubelet_config(DROP_IN, env, token_attributes=TOKEN_ATTRIBUTES))
    image = f"{ECR_HOST}/team/app:v1"

    node = sim.pull(image)  # no service account: the node's identity
    ran_cleanly(sim, DROP_IN)
    assert containerd.pull_like_kubelet(image, node) == ecr_registry.image.image_id
    assert [c.operation for c in aws_front.calls] == ["GetAuthorizationToken"]

    pod = sim.pull(f"{ECR_HOST}/other/app:v1", service_account())  # a token, no annotation: AWS_ECR_ROLE_ARN
    ran_cleanly(sim, DROP_IN)
    assert pod == [("AWS", moto_password(ACCOUNT))]
    assert [c.operation for c in aws_front.calls][1:] == [
        "AssumeRoleWithWebIdentity",
        "GetAuthorizationToken",
    ]


def test_drop_in_never_reads_docker_config_files(
    drop_in: Path, aws_front: AwsFront, imds: ImdsFake, tmp_path: Path
) -> None:
    """Images the kubelet sends the drop-in are ECR's alone: a look-alike is an error, never a
    docker config credential (the same binary under its own name would read those)."""
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {"registry.example.com": {"auth": "dTpw"}}}))
    env = aws_env(aws_front, imds, tmp_path, DOCKER_CONFIG=str(docker))
    request = json.dumps(
        {"kind": "CredentialProviderRequest", "apiVersion": V1, "image": "registry.example.com/team/app"}
    ).encode()

    as_drop_in = run_zipapp(drop_in / DROP_IN, [], request, env=env)
    assert as_drop_in.returncode == 1
    assert b"registry.example.com is not an AWS ECR registry host" in as_drop_in.stderr

    own_name = drop_in / PROVIDER
    shutil.copy2(drop_in / DROP_IN, own_name)
    answer = run_zipapp(own_name, [], request, env=env)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["auth"] == {"registry.example.com": {"username": "u", "password": "p"}}
    assert aws_front.calls == []


def test_drop_in_honours_an_explicit_config(
    drop_in: Path, aws_front: AwsFront, imds: ImdsFake, tmp_path: Path
) -> None:
    ours = tmp_path / "provider.json"
    ours.write_text(
        '{"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": [{"backend": "anonymous"}]}'
    )
    request = json.dumps(
        {"kind": "CredentialProviderRequest", "apiVersion": V1, "image": f"{ECR_HOST}/app"}
    ).encode()
    result = run_zipapp(
        drop_in / DROP_IN, ["--config", str(ours)], request, env=aws_env(aws_front, imds, tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auth"] == {}
    assert aws_front.calls == []


def test_a_kubelet_restart_is_answered_from_the_disk_cache(
    ecr_registry: RegistryFixture,
    containerd: Containerd,
    aws_front: AwsFront,
    imds: ImdsFake,
    zipapp: Path,
    tmp_path: Path,
) -> None:
    """The kubelet forgets its cache on restart and pulls images of one registry in parallel;
    the token API is asked once, the rest come from the disk cache."""
    containerd.map_host(ECR_HOST, ecr_registry.registry)
    config = kubelet_config(PROVIDER, aws_env(aws_front, imds, tmp_path), args=["get-credentials"])
    first = simulator(zipapp.parent, config)
    credentials = first.pull(f"{ECR_HOST}/team/app:v1")
    ran_cleanly(first)
    for image in (f"{ECR_HOST}/team/app:v1", f"{ECR_HOST}/other/app:v1"):
        restarted = simulator(zipapp.parent, config)  # a new kubelet: an empty memory cache
        assert restarted.pull(image) == credentials
        ran_cleanly(restarted)
        assert restarted.execs, "the restarted kubelet must have run the plugin"
        assert containerd.pull_like_kubelet(image, credentials) == ecr_registry.image.image_id
    assert len(aws_front.calls) == 1
