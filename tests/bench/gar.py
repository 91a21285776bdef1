"""The GAR backend's cold miss, its memory, and metadata traffic over a node-day.

Cold miss: an exec of the zipapp that must ask the metadata server (the strict fake) for the
node's token, against a bare google-auth script doing the same with compute-engine
credentials over urllib3 (two metadata requests, as ours: our probe and the token), on the
same interpreter and google-auth, in the same run (goal: at most 1.25x); and the peak memory of
that exec. Every zipapp exec asks for a registry host of its own, so it misses the disk cache.

Node-day: the upstream plugin answers ``cacheDuration: 0``, so the kubelet runs it on every pull
and every pull asks the metadata server. Ours is measured with the disk cache on a compressed
clock: tokens that live ``TOKEN_SECONDS``, pulls every ``PULL_EVERY`` seconds for two token
lives (the kubelet's own cache off, as when every pull is a new image); the metadata requests
per token life, scaled to a day of real hour-long tokens, against ``PULLS_PER_DAY`` for upstream.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

from tests.bench.common import (
    ZIPAPP,
    Measurement,
    interleaved_medians,
    kubelet_env,
    measurement,
    peak_rss_mb,
    timed_exec,
    zipapp_python,
)
from tests.infra.google import GoogleFake

RUNS = 15
RATIO_GOAL = 1.25
RSS_GOAL_MB = 100.0
TOKEN_SECONDS = 4
PULL_EVERY = 0.25
REAL_TOKEN_SECONDS = 3599
PULLS_PER_DAY = 1000  # a busy node: what upstream costs the metadata server (one per pull)

BARE_GOOGLE_AUTH = """
import json, sys
import urllib3
from google.auth.compute_engine import credentials
from google.auth.transport.urllib3 import Request
found = credentials.Credentials()
found.refresh(Request(urllib3.PoolManager()))
print(json.dumps({"auth": {sys.argv[1]: {"username": "oauth2accesstoken", "password": found.token}}}))
"""


def _request(host: str) -> bytes:
    return json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": f"{host}/p/app",
        }
    ).encode()


def measure() -> list[Measurement]:
    hosts = (f"h{number}-docker.pkg.dev" for number in itertools.count())
    with tempfile.TemporaryDirectory() as scratch, GoogleFake() as google:
        root = Path(scratch)
        env = kubelet_env(
            {"GCE_METADATA_HOST": google.host, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")}
        )
        script = root / "bare_google_auth.py"
        script.write_text(BARE_GOOGLE_AUTH)
        python = zipapp_python(env)
        # The bare script runs on the zipapp's own installed google-auth.
        site = _zipapp_site(env)

        def zipapp_miss() -> float:
            return timed_exec([str(ZIPAPP), "get-credentials"], _request(next(hosts)), env)

        def bare() -> float:
            return timed_exec([python, "-S", str(script), next(hosts)], b"", {**env, "PYTHONPATH": site})

        for _ in range(2):  # first runs write bytecode caches; measure neither
            zipapp_miss()
            bare()
        medians = interleaved_medians(RUNS, {"zipapp": zipapp_miss, "bare": bare})
        peak = max(
            peak_rss_mb([str(ZIPAPP), "get-credentials"], _request(next(hosts)), env) for _ in range(3)
        )
        bare_peak = peak_rss_mb([python, "-S", str(script), "x"], b"", {**env, "PYTHONPATH": site})

    with tempfile.TemporaryDirectory() as scratch, GoogleFake(token_seconds=TOKEN_SECONDS) as google:
        env = kubelet_env(
            {"GCE_METADATA_HOST": google.host, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": scratch}
        )
        ends = time.monotonic() + 2 * TOKEN_SECONDS
        pulls = 0
        while time.monotonic() < ends:
            timed_exec([str(ZIPAPP), "get-credentials"], _request("gcr.io"), env)
            pulls += 1
            time.sleep(PULL_EVERY)
        per_token_life = sum(1 for r in google.requests if r.kind == "metadata") / 2
    node_day = per_token_life * 86400 / REAL_TOKEN_SECONDS
    ratio = medians["zipapp"] / medians["bare"]
    return [
        measurement("bare google-auth compute-engine token exec (baseline)", medians["bare"] * 1000, "ms"),
        measurement("GAR cold miss exec (zipapp -> metadata fake)", medians["zipapp"] * 1000, "ms"),
        measurement(
            "GAR cold miss / bare google-auth",
            ratio,
            "x",
            f"<= {RATIO_GOAL}",
            ratio <= RATIO_GOAL,
            "cold_gar_ratio",
        ),
        measurement(
            "GAR cold miss peak RSS",
            peak,
            "MB",
            f"<= {RSS_GOAL_MB:g}",
            peak <= RSS_GOAL_MB,
            "rss_cold_gar_mb",
        ),
        measurement("bare google-auth peak RSS", bare_peak, "MB"),
        measurement(
            f"metadata requests per token life, disk cache ({pulls} pulls)", per_token_life, "requests"
        ),
        measurement(
            "metadata requests per node-day, ours (any number of pulls)", round(node_day), "requests"
        ),
        measurement(
            f"metadata requests per node-day, upstream ({PULLS_PER_DAY} pulls)", PULLS_PER_DAY, "requests"
        ),
    ]


def _zipapp_site(env: dict[str, str]) -> str:
    """The site-packages of the zipapp's installed venv (its google-auth, urllib3, packaging)."""
    import subprocess

    result = subprocess.run(
        [
            str(ZIPAPP),
            "-c",
            "import google.auth, os; print(os.path.dirname(os.path.dirname(google.auth.__path__[0])))",
        ],
        capture_output=True,
        env={**env, "PEX_INTERPRETER": "1"},
        check=True,
    )
    return result.stdout.decode().strip()


if __name__ == "__main__":
    for row in measure():
        print(row)
