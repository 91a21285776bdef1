"""The core: one request's bytes in, one response's bytes out, plus warnings.

``answer`` tries the disk cache's fast path first (``provider.fastpath``: standard library
only, no config parsing), then the full path (``provider.fullpath``: our config, the rules,
the backends and the disk cache's policy). Kubelet mode, ``test`` and ``verify`` all call it,
so what an operator sees is exactly what the kubelet gets, and ``Reply.path`` says which path
served it. Nothing here touches the process (argv, stdin, stdout, exit codes, signals):
``provider.__main__`` does, and hands in a ``guard`` for the process-wide parts of a call.

This module is imported on every pull: everything the full path needs is imported inside
``_full``, after the fast path has declined.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal, NamedTuple, Optional

if TYPE_CHECKING:
    from provider import metrics
    from provider.deadline import Deadline
    from provider.fullpath import Outcome
    from provider.metrics import UpstreamCall

__all__ = ["Reply", "answer"]

Path = Literal["fast", "full"]


class Reply(NamedTuple):
    """What the kubelet gets on stdout (one JSON line), the warnings for stderr, which path
    served it, and, from the full path, how the answer was reached (rule, backend, cache)."""

    stdout: bytes
    warnings: list[str]
    path: Path
    outcome: Optional[Outcome] = None

    @property
    def cache(self) -> str:
        """How the disk cache took part: ``off``, ``hit``, ``miss``, ``refresh`` or ``stale``
        (a fast path answer is a ``hit``)."""
        return "hit" if self.outcome is None else self.outcome.cache


def _no_guard(deadline: Deadline) -> AbstractContextManager[object]:
    return nullcontext()


def answer(
    data: bytes,
    *,
    config_path: str | None,
    environ: Mapping[str, str],
    timeout: float | None = None,
    started: float | None = None,
    use_cache: bool = True,
    fast_path: bool = True,
    warn: Callable[[str], None] | None = None,
    guard: Callable[[Deadline], AbstractContextManager[object]] = _no_guard,
    now: Callable[[], float] = time.time,
    metrics: bool = False,
) -> Reply:
    """The response to the request ``data`` under the config at ``config_path`` (None: the
    embedded default); raises a ``ProviderError`` subclass on failure.

    ``timeout``: the call's deadline in seconds (None: the config's ``timeout``), counted from
    ``started`` (``time.monotonic()``; default now). ``use_cache`` False neither reads nor writes
    the disk cache; ``fast_path`` False goes straight to the full path (which still uses the
    disk cache). Warnings go to ``warn`` as they happen and into ``Reply.warnings``. ``guard``
    wraps the full path's work once its deadline is known (kubelet mode: a SIGALRM backstop).
    ``now``: the wall clock credentials' expiry is judged by. ``metrics``: record the call in the
    config's metrics textfile, if it names one (kubelet mode does; the operator's commands do not).
    """
    started = time.monotonic() if started is None else started
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    if use_cache and fast_path:
        from provider import fastpath

        cached = fastpath.answer(config_path, data, environ, now(), metrics=metrics)
        if cached is not None:
            return Reply(cached, warnings, "fast")
    return _full(data, config_path, environ, timeout, started, use_cache, note, guard, warnings, now, metrics)


def _full(
    data: bytes,
    config_path: str | None,
    environ: Mapping[str, str],
    timeout: float | None,
    started: float,
    use_cache: bool,
    note: Callable[[str], None],
    guard: Callable[[Deadline], AbstractContextManager[object]],
    warnings: list[str],
    now: Callable[[], float],
    metrics: bool,
) -> Reply:
    from provider.cachekeys import config_version
    from provider.config import load_config
    from provider.deadline import Deadline
    from provider.fullpath import CacheContext, respond
    from provider.kubelet import decode_request, encode_response
    from provider.redact import register_environment

    register_environment(environ)
    version = config_version(config_path)  # before reading it: a later edit must not inherit this plan
    config = load_config(config_path)
    if config_path is not None:
        from provider.safefile import trust_problem

        problem = trust_problem(config_path)
        if problem is not None:
            note(
                f"{problem}, yet it chooses what this plugin reads and runs; "
                "make it root's, not writable by others"
            )
    seconds = (timeout or config.timeout_seconds) - (time.monotonic() - started)
    deadline = Deadline(max(seconds, 0.001))
    textfile = config.metrics.textfile if metrics else None
    calls: list[UpstreamCall] = []
    with guard(deadline):
        try:
            request = decode_request(data)
            cache = (
                CacheContext.open(config, config_version=version, environ=environ, warn=note)
                if use_cache
                else None
            )
            outcome = respond(
                request,
                config,
                deadline=deadline,
                environ=environ,
                warn=note,
                now=now,
                cache=cache,
                calls=calls,
            )
            stdout = encode_response(outcome.response)
        except Exception:
            if textfile is not None:
                _record(textfile, _failed(calls), note)
            raise
        if textfile is not None:
            _record(textfile, _answered(outcome, calls, now()), note)
    return Reply(stdout, warnings, "full", outcome)


def _calls_update(calls: list[UpstreamCall]) -> metrics.Update:
    from provider import metrics

    update = metrics.Update()
    for call in calls:
        update.inc(metrics.UPSTREAM_CALLS, backend=call.backend, registry=call.registry)
        if call.kind is not None:
            update.inc(
                metrics.UPSTREAM_FAILURES, backend=call.backend, registry=call.registry, kind=call.kind
            )
    return update


def _failed(calls: list[UpstreamCall]) -> metrics.Update:
    """A failed call: the error answer, under the backend that failed last (``none`` if none did)."""
    from provider import metrics

    update = _calls_update(calls)
    update.inc(metrics.ANSWERS, backend=calls[-1].backend if calls else "none", outcome="error")
    return update


def _answered(outcome: Outcome, calls: list[UpstreamCall], now: float) -> metrics.Update:
    from provider import metrics

    update = _calls_update(calls)
    backend = outcome.match.backend if outcome.match is not None else "none"
    credential = outcome.answer.credential if outcome.answer is not None else None
    if credential is None:
        update.inc(metrics.ANSWERS, backend=backend, outcome="empty")
        return update
    registry = next(iter(outcome.response.auth)).split("/", 1)[0]
    answered = "stale" if outcome.cache == "stale" else "credentials"
    update.inc(metrics.ANSWERS, backend=backend, outcome=answered)
    if outcome.cache == "hit":
        update.inc(metrics.CACHE_HITS, path="full")
    update.at_least(metrics.LAST_SUCCESS, now, backend=backend, registry=registry)
    if credential.expires_at is not None:
        update.at_least(metrics.CREDENTIAL_EXPIRY, credential.expires_at, backend=backend, registry=registry)
    return update


def _record(textfile: str, update: metrics.Update, note: Callable[[str], None]) -> None:
    from provider import metrics

    try:
        metrics.record(textfile, update)
    except OSError as exc:
        note(f"cannot update the metrics textfile {textfile}: {exc.strerror or type(exc).__name__}")
