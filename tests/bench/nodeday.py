"""The node-day: the kubelet simulator (with the kubelet's own in-memory cache) pulls a mix of
images from several registries over 24 simulated hours, restarting every 2 hours, once with
our plugin (disk cache on) and once with a stand-in for the upstream plugins' behaviour; the
token calls are counted (ours at the fake servers, upstream's per exec). Goal: ours at most a
fifth of theirs.

Time is simulated with libfaketime (Debian package ``faketime``): the measuring process runs
under ``LD_PRELOAD`` with ``FAKETIME_TIMESTAMP_FILE``, and so do the fakes it starts and every
plugin exec; advancing the simulated clock rewrites the offset in that file, only between
pulls (monotonic clocks move with it: libfaketime's sleeps fail with EINVAL otherwise, and no
exec is running when they jump).

Registries (``REGISTRIES``): a registry whose backend is not built yet is left out of both
counts and listed as such; adding one is one entry. Upstream's behaviour, as their code does
it: no disk cache, each exec one token call, and the cacheDuration they answer (ECR: half the
12 h token's life; ACR: 60 minutes; GAR: none, every pull; the credential helper: none, as
the runtime runs a helper on every pull).

Two mixes (``MIXES``): ``quiet``, 0-2 pulls per 10 minutes (about 146 a day), and ``busy``,
the quiet mix plus CronJobs with ``imagePullPolicy: Always`` (``CRONJOBS``: one registry's
image every few minutes, about 1,250 pulls a day). GAR's metadata server is modelled as the real
one behaves (``GoogleFake(reissue_below=300)``: the same token, with less and less left, until
5 minutes remain).

The lower bound (``lower_bound``): the fewest token calls any cache can make that serves a
credential only within its lifetime (``LIFETIMES``): per registry, a call at a pull, then none
until a pull comes after what that call fetched has expired. With 1 h credentials (GAR's
token, the helper's ``helperCacheDuration``) pulls more than an hour apart each cost a call.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, ZIPAPP, Measurement, kubelet_env, measurement

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
HOURS = 24
STEP_MINUTES = 10
RESTART_EVERY_HOURS = 2
GOAL = 0.2
ECR_TOKEN_SECONDS = 12 * 3600.0
GAR_TOKEN_SECONDS = 3599
# What the real metadata server keeps a token for: until fewer than 5 minutes are left.
GAR_REISSUE_BELOW = 300.0


@dataclass(frozen=True)
class Registry:
    """One registry of the mix: its kind, its share of pulls, upstream's cacheDuration (None:
    every pull execs), and whether our backend for it is built."""

    name: str
    kind: str
    weight: float
    upstream_cache: str | None
    built: bool = True


REGISTRIES = (
    Registry("ecr-a", "ecr", 3, "6h"),
    Registry("ecr-b", "ecr", 2, "6h"),
    Registry("helper", "helper", 2, None),
    Registry("acr", "acr", 2, "60m"),
    Registry("gar", "gar", 3, None),
)


@dataclass(frozen=True)
class CronJob:
    """A CronJob with ``imagePullPolicy: Always``: a pull of ``registry`` every ``minutes``."""

    registry: str
    minutes: int


CRONJOBS = (
    CronJob("ecr-a", 5),
    CronJob("gar", 5),
    CronJob("helper", 5),
    CronJob("acr", 10),
    CronJob("ecr-b", 15),
)
MIXES = ("quiet", "busy")


def lifetimes() -> dict[str, float]:
    """Seconds each kind's credential lives from the moment it is fetched."""
    from tests.infra.azure import REFRESH_SECONDS

    return {
        "ecr": ECR_TOKEN_SECONDS,
        "helper": 3600.0,
        "acr": float(REFRESH_SECONDS),
        "gar": GAR_TOKEN_SECONDS,
    }


def lower_bound(events: list[tuple[float, str | None]]) -> dict[str, int]:
    """The fewest token calls per kind any cache honouring ``lifetimes()`` makes for ``events``:
    per registry, greedily, a call at the first pull after the last fetched credential expired."""
    life = lifetimes()
    kind_of = {r.name: r.kind for r in REGISTRIES}
    valid_until: dict[str, float] = {}
    calls = dict.fromkeys(life, 0)
    for at, name in events:
        if name is None:
            continue
        if at >= valid_until.get(name, -1.0):
            calls[kind_of[name]] += 1
            valid_until[name] = at + life[kind_of[name]]
    return calls


UPSTREAM_STUB = """#!/usr/bin/env python3
import json, sys
request = json.load(sys.stdin)
host = request["image"].split("/", 1)[0]
with open(sys.argv[1], "a") as calls:
    calls.write(host + "\\n")
durations = json.loads(sys.argv[2])
print(json.dumps({"apiVersion": request["apiVersion"], "kind": "CredentialProviderResponse",
    "cacheKeyType": "Registry", "cacheDuration": durations.get(host) or "0s",
    "auth": {host: {"username": "u", "password": "p"}}}))
"""


def _measured(mix: str) -> dict[str, Any]:
    """One node-day of ``mix`` in a process under libfaketime."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        offset = Path(scratch) / "offset"
        offset.write_text("+0\n")
        env = {
            **os.environ,
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
        }
        subprocess.run(
            [sys.executable, "-m", "tests.bench.nodeday", str(out), str(offset), mix],
            env=env,
            check=True,
            cwd=ROOT,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def measure() -> list[Measurement]:
    if not os.path.exists(LIBFAKETIME):
        raise RuntimeError(f"{LIBFAKETIME} is missing: apt-get install faketime")
    left_out = ", ".join(r.name for r in REGISTRIES if not r.built)
    note = f"left out (backend not built yet): {left_out}" if left_out else ""
    rows: list[Measurement] = []
    for mix in MIXES:
        result = _measured(mix)
        ours, theirs = result["ours"], result["theirs"]
        bound = lower_bound(_schedule(mix))
        prefix = "node-day" if mix == "quiet" else "node-day busy"
        key = "nodeday" if mix == "quiet" else "nodeday_busy"
        ratio = sum(ours.values()) / sum(theirs.values())
        bound_ratio = sum(bound[kind] for kind in ours) / sum(theirs.values())
        rows += [
            measurement(
                f"{prefix} pulls ({HOURS} h, restart every {RESTART_EVERY_HOURS} h)",
                result["pulls"],
                "pulls",
                key=f"{key}_pulls",
            ),
            measurement(f"{prefix} plugin execs (ours)", result["execs"], "execs"),
            {
                **measurement(
                    f"{prefix} token calls (ours, disk cache)",
                    sum(ours.values()),
                    "calls",
                    key=f"{key}_calls_ours",
                ),
                "note": note,
            },
            {
                **measurement(
                    f"{prefix} token calls (upstream plugins)",
                    sum(theirs.values()),
                    "calls",
                    key=f"{key}_calls_upstream",
                ),
                "note": note,
            },
            measurement(
                f"{prefix} token calls, lower bound for any cache",
                sum(bound[kind] for kind in ours),
                "calls",
                key=f"{key}_calls_bound",
            ),
            measurement(
                f"{prefix} token calls ours / upstream",
                ratio,
                "x",
                f"<= {GOAL}",
                ratio <= GOAL,
                f"{key}_ratio",
            ),
            measurement(
                f"{prefix} lower bound / upstream (best any cache can do)",
                bound_ratio,
                "x",
                key=f"{key}_bound_ratio",
            ),
        ]
        for name in sorted(ours):
            rows.append(
                measurement(
                    f"{prefix} token calls {name}: ours / upstream (bound)",
                    ours[name],
                    f"/ {theirs[name]} ({bound[name]})",
                )
            )
    return rows


def _schedule(mix: str = "quiet", seed: int = 14) -> list[tuple[float, str | None]]:
    """(simulated seconds, registry name or None for a kubelet restart), in order; ``busy`` adds
    the ``CRONJOBS``' pulls (each a few seconds after its schedule, as its pod starts)."""
    rng = random.Random(seed)
    built = [r for r in REGISTRIES if r.built]
    events: list[tuple[float, str | None]] = []
    for step in range(HOURS * 60 // STEP_MINUTES):
        at = step * STEP_MINUTES * 60.0
        if step and at % (RESTART_EVERY_HOURS * 3600) == 0:
            events.append((at, None))
        for _ in range(rng.choice((0, 1, 1, 2))):
            events.append(
                (
                    at + rng.uniform(0, STEP_MINUTES * 60 - 1),
                    rng.choices(built, [r.weight for r in built])[0].name,
                )
            )
    if mix == "busy":
        names = {r.name for r in built}
        for job in CRONJOBS:
            if job.registry in names:
                for run in range(HOURS * 60 // job.minutes):
                    events.append((run * job.minutes * 60.0 + rng.uniform(2, 30), job.registry))
    return sorted(events, key=lambda e: (e[0], e[1] is not None))


def _day(
    sim: Any, clock: Any, offset: Path, images: dict[str, str], started: float, mix: str
) -> tuple[int, int]:
    pulls = 0
    for at, name in _schedule(mix):
        behind = at - (clock.now_ns() / 1e9 - started)
        if behind > 0:
            clock.advance(behind)
            offset.write_text(f"+{int(at)}\n")
        if name is None:
            sim.restart()
            continue
        result = sim.lookup(f"{images[name]}/app{pulls % 7}:v1")
        if result.anonymous:
            raise RuntimeError(f"pull {pulls} of {name} got no credentials: {sim.log[-3:]}")
        pulls += 1
    return pulls, len(sim.execs)


def _run(out: Path, offset: Path, mix: str) -> None:
    from tests.infra.azure import TENANT, start_azure
    from tests.infra.google import GoogleFake
    from tests.infra.imds import ImdsFake
    from tests.infra.moto import AwsFront, start_moto_server
    from tests.kubelet_sim import FakeClock, KubeletSimulator

    root = out.parent
    ecr_hosts = {
        "ecr-a": "111111111111.dkr.ecr.us-east-1.amazonaws.com",
        "ecr-b": "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
    }
    moto = start_moto_server(root / "moto")
    world = start_azure(root / "azure")
    with (
        ImdsFake() as imds,
        GoogleFake(token_seconds=GAR_TOKEN_SECONDS, reissue_below=GAR_REISSUE_BELOW) as google,
    ):
        front = AwsFront(moto)
        front.expires_in = ECR_TOKEN_SECONDS
        try:
            images = {
                **ecr_hosts,
                "helper": "registry.example.com",
                "acr": world.login_server,
                "gar": "europe-docker.pkg.dev",
            }
            bindir = root / "bin"
            bindir.mkdir()
            helper_calls = root / "helper-calls"
            reply = json.dumps({"ServerURL": images["helper"], "Username": "u", "Secret": "s"})
            helper = bindir / "docker-credential-counting"
            helper.write_text(f"#!/bin/sh\necho call >> {helper_calls}\necho '{reply}'\n")
            helper.chmod(0o700)
            (root / "docker.json").write_text(json.dumps({"credHelpers": {images["helper"]: "counting"}}))
            (root / "azure.json").write_text(
                json.dumps({"tenantId": TENANT, "useManagedIdentityExtension": True})
            )
            rules = [
                {"match": list(ecr_hosts.values()), "backend": "ecr"},
                {"match": [images["acr"]], "backend": "acr", "azureConfig": str(root / "azure.json")},
                {"match": [images["gar"]], "backend": "gar"},
                {
                    "match": [images["helper"]],
                    "backend": "dockerconfig",
                    "files": [str(root / "docker.json")],
                    "helperCacheDuration": "1h",
                },
            ]
            config = root / "provider.json"
            config.write_text(
                json.dumps(
                    {
                        "apiVersion": "registry-credential-provider/v1alpha1",
                        "kind": "ProviderConfig",
                        "rules": rules,
                    }
                )
            )
            plugins = root / "plugins"
            plugins.mkdir()
            (plugins / "registry-credential-provider").symlink_to(ZIPAPP)
            stub_calls = root / "stub-calls"
            stub = plugins / "upstream"
            stub.write_text(UPSTREAM_STUB)
            stub.chmod(0o755)
            durations = {images[r.name]: r.upstream_cache for r in REGISTRIES if r.built}
            faked = {
                k: os.environ[k]
                for k in (
                    "LD_PRELOAD",
                    "FAKETIME_TIMESTAMP_FILE",
                    "FAKETIME_NO_CACHE",
                )
            }
            provider_env = {
                **world.environ,
                "AWS_ENDPOINT_URL_ECR": front.url,
                "AWS_ENDPOINT_URL_STS": front.url,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                "GCE_METADATA_HOST": google.host,
                "AWS_CONFIG_FILE": str(root / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
                "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
                "PATH": f"{bindir}:/usr/bin:/bin",
            }

            def kubelet(name: str, args: list[str]) -> dict[str, Any]:
                return {
                    "apiVersion": "kubelet.config.k8s.io/v1",
                    "kind": "CredentialProviderConfig",
                    "providers": [
                        {
                            "name": name,
                            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                            "matchImages": sorted(durations),
                            "defaultCacheDuration": "5m",
                            "args": args,
                            "env": [{"name": k, "value": v} for k, v in provider_env.items()],
                        }
                    ],
                }

            def day(name: str, args: list[str]) -> tuple[int, int]:
                offset.write_text("+0\n")
                time.sleep(0.01)
                clock = FakeClock(start_ns=time.time_ns())
                sim = KubeletSimulator(kubelet(name, args), plugins, clock=clock, base_env=kubelet_env(faked))
                return _day(sim, clock, offset, images, clock.now_ns() / 1e9, mix)

            pulls, execs = day("registry-credential-provider", ["get-credentials", "--config", str(config)])
            exchanges = len(world.acr.exchanges())
            ours = {
                "ecr": len(front.calls_of("GetAuthorizationToken")),
                "helper": len(helper_calls.read_text().splitlines()) if helper_calls.exists() else 0,
                "acr": exchanges,
                "gar": google.token_requests(),
            }
            day("upstream", [str(stub_calls), json.dumps(durations)])
            hosts = stub_calls.read_text().splitlines()
            kind_of = {images[r.name]: r.kind for r in REGISTRIES if r.built}
            theirs = {kind: sum(kind_of[h] == kind for h in hosts) for kind in ours}
        finally:
            front.stop()
            moto.stop()
            world.stop()
    out.write_text(json.dumps({"ours": ours, "theirs": theirs, "pulls": pulls, "execs": execs}))


if __name__ == "__main__":
    _run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
