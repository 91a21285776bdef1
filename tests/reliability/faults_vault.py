"""Fault injection for the ``vault`` backend: the Vault fake (``tests.infra.vault``) behind the
fault proxy, the rule's ``address`` the proxy as ``http://localhost:PORT`` (so a DNS failure of
that very address can be made: the exec runs in its own mount namespace with an ``/etc/hosts``
that lacks ``localhost``; the cache key, which holds the address, stays the same).

Neither hvac nor our code retries a Vault request (hvac adds no retry adapter, requests' default
is none), so each fault must meet exactly one attempt: the proxy counts the faulted requests.

- ``login``: every request faulted, so the pod's Kubernetes login meets the fault.
- ``read``: only the KV v2 read faulted (the proxy's ``only``), so the login passes and the
  read meets the fault.
- ``warm``: a secret cached first (``secretCacheDuration`` 5m); an exec then answers without a
  request to Vault; with the clock moved past its refresh point (libfaketime: 240 s, 60 s
  left) the login meets the fault and the cached credential is served with one warning and a
  cacheDuration of at most a minute (stale-while-error); past its expiry (310 s), a clean error.

Cold cases are judged by: one clean ``error:`` line naming Vault, well inside the kubelet's
60 s; no service account token, Vault token or registry password on stderr. Worst wall time per
fault is reported.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.infra.vault import VaultFake, VaultRole
from tests.reliability.cache_faults import LIBFAKETIME
from tests.reliability.common import V1, Exec, Tally, base_env, failure_problem, run_plugin
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.judging import judge_failure, judge_stale

HOST = "vault-registry.example"
IMAGE = f"{HOST}/team/app"
FAULTS = ("status:500", "status:503", "status:429", "reset", "slow", "hang", "dns")
STAGES = ("login", "read", "warm")
# Every Vault request's path holds /v1/; through ``only`` the proxy notes each faulted request.
ONLY = {"login": "/v1/", "read": "/v1/secret/data/"}
PASSWORD = "sentinel-vault-registry-password-7c1d"
ATTEMPTS = 1  # no retries: see the module docstring
DUE_SECONDS = 240  # past any refresh point of a 5 min secret (50-70 %), 60 s before expiry
EXPIRED_SECONDS = 310


def sa_token(namespace: str = "team-a", name: str = "puller") -> str:
    """A service account JWT as the kubelet sends it (the fake trusts it; nobody checks its signature)."""
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"k"}').decode().rstrip("=")
    claims = {
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": "uid-1"}},
    }
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{payload}.c2VudGluZWwtdmF1bHQtand0LXNpZ25hdHVyZQ"


TOKEN = sa_token()
REQUEST = json.dumps(
    {"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE, "serviceAccountToken": TOKEN}
).encode()


def start_vault() -> VaultFake:
    """The fake with a Kubernetes mount, role ``puller`` and team-a/puller's registry secret."""
    vault = VaultFake().start()
    vault.mount(
        "kubernetes", "kubernetes", {"puller": VaultRole(paths=("registry/{namespace}/{serviceAccount}",))}
    )
    vault.put_secret("registry/team-a/puller", {"username": "robot-a", "password": PASSWORD})
    vault.trusted_jwts.add(TOKEN)
    return vault


def _config(root: Path, port: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "vault.json"
    rule = {"match": [HOST], "backend": "vault", "address": f"http://localhost:{port}", "role": "puller"}
    path.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": [rule]}
        )
    )
    path.chmod(0o600)
    return path


def _no_localhost(root: Path) -> list[str]:
    """A prefix that runs the exec in its own mount namespace, ``/etc/hosts`` without ``localhost``
    (glibc then asks DNS, which has no such name): the address stays, its resolution fails."""
    hosts = root / "hosts-without-localhost"
    hosts.write_text("127.0.0.2 not-localhost\n")
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(hosts)]


def _exec(root: Path, port: int, *, dns: bool = False, later: int = 0) -> Exec:
    """One exec against Vault at ``localhost:port`` (unresolvable with ``dns``), ``later`` s on."""
    root.mkdir(parents=True, exist_ok=True)
    env = base_env({"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")})
    if later:
        # The monotonic clock stays real: a faked one would put the absolute deadlines of
        # Python's timed waits (a thread join) minutes away, and nothing here sleeps.
        env.update({"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+{later}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    prefix = _no_localhost(root) if dns else []
    return run_plugin(["--config", str(_config(root, port))], REQUEST, env, prefix=prefix)


def _secrets(vault: VaultFake) -> list[bytes]:
    """What may never reach stderr: the pod's token, every Vault token issued, the password."""
    with vault._lock:
        tokens = list(vault._tokens)
    return [TOKEN.encode(), PASSWORD.encode(), *(token.encode() for token in tokens)]


def _judge_failure(tally: Tally, label: str, result: Exec, vault: VaultFake) -> None:
    judge_failure(tally, label, result, _secrets(vault), "a token or the password")
    if not failure_problem(result) and b"Vault" not in result.stderr:
        tally.fail("error-does-not-name-vault", f"{label}: {result.stderr.decode(errors='replace')}")


def _attempts(tally: Tally, label: str, proxy: FaultProxy, fault: str) -> None:
    """Exactly one attempt met the fault (none for DNS: nothing reaches the proxy)."""
    attempts = len(proxy.faulted)
    tally.notes.setdefault("vault_attempts", {})[label] = attempts  # type: ignore[index]
    expected = 0 if fault == "dns" else ATTEMPTS
    if attempts > expected:
        tally.fail("unbounded-retries", f"{label}: {attempts} attempts")
    elif attempts < expected:
        tally.fail("fault-not-met", f"{label}: {attempts} attempts")


def _cold(tally: Tally, root: Path, vault: VaultFake, fault: str, stage: str) -> None:
    with FaultProxy("127.0.0.1", vault.port) as proxy:
        proxy.mode = fault if fault != "dns" else "pass"
        proxy.only = ONLY[stage]
        label = f"vault {fault} {stage}"
        result = _exec(root / f"{fault.replace(':', '-')}-{stage}", proxy.port, dns=fault == "dns")
        _judge_failure(tally, label, result, vault)
        _attempts(tally, label, proxy, fault)


def _warm(tally: Tally, root: Path, vault: VaultFake, fault: str) -> None:
    case_root = root / f"{fault.replace(':', '-')}-warm"
    with FaultProxy("127.0.0.1", vault.port) as proxy:
        primed = _exec(case_root, proxy.port)
        if primed.code != 0 or PASSWORD.encode() not in primed.stdout:
            tally.fail("priming-failed", primed.stderr.decode(errors="replace"))
            return
        before = len(vault.requests), proxy.connections
        hit = _exec(case_root, proxy.port)
        tally.case(f"vault {fault} warm hit", hit.seconds)
        if hit.code != 0 or PASSWORD.encode() not in hit.stdout:
            tally.fail("warm-hit-failed", f"vault {fault} warm hit: {hit.stderr.decode(errors='replace')}")
        if (len(vault.requests), proxy.connections) != before:
            tally.fail("warm-hit-asked-vault", f"vault {fault} warm hit")
        proxy.mode, proxy.only = fault if fault != "dns" else "pass", ONLY["login"]
        label = f"vault {fault} warm due"
        stale = _exec(case_root, proxy.port, dns=fault == "dns", later=DUE_SECONDS)
        _attempts(tally, label, proxy, fault)
        judge_stale(tally, label, stale, PASSWORD.encode(), _secrets(vault), "a token or the password")
        expired = _exec(case_root, proxy.port, dns=fault == "dns", later=EXPIRED_SECONDS)
        _judge_failure(tally, f"vault {fault} warm expired", expired, vault)


def run(root: Path, faults: tuple[str, ...] = FAULTS, stages: tuple[str, ...] = STAGES) -> Tally:
    """Each fault at each stage, one after another."""
    tally = Tally("vault faults")
    vault = start_vault()
    try:
        for fault in faults:
            for stage in stages:
                if stage == "warm":
                    _warm(tally, root, vault, fault)
                else:
                    _cold(tally, root, vault, fault, stage)
    finally:
        vault.stop()
    return tally
