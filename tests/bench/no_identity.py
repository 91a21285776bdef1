"""A cloud host on a node of no cloud, under the embedded default: what the hand-over to the
node's docker config files costs, when the cloud's metadata address refuses at once and when it
never answers (a dropped packet), against a docker-config answer that probes nothing, in the
same run. Goal: the hand-over adds at most about a second."""

from __future__ import annotations

import base64
import json
import socket
import tempfile
from pathlib import Path

from tests.bench.common import ZIPAPP, Measurement, interleaved_medians, kubelet_env, measurement, timed_exec

RUNS = 5
EXTRA_GOAL_SECONDS = 1.25  # the probe's 1 s, plus the reading of one more rule


def _request(image: str) -> bytes:
    document = {"kind": "CredentialProviderRequest", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}
    return json.dumps({**document, "image": image}).encode()


def measure() -> list[Measurement]:
    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"
    plain = "registry.example.com/team/app"
    with tempfile.TemporaryDirectory() as scratch, socket.socket() as silent, socket.socket() as refused:
        root = Path(scratch)
        auth = base64.b64encode(b"robot:secret").decode()
        hosts = (ecr.split("/", 1)[0], plain.split("/", 1)[0])
        (root / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth} for host in hosts}}))
        silent.bind(("127.0.0.1", 0))
        silent.listen(50)
        refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        env = {
            "HOME": str(root / "home"),
            "DOCKER_CONFIG": str(root),
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }

        def at(port: int) -> dict[str, str]:
            return kubelet_env({**env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}"})

        argv = [str(ZIPAPP)]
        medians = interleaved_medians(
            RUNS,
            {
                "plain": lambda: timed_exec(argv, _request(plain), kubelet_env(env)),
                "refused": lambda: timed_exec(
                    argv, _request(ecr), at(refused.getsockname()[1]), expect_stderr="hands over"
                ),
                "silent": lambda: timed_exec(
                    argv, _request(ecr), at(silent.getsockname()[1]), expect_stderr="hands over"
                ),
            },
            scenario="no identity",
        )
    refused_extra = medians["refused"] - medians["plain"]
    silent_extra = medians["silent"] - medians["plain"]
    goal = f"<= {EXTRA_GOAL_SECONDS} s"
    return [
        measurement("docker config answer, nothing probed", medians["plain"] * 1000, "ms"),
        measurement(
            "ECR host, metadata refused: extra", refused_extra, "s", goal, refused_extra <= EXTRA_GOAL_SECONDS
        ),
        measurement(
            "ECR host, metadata silent: extra", silent_extra, "s", goal, silent_extra <= EXTRA_GOAL_SECONDS
        ),
    ]
