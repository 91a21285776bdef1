"""Fault injection for GAR: the Google fake's metadata server behind the fault proxy
(``GCE_METADATA_HOST`` is the proxy). Judged by: one clean error line well inside the kubelet's
60 s, retries bounded (the attempts the proxy saw are at most ``provider.google.sdk.ATTEMPTS``)
and jittered (the pauses between attempts differ from one exec to the next: taken from when the
proxy saw them, compared, never held against a time). Worst wall time per fault.

- ``probe``: every request faulted, so the fault meets the plugin's first metadata request, the
  identity probe, which takes any failure for "no metadata server" without retrying.
- ``token``: only the token request faulted (the proxy's ``only``), so the probe passes and the
  token call meets the fault, and is retried.
- ``warm``: a credential cached first; an exec then answers from the cache without a metadata
  request; with the clock moved past its refresh point (libfaketime: 2,600 s of the fake's
  3,599 s token) the refresh meets the fault and the cached token is served with a warning and a
  short cacheDuration (stale-while-error); past its expiry (3,700 s) the fault is a clean error.
"""

from __future__ import annotations

import json
from pathlib import Path

from provider.google.sdk import ATTEMPTS
from tests.infra.google import GoogleFake
from tests.reliability.cache_faults import LIBFAKETIME
from tests.reliability.common import V1, Exec, Tally, base_env, run_plugin
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.judging import check_jitter, judge_failure, judge_stale, record_pauses

IMAGE = "europe-docker.pkg.dev/my-project/repo/app"
FAULTS = ("status:500", "status:503", "status:429", "reset", "slow", "hang", "dns")
# Faults the token call retries (a slow answer or a hang runs out its timeout once, DNS fails fast).
RETRIED = ("status:500", "status:503", "status:429", "reset")
STAGES = ("probe", "token", "warm")
DUE_SECONDS = 2600  # past any refresh point of a 3,599 s token (50-70 %), 999 s before expiry
EXPIRED_SECONDS = 3700
REQUEST = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}).encode()


def _config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "gar.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "rules": [{"match": ["*.pkg.dev"], "backend": "gar"}],
            }
        )
    )
    path.chmod(0o600)
    return path


def _exec(root: Path, host: str, *, later: int = 0) -> Exec:
    """One exec with ``GCE_METADATA_HOST`` = ``host``, ``later`` seconds in the future."""
    env = base_env({"GCE_METADATA_HOST": host, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")})
    if later:
        # Monotonic clocks are faked too: libfaketime's sleeps fail with EINVAL otherwise.
        env.update({"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+{later}"})
    return run_plugin(["--config", str(_config(root))], REQUEST, env)


def _attempts(tally: Tally, label: str, proxy: FaultProxy, fault: str, retried: bool) -> None:
    attempts = len(proxy.faulted)
    tally.notes.setdefault("gar_attempts", {})[label] = attempts  # type: ignore[index]
    if attempts > ATTEMPTS:
        tally.fail("unbounded-retries", f"{label}: {attempts} attempts")
    if retried and fault in RETRIED:
        if attempts < 2:
            tally.fail("not-retried", f"{label}: {attempts} attempt")
        record_pauses(tally, "gar_retry_pauses", label, proxy.faulted)


def _cold(tally: Tally, root: Path, google: GoogleFake, fault: str, stage: str) -> None:
    with FaultProxy("127.0.0.1", google.port) as proxy:
        proxy.mode = fault
        proxy.only = "/token" if stage == "token" else None
        host = "metadata.unresolvable.invalid" if fault == "dns" else f"127.0.0.1:{proxy.port}"
        label = f"gar {fault}" if stage == "probe" else f"gar {fault} {stage}"
        result = _exec(root / f"{fault.replace(':', '-')}-{stage}", host)
        judge_failure(tally, label, result, [google.node_token.encode()], "the token")
        _attempts(tally, label, proxy, fault, retried=stage == "token")


def _warm(tally: Tally, root: Path, google: GoogleFake, fault: str) -> None:
    case_root = root / f"{fault.replace(':', '-')}-warm"
    with FaultProxy("127.0.0.1", google.port) as proxy:
        host = f"127.0.0.1:{proxy.port}"
        primed = _exec(case_root, host)
        if primed.code != 0:
            tally.fail("priming-failed", primed.stderr.decode(errors="replace"))
            return
        before = google.token_requests(), proxy.connections
        hit = _exec(case_root, host)
        tally.case(f"gar {fault} warm hit", hit.seconds)
        if hit.code != 0 or google.node_token.encode() not in hit.stdout:
            tally.fail("warm-hit-failed", f"gar {fault} warm hit: {hit.stderr.decode(errors='replace')}")
        if (google.token_requests(), proxy.connections) != before:
            tally.fail("warm-hit-asked-metadata", f"gar {fault} warm hit")
        proxy.mode = fault
        proxy.only = "/token"
        faulted_host = "metadata.unresolvable.invalid" if fault == "dns" else host
        stale = _exec(case_root, faulted_host, later=DUE_SECONDS)
        label = f"gar {fault} warm due"
        _attempts(tally, label, proxy, fault, retried=False)
        token = google.node_token.encode()
        judge_stale(tally, label, stale, token, [token], "the token")
        expired = _exec(case_root, faulted_host, later=EXPIRED_SECONDS)
        judge_failure(tally, f"gar {fault} warm expired", expired, [token], "the token")


def run(root: Path, faults: tuple[str, ...] = FAULTS, stages: tuple[str, ...] = STAGES) -> Tally:
    """Each fault at each stage, one after another; then whether the retry pauses differed."""
    tally = Tally("gar faults")
    with GoogleFake() as google:
        for fault in faults:
            for stage in stages:
                if stage == "warm":
                    _warm(tally, root, google, fault)
                else:
                    _cold(tally, root, google, fault, stage)
    check_jitter(tally, "gar_retry_pauses")
    return tally
