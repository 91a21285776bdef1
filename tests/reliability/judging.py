"""The verdicts the cloud fault parts (GAR, ACR, Vault) share: a failed exec's shape, a stale
answer's shape, and whether retry pauses differ from one exec to the next."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from provider.credcache import STALE_CACHE_SECONDS
from provider.goduration import parse_seconds
from tests.reliability.common import Exec, Tally, failure_problem
from tests.reliability.faults import KUBELET_SECONDS

STALE_WARNING = "answering with the cached credential"


def judge_failure(tally: Tally, label: str, result: Exec, secrets: Iterable[bytes], leaked: str) -> None:
    """A failure as the kubelet needs it: one error line, nothing on stdout, inside its deadline,
    none of ``secrets`` on stderr (``leaked`` says which kind, for the failure's example)."""
    tally.case(label, result.seconds)
    tally.scan(label, result.stderr, result.stdout)
    if any(secret in result.stderr for secret in secrets):
        tally.fail("secret-leaked", f"{label}: {leaked} on stderr")
    problem = failure_problem(result)
    if problem:
        tally.fail(problem, f"{label}: {result.stderr.decode(errors='replace')}")
    if result.seconds >= KUBELET_SECONDS:
        tally.fail("past-the-kubelets-deadline", f"{label}: {result.seconds:.1f}s")


def judge_stale(
    tally: Tally, label: str, result: Exec, credential: bytes, secrets: Iterable[bytes], leaked: str
) -> None:
    """A refresh that failed while ``credential`` was cached and valid: that credential is the
    answer, with a short cacheDuration and one warning line, and no secret on stderr."""
    tally.case(label, result.seconds)
    tally.scan(label, result.stderr)
    stderr = result.stderr.decode(errors="replace")
    if result.code != 0 or credential not in result.stdout:
        tally.fail("stale-not-served", f"{label}: {stderr}")
    else:
        duration = json.loads(result.stdout).get("cacheDuration", "")
        if parse_seconds(duration) > STALE_CACHE_SECONDS:
            tally.fail("stale-cache-duration-too-long", f"{label}: cacheDuration {duration!r}")
        if STALE_WARNING not in stderr or len(stderr.splitlines()) != 1:
            tally.fail("stale-without-one-warning", f"{label}: {stderr}")
    if any(secret in result.stderr for secret in secrets):
        tally.fail("secret-leaked", f"{label}: {leaked} on stderr")


def record_pauses(tally: Tally, note: str, label: str, attempts_at: Sequence[float]) -> None:
    """The pauses between the attempts the fault proxy saw, kept under ``note`` by ``label``."""
    pauses = [round(b - a, 3) for a, b in zip(attempts_at, attempts_at[1:])]
    tally.notes.setdefault(note, {})[label] = pauses  # type: ignore[index]


def check_jitter(tally: Tally, note: str) -> None:
    """Two execs with the same pauses between their retries: a fleet failing together would
    retry together."""
    pauses = tally.notes.get(note, {})
    assert isinstance(pauses, dict)
    if len(pauses) > 1 and len({tuple(p) for p in pauses.values()}) < len(pauses):
        tally.fail("retries-not-jittered", f"the same pauses twice: {pauses}")
