"""Fault injection for ACR: the Azure fakes (``tests.infra.azure``) behind the fault proxy.

- ``imds``: the managed identity's token request at IMDS faulted (the proxy's ``only``; IMDS is
  plain http, ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` is the proxy), every fault; cold, so one
  clean error line well inside the kubelet's 60 s, attempts bounded, retry pauses recorded (from
  when the proxy saw them) and compared across faults for jitter.
- ``registry``: the login server behind the proxy (the image names the proxy's address, so the
  ``/v2/`` challenge meets the fault; it is https, so only connection faults: reset, slow, hang,
  and a login server whose name cannot resolve).
- ``exchange``: ``/oauth2/exchange`` answering 500, 503 or 429 (the fake's ``exchange_status``);
  the exchanges the fake recorded are the attempts.
- ``warm``: a refresh token cached first; an exec then answers with no request to any fake; past
  its refresh point (libfaketime: 8,000 s of its 3 h) under an IMDS fault, the cached one is
  served with a warning and a cacheDuration of at most a minute; past its expiry, a clean error.
"""

from __future__ import annotations

import json
from pathlib import Path

from provider.azure.exchange import ATTEMPTS as EXCHANGE_ATTEMPTS
from tests.infra.azure import TENANT, AzureWorld
from tests.reliability.cache_faults import LIBFAKETIME
from tests.reliability.common import V1, Exec, Tally, base_env, run_plugin
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.judging import check_jitter, judge_failure, judge_stale, record_pauses

FAULTS = ("status:500", "status:503", "status:429", "reset", "slow", "hang", "dns")
REGISTRY_FAULTS = ("reset", "slow", "hang", "dns")
EXCHANGE_STATUSES = (500, 503, 429)
IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"
# azure-identity's managed identity client: its own retries, cut to 2 (provider/azure/entra.py).
IMDS_ATTEMPTS = 3
RETRIED = ("status:500", "status:503", "status:429")
DUE_SECONDS = 8000  # past any refresh point (50-70 % of 3 h), 2,800 s before expiry
EXPIRED_SECONDS = 3 * 3600 + 100


def _exec(root: Path, world: AzureWorld, host: str, imds: str, *, later: int = 0) -> Exec:
    """One exec for ``host``'s image, IMDS at ``imds``, ``later`` seconds in the future."""
    root.mkdir(parents=True, exist_ok=True)
    azure_json = root / "azure.json"
    azure_json.write_text(json.dumps({"tenantId": TENANT, "useManagedIdentityExtension": True}))
    config = root / "acr.json"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "rules": [{"match": [host], "backend": "acr", "azureConfig": str(azure_json)}],
            }
        )
    )
    config.chmod(0o600)
    env = base_env(
        {
            **world.environ,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": imds,
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }
    )
    if later:
        env.update({"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+{later}"})
    request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": f"{host}/team/app"})
    return run_plugin(["--config", str(config)], request.encode(), env)


def _secrets(world: AzureWorld) -> list[bytes]:
    with world.book.lock:
        return [token.encode() for token in (*world.book.access, *world.book.refresh)]


def _judge_failure(tally: Tally, label: str, result: Exec, world: AzureWorld) -> None:
    judge_failure(tally, label, result, _secrets(world), "a token")


def _attempts(tally: Tally, label: str, attempts: int, bound: int) -> None:
    tally.notes.setdefault("acr_attempts", {})[label] = attempts  # type: ignore[index]
    if attempts > bound:
        tally.fail("unbounded-retries", f"{label}: {attempts} attempts")


def _imds(tally: Tally, root: Path, world: AzureWorld, fault: str) -> None:
    with FaultProxy("127.0.0.1", world.imds.port) as proxy:
        proxy.mode, proxy.only = fault, IMDS_TOKEN_PATH
        imds = "http://metadata.unresolvable.invalid" if fault == "dns" else proxy.url
        label = f"acr imds {fault}"
        result = _exec(root / f"imds-{fault.replace(':', '-')}", world, world.login_server, imds)
        _judge_failure(tally, label, result, world)
        _attempts(tally, label, len(proxy.faulted), IMDS_ATTEMPTS)
        if fault in RETRIED:
            if len(proxy.faulted) < 2:
                tally.fail("not-retried", f"{label}: {len(proxy.faulted)} attempt")
            record_pauses(tally, "acr_retry_pauses", label, proxy.faulted)


def _registry(tally: Tally, root: Path, world: AzureWorld, fault: str) -> None:
    port = int(world.login_server.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        proxy.mode = fault
        host = "acr.unresolvable.invalid" if fault == "dns" else f"127.0.0.1:{proxy.port}"
        label = f"acr registry {fault}"
        result = _exec(root / f"registry-{fault}", world, host, world.imds.url)
        _judge_failure(tally, label, result, world)
        _attempts(tally, label, len(proxy.faulted), EXCHANGE_ATTEMPTS)


def _exchange(tally: Tally, root: Path, world: AzureWorld, status: int) -> None:
    before = len(world.acr.exchanges())
    world.acr.exchange_status = status
    try:
        label = f"acr exchange status:{status}"
        result = _exec(root / f"exchange-{status}", world, world.login_server, world.imds.url)
    finally:
        world.acr.exchange_status = None
    _judge_failure(tally, label, result, world)
    attempts = len(world.acr.exchanges()) - before
    _attempts(tally, label, attempts, EXCHANGE_ATTEMPTS)
    if attempts < 2:
        tally.fail("not-retried", f"{label}: {attempts} attempt")


def _warm(tally: Tally, root: Path, world: AzureWorld, fault: str) -> None:
    case_root = root / f"warm-{fault.replace(':', '-')}"
    with FaultProxy("127.0.0.1", world.imds.port) as proxy:
        primed = _exec(case_root, world, world.login_server, proxy.url)
        if primed.code != 0:
            tally.fail("priming-failed", primed.stderr.decode(errors="replace"))
            return
        password = json.loads(primed.stdout)["auth"][world.login_server]["password"].encode()
        before = world.all_requests()
        hit = _exec(case_root, world, world.login_server, proxy.url)
        tally.case(f"acr {fault} warm hit", hit.seconds)
        if hit.code != 0 or password not in hit.stdout:
            tally.fail("warm-hit-failed", f"acr {fault} warm hit: {hit.stderr.decode(errors='replace')}")
        if world.all_requests() != before:
            tally.fail("warm-hit-asked-azure", f"acr {fault} warm hit")
        proxy.mode, proxy.only = fault, IMDS_TOKEN_PATH
        imds = "http://metadata.unresolvable.invalid" if fault == "dns" else proxy.url
        label = f"acr {fault} warm due"
        stale = _exec(case_root, world, world.login_server, imds, later=DUE_SECONDS)
        judge_stale(tally, label, stale, password, [password], "the refresh token")
        expired = _exec(case_root, world, world.login_server, imds, later=EXPIRED_SECONDS)
        _judge_failure(tally, f"acr {fault} warm expired", expired, world)


def run(
    root: Path,
    world: AzureWorld,
    faults: tuple[str, ...] = FAULTS,
    registry_faults: tuple[str, ...] = REGISTRY_FAULTS,
    statuses: tuple[int, ...] = EXCHANGE_STATUSES,
) -> Tally:
    """Each fault at IMDS cold and warm, at the login server, and at the exchange."""
    tally = Tally("acr faults")
    for fault in faults:
        _imds(tally, root, world, fault)
        _warm(tally, root, world, fault)
    for fault in registry_faults:
        _registry(tally, root, world, fault)
    for status in statuses:
        _exchange(tally, root, world, status)
    check_jitter(tally, "acr_retry_pauses")
    return tally
