"""Fault injection for GAR: the Google fake's metadata server behind the fault proxy
(``GCE_METADATA_HOST`` is the proxy), each fault cold (nothing cached). Judged by: one clean
error line well inside the kubelet's 60 s, and retries bounded (the attempts the proxy saw are
at most ``provider.google.sdk.ATTEMPTS``; how many is reported). Worst wall time per fault.

Every fault here meets the plugin's first metadata request, the identity probe, which takes
any failure for "no metadata server" without retrying (one attempt each, so no pauses to
compare for jitter); faults at the token call alone need a path-aware proxy."""

from __future__ import annotations

import json
from pathlib import Path

from provider.google.sdk import ATTEMPTS
from tests.infra.google import GoogleFake
from tests.reliability.common import V1, Tally, base_env, failure_problem, run_plugin
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.faults import KUBELET_SECONDS

IMAGE = "europe-docker.pkg.dev/my-project/repo/app"
FAULTS = ("status:500", "status:503", "status:429", "reset", "slow", "hang", "dns")


def _config(root: Path) -> Path:
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


def _once(tally: Tally, root: Path, google: GoogleFake, fault: str) -> None:
    """One cold exec under ``fault``."""
    case_root = root / fault.replace(":", "-")
    case_root.mkdir(parents=True, exist_ok=True)
    with FaultProxy("127.0.0.1", google.port) as proxy:
        proxy.mode = fault
        host = "metadata.unresolvable.invalid" if fault == "dns" else f"127.0.0.1:{proxy.port}"
        env = base_env(
            {"GCE_METADATA_HOST": host, "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(case_root / "cache")}
        )
        request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}).encode()
        result = run_plugin(["--config", str(_config(case_root))], request, env)
        tally.case(f"gar {fault}", result.seconds)
        tally.scan(f"gar {fault}", result.stderr, result.stdout)
        if google.node_token.encode() in result.stderr:
            tally.fail("secret-leaked", f"gar {fault}: the token on stderr")
        problem = failure_problem(result)
        if problem:
            tally.fail(problem, f"gar {fault}: {result.stderr.decode(errors='replace')}")
        if result.seconds >= KUBELET_SECONDS:
            tally.fail("past-the-kubelets-deadline", f"gar {fault}: {result.seconds:.1f}s")
        attempts = proxy.connections
        if attempts > ATTEMPTS:
            tally.fail("unbounded-retries", f"gar {fault}: {attempts} attempts")
        tally.notes.setdefault("gar_attempts", {})[fault] = attempts  # type: ignore[index]


def run(root: Path, faults: tuple[str, ...] = FAULTS) -> Tally:
    """Each fault cold, one after another."""
    tally = Tally("gar faults")
    with GoogleFake() as google:
        for fault in faults:
            _once(tally, root, google, fault)
    return tally
