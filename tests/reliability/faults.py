"""Fault injection: ECR (moto, through ``AwsFront``) behind the fault proxy; each fault cold
(nothing cached: a clean one-line error well inside the kubelet's 60 s) and warm (a cached
credential past its refresh point but still valid: served, stale-while-error). DNS failure is
an endpoint whose name cannot resolve (``.invalid``). Worst wall time per fault is reported."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.infra.moto import AwsFront, MotoServer, moto_password
from tests.reliability.common import (
    AWS_SECRET,
    AWS_SESSION,
    V1,
    Tally,
    base_env,
    failure_problem,
    run_plugin,
)
from tests.reliability.faultproxy import FaultProxy

ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/team/app"
FAULTS = ("status:500", "status:503", "status:429", "throttling", "reset", "slow", "hang", "dns")
KUBELET_SECONDS = 60.0


def ecr_config(root: Path) -> Path:
    path = root / "ecr.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "rules": [{"match": ["*.dkr.ecr.*.amazonaws.com"], "backend": "ecr"}],
            }
        )
    )
    path.chmod(0o600)
    return path


def ecr_env(root: Path, endpoint: str) -> dict[str, str]:
    return base_env(
        {
            "AWS_ENDPOINT_URL_ECR": endpoint,
            "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_SESSION_TOKEN": AWS_SESSION,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }
    )


def _arm(fault: str, proxy: FaultProxy, front: AwsFront) -> str:
    """Set the fault up; returns the endpoint to give the plugin."""
    if fault == "dns":
        return "http://ecr.unresolvable.invalid"
    if fault == "throttling":
        front.fail("GetAuthorizationToken", "ThrottlingException", "Rate exceeded", status=400)
    else:
        proxy.mode = fault
    return proxy.url


def _one_fault(
    tally: Tally, root: Path, moto: MotoServer, fault: str, token_seconds: float, request: bytes
) -> None:
    """``fault`` cold, and warm: a credential fetched, then waited past its refresh point (50-70 %
    of its life) with more than the stale minimum left, when the refresh meets the fault."""
    front = AwsFront(moto)
    front.expires_in = token_seconds
    try:
        with FaultProxy("127.0.0.1", front.port) as proxy:
            warm_root = root / f"{fault.replace(':', '-')}-warm"
            warm_root.mkdir(parents=True, exist_ok=True)
            primed = run_plugin(
                ["--config", str(ecr_config(warm_root))], request, ecr_env(warm_root, proxy.url)
            )
            if primed.code != 0:
                tally.fail("priming-failed", primed.stderr.decode(errors="replace"))
                return
            primed_at = time.monotonic()
            for state, case_root in (("cold", root / f"{fault.replace(':', '-')}-cold"), ("warm", warm_root)):
                case_root.mkdir(parents=True, exist_ok=True)
                if state == "warm":
                    time.sleep(max(0.0, primed_at + token_seconds * 0.72 - time.monotonic()))
                endpoint = _arm(fault, proxy, front)
                result = run_plugin(
                    ["--config", str(ecr_config(case_root))], request, ecr_env(case_root, endpoint)
                )
                front.heal()
                proxy.mode = "pass"
                tally.case(f"{fault} {state}", result.seconds)
                tally.scan(f"{fault} {state}", result.stderr)
                if result.seconds >= KUBELET_SECONDS:
                    tally.fail("past-the-kubelets-deadline", f"{fault} {state}: {result.seconds:.1f}s")
                if state == "cold":
                    problem = failure_problem(result)
                    if problem:
                        tally.fail(problem, f"{fault} cold: {result.stderr.decode(errors='replace')}")
                elif result.code != 0 or moto_password(ACCOUNT).encode() not in result.stdout:
                    tally.fail("stale-not-served", f"{fault} warm: {result.stderr.decode(errors='replace')}")
    finally:
        front.stop()


def run(root: Path, moto: MotoServer, faults: tuple[str, ...] = FAULTS, token_seconds: float = 80.0) -> Tally:
    """Every fault at once, each with its own front and proxy (the warm case waits out most of a
    token's life, so the faults share that wait)."""
    from concurrent.futures import ThreadPoolExecutor

    tally = Tally("fault injection")
    request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}).encode()
    with ThreadPoolExecutor(max_workers=len(faults)) as pool:
        list(pool.map(lambda fault: _one_fault(tally, root, moto, fault, token_seconds, request), faults))
    return tally
