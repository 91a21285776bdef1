"""Fault injection for ``verify IMAGE``: the real CNCF distribution registry (htpasswd, plain
http, the test image pushed) behind the fault proxy, the image named by the proxy's address, the
credential from a docker config file. Plain http lets status faults (500, 503, 429) be injected
as well as resets, slow bodies and hangs; DNS failure is an image whose registry name cannot
resolve (``.invalid``).

- ``v2``: every request faulted, so ``GET /v2/`` (the challenge) meets the fault.
- ``manifest``: only the manifest request faulted (the proxy's ``only``), so the challenge and
  Basic auth pass and ``HEAD /v2/<repo>/manifests/<tag>`` meets it.

Judged by: exit 1, nothing on stderr, no traceback, the report's one ``fail`` line names the
step that met the fault and the verdict says the pull would fail; one attempt at the faulted
request (``verify`` does not retry: it reports); the password (and its Basic header) nowhere;
well inside the kubelet's 60 s (``verify``'s own deadline is 30 s, each request's 10 s, for the
whole answer). Worst wall time per fault is reported.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.infra.images import build_test_image, push_image
from tests.infra.registry import Registry, start_registry
from tests.reliability.common import Exec, Tally, base_env, run_plugin
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.faults import KUBELET_SECONDS

USER = "puller"
PASSWORD = "sentinel-registry-password-9e3b4a"
REPO_TAG = "team/app:v1"
FAULTS = ("status:500", "status:503", "status:429", "reset", "slow", "hang", "dns")
STAGES = ("v2", "manifest")
STEP = {"v2": "GET /v2/", "manifest": "manifest"}
# Every registry request's path holds /v2/; through ``only`` the proxy notes each faulted request.
ONLY = {"v2": "/v2/", "manifest": "/manifests/"}
ATTEMPTS = 1


def start(root: Path) -> Registry:
    """The registry with ``USER`` and the test image pushed as ``REPO_TAG``."""
    registry = start_registry(root / "registry", users={USER: PASSWORD})
    try:
        push_image(build_test_image(root / "image"), registry, REPO_TAG, username=USER, password=PASSWORD)
    except BaseException:
        registry.stop()
        raise
    return registry


def _verify(root: Path, host: str) -> Exec:
    """``verify host/REPO_TAG --plain-http`` with ``host``'s credential in a docker config file."""
    root.mkdir(parents=True, exist_ok=True)
    auth = root / "auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    auth.chmod(0o600)
    config = root / "verify.json"
    rule = {"match": [host], "backend": "dockerconfig", "files": [str(auth)]}
    config.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": [rule]}
        )
    )
    config.chmod(0o600)
    args = ["verify", f"{host}/{REPO_TAG}", "--config", str(config), "--plain-http", "--no-cache"]
    return run_plugin(args, b"", base_env({"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")}))


def verify_problem(result: Exec, step: str) -> str | None:  # noqa: PLR0911 - one return per problem
    """What is wrong with a failed verify's shape, or None."""
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    if result.code == -9:
        return "hang"
    if result.code != 1:
        return f"exit-{result.code}"
    if "Traceback" in text:
        return "traceback"
    if result.stderr:
        return "stderr-on-failure"
    lines = [line.strip() for line in result.stdout.decode("utf-8", "replace").splitlines()]
    failed = [line for line in lines if line.startswith("fail ")]
    if len(failed) != 1:
        return "not-one-fail-line"
    if not failed[0].removeprefix("fail").strip().startswith(step + " "):
        return "wrong-step-named"
    if not lines or not lines[-1].startswith("pull would fail"):
        return "no-verdict"
    return None


def _one(tally: Tally, root: Path, registry: Registry, fault: str, stage: str) -> None:
    label = f"verify {fault} {stage}" if fault != "dns" else "verify dns"
    with FaultProxy("127.0.0.1", registry.port) as proxy:
        proxy.mode, proxy.only = fault, ONLY[stage]
        host = "registry.unresolvable.invalid:5000" if fault == "dns" else f"127.0.0.1:{proxy.port}"
        result = _verify(root / f"{fault.replace(':', '-')}-{stage}", host)
        faulted = len(proxy.faulted)
    tally.case(label, result.seconds)
    secrets = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    if any(secret.encode() in result.stdout + result.stderr for secret in secrets):
        tally.secrets_found += 1
        tally.fail("secret-leaked", f"{label}: the password or its Basic header")
    tally.scan(label, result.stdout, result.stderr)
    problem = verify_problem(result, STEP[stage])
    if problem:
        tally.fail(problem, f"{label}: {(result.stdout + result.stderr).decode(errors='replace')}")
    if result.seconds >= KUBELET_SECONDS:
        tally.fail("past-the-kubelets-deadline", f"{label}: {result.seconds:.1f}s")
    expected = 0 if fault == "dns" else ATTEMPTS
    tally.notes.setdefault("verify_attempts", {})[label] = faulted  # type: ignore[index]
    if faulted != expected:
        tally.fail(
            "unbounded-retries" if faulted > expected else "fault-not-met", f"{label}: {faulted} attempts"
        )


def run(root: Path, faults: tuple[str, ...] = FAULTS, stages: tuple[str, ...] = STAGES) -> Tally:
    """First the unfaulted verify (it must pass, or the faults prove nothing), then each fault at
    each stage (DNS once: nothing reaches the registry)."""
    tally = Tally("verify faults")
    registry = start(root)
    try:
        with FaultProxy("127.0.0.1", registry.port) as proxy:
            clean = _verify(root / "pass", f"127.0.0.1:{proxy.port}")
        tally.case("verify pass", clean.seconds)
        if clean.code != 0:
            tally.fail("unfaulted-verify-failed", clean.stdout.decode(errors="replace"))
        for fault in faults:
            for stage in stages[:1] if fault == "dns" else stages:
                _one(tally, root, registry, fault, stage)
    finally:
        registry.stop()
    return tally
