"""The ECR backend's cold miss: an exec of the zipapp that must ask "ECR" (moto) for a token,
against a bare botocore script making the same call with the same credential chain (the
node's instance role from the IMDSv2 fake), on the same interpreter and botocore, in the same
run (goal: at most 1.25x); and the peak memory of that exec (goal: at most 100 MB).

Every zipapp exec asks for a registry of its own (a fresh account id), so it misses the disk
cache whatever that cache holds. Starts and stops its own moto server and IMDS fake.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.bench.common import (
    ZIPAPP,
    Measurement,
    interleaved_medians,
    kubelet_env,
    measurement,
    peak_rss_mb,
    timed_exec,
)
from tests.infra.imds import ImdsFake
from tests.infra.moto import start_moto_server

RUNS = 15
RATIO_GOAL = 1.25
RSS_GOAL_MB = 100.0

# The same calls the backend makes for a node: default chain, one client, one token.
BARE_BOTOCORE = """
import base64, json, sys
import botocore.session
session = botocore.session.get_session()
client = session.create_client("ecr", region_name="us-east-1")
data = client.get_authorization_token(registryIds=[sys.argv[1]])["authorizationData"][0]
user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
print(json.dumps({"auth": {sys.argv[2]: {"username": user, "password": password}}}))
"""


def _request(host: str) -> bytes:
    return json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": f"{host}/app",
        }
    ).encode()


def _accounts() -> Iterator[str]:
    for number in itertools.count(100_000_000_000):
        yield str(number)


def _venv_python(env: dict[str, str]) -> str:
    """The interpreter of the zipapp's installed venv: it has the very botocore the zipapp runs."""
    result = subprocess.run(
        [str(ZIPAPP), "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        env={**env, "PEX_INTERPRETER": "1"},
        check=True,
    )
    return result.stdout.decode().strip()


def measure() -> list[Measurement]:
    with tempfile.TemporaryDirectory() as scratch, ImdsFake() as imds:
        root = Path(scratch)
        moto = start_moto_server(root / "moto")
        try:
            env = kubelet_env(
                {
                    "AWS_ENDPOINT_URL_ECR": moto.url,
                    "AWS_ENDPOINT_URL_STS": moto.url,
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                    "AWS_CONFIG_FILE": str(root / "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
                    "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
                }
            )
            script = root / "bare_botocore.py"
            script.write_text(BARE_BOTOCORE)
            python = _venv_python(env)
            accounts = _accounts()

            def zipapp_miss() -> float:
                host = f"{next(accounts)}.dkr.ecr.us-east-1.amazonaws.com"
                return timed_exec([str(ZIPAPP), "get-credentials"], _request(host), env)

            def bare() -> float:
                account = next(accounts)
                host = f"{account}.dkr.ecr.us-east-1.amazonaws.com"
                return timed_exec([python, "-I", str(script), account, host], b"", env)

            for _ in range(2):  # first runs write bytecode caches; measure neither
                zipapp_miss()
                bare()
            medians = interleaved_medians(RUNS, {"zipapp": zipapp_miss, "bare": bare}, scenario="ECR cold")
            hosts = [f"{next(accounts)}.dkr.ecr.us-east-1.amazonaws.com" for _ in range(3)]
            peak = statistics.median(
                peak_rss_mb([str(ZIPAPP), "get-credentials"], _request(host), env) for host in hosts
            )
            account = next(accounts)
            bare_peak = statistics.median(
                peak_rss_mb([python, "-I", str(script), account, f"{account}.x"], b"", env) for _ in range(3)
            )
        finally:
            moto.stop()
    ratio = medians["zipapp"] / medians["bare"]
    return [
        measurement("bare botocore GetAuthorizationToken exec (baseline)", medians["bare"] * 1000, "ms"),
        measurement("ECR cold miss exec (zipapp -> moto, IMDSv2 role)", medians["zipapp"] * 1000, "ms"),
        measurement(
            "ECR cold miss / bare botocore",
            ratio,
            "x",
            f"<= {RATIO_GOAL}",
            ratio <= RATIO_GOAL,
            "cold_ecr_ratio",
        ),
        measurement(
            "ECR cold miss peak RSS",
            peak,
            "MB",
            f"<= {RSS_GOAL_MB:g}",
            peak <= RSS_GOAL_MB,
            "rss_cold_ecr_mb",
        ),
        measurement("bare botocore peak RSS", bare_peak, "MB"),
    ]


if __name__ == "__main__":
    for row in measure():
        print(row)
