"""When to answer from the disk cache, and how to refresh it.

- Fresh (before ``refresh_at``): answer from the cache.
- Due (after ``refresh_at``) or missing: take the key's cross-process lock, look again (a
  process we waited for may have just fetched it), else fetch, store, and answer.
- The fetch fails but the cached credential is still valid: answer with it, a short
  ``cacheDuration`` and a warning (stale-while-error). Nothing valid left: the error stands.

``refresh_at`` falls at a random 50-70 % of the credential's lifetime, so a fleet of nodes
that booted together does not refresh together. A refresh that brings back the very credential
we held means the source caches its tokens (Google's metadata server hands out the same token
until it has 5 minutes left): taking 50-70 % of what that token has left would ask again and
again for the same token, so the next refresh waits until shortly before expiry instead
(``REISSUE_MARGIN``), when the source hands out a new one.
"""

from __future__ import annotations

import random

from provider.backends.base import Answer, Backend, Credential, Lookup
from provider.cache import CachedCredential, CredentialStore
from provider.cachekeys import credential_key
from provider.errors import ProviderError
from provider.metrics import UpstreamCall, failure_kind

__all__ = ["REFRESH_WINDOW", "REISSUE_MARGIN", "STALE_CACHE_SECONDS", "Fetched", "obtain"]

REFRESH_WINDOW = (0.5, 0.7)
# Seconds before expiry to ask a source that handed back the credential we held: under the 5
# minutes at which the metadata server mints a new token, and at most google-auth's own refresh
# threshold (3 min 45 s), which it uses against the same server.
REISSUE_MARGIN = (180.0, 225.0)
# How long the kubelet may keep a credential we hand out while its refresh is failing.
STALE_CACHE_SECONDS = 60.0
# A cached credential with less left than this is not worth handing out, even stale.
MIN_STALE_VALIDITY = 10.0
# Longest a process waits for another one fetching the same key.
MAX_LOCK_WAIT = 20.0


class Fetched:
    """An answer, how it was obtained (``off``, ``hit``, ``miss``, ``refresh``, ``stale``), and
    the key material of its cache entry (None when it is not cached)."""

    def __init__(self, answer: Answer, state: str, parts: tuple[str, ...] | None = None) -> None:
        self.answer = answer
        self.state = state
        self.parts = parts


def _from_entry(entry: CachedCredential, cache_seconds: float | None = None) -> Answer:
    credential = Credential(
        username=entry.username,
        password=entry.password,
        expires_at=entry.credential_expires_at,
        path_scope=entry.path_scope,
    )
    seconds = entry.cache_seconds if cache_seconds is None else cache_seconds
    return Answer(
        credential=credential,
        cache_seconds=seconds,
        per_image=entry.per_image,
        cacheable=True,
        depends_on=tuple(entry.depends_on),
    )


def refresh_time(
    fetched_at: float, expires_at: float, rng: random.Random, *, handed_back: bool = False
) -> float:
    """When to fetch again: a random point in ``REFRESH_WINDOW`` of the lifetime; when the source
    ``handed_back`` the credential we held, no earlier than ``REISSUE_MARGIN`` before expiry."""
    window = fetched_at + (expires_at - fetched_at) * rng.uniform(*REFRESH_WINDOW)
    if not handed_back:
        return window
    return max(window, expires_at - rng.uniform(*REISSUE_MARGIN))


def _call(backend: Backend, name: str, lookup: Lookup, calls: list[UpstreamCall] | None) -> Answer:
    """The backend's answer from its source, noted in ``calls`` (for the metrics)."""
    try:
        answer = backend.get_credentials(lookup)
    except Exception as exc:
        if calls is not None:
            calls.append(UpstreamCall(name, lookup.host, failure_kind(exc)))
        raise
    if calls is not None:
        calls.append(UpstreamCall(name, lookup.host, None))
    return answer


def obtain(  # noqa: PLR0911 - each return is one outcome of the policy in the module docstring
    backend: Backend,
    backend_name: str,
    lookup: Lookup,
    store: CredentialStore | None,
    identity: str,
    *,
    rng: random.Random,
    calls: list[UpstreamCall] | None = None,
) -> Fetched:
    """The answer for ``lookup``, through the disk cache when the backend allows it; every call
    to the backend's source is appended to ``calls``."""
    parts = backend.cache_key(lookup) if store is not None else None
    if store is None or parts is None or not store.usable:
        return Fetched(_call(backend, backend_name, lookup, calls), "off")
    key = credential_key(backend_name, lookup.host, parts, identity)
    now = lookup.now()
    cached = store.get_credential(key)
    if cached is not None and now < cached.refresh_at and now < cached.expires_at:
        return Fetched(_from_entry(cached), "hit", parts)

    wait = min(MAX_LOCK_WAIT, max(0.0, lookup.deadline.remaining() - 2.0))
    with store.lock(key, wait):
        now = lookup.now()
        cached = store.get_credential(key) or cached
        if cached is not None and now < cached.refresh_at and now < cached.expires_at:
            return Fetched(_from_entry(cached), "hit", parts)
        try:
            answer = _call(backend, backend_name, lookup, calls)
        except ProviderError as exc:
            left = cached.expires_at - now if cached is not None else 0.0
            if cached is None or left < MIN_STALE_VALIDITY:
                raise
            lookup.warn(f"{exc}; answering with the cached credential, valid for {int(left)}s more")
            return Fetched(_from_entry(cached, min(STALE_CACHE_SECONDS, left / 2)), "stale", parts)
        state = "refresh" if cached is not None else "miss"
        credential = answer.credential
        if credential is None or not answer.cacheable:
            return Fetched(answer, state)
        now = lookup.now()
        expires_at = credential.expires_at
        if expires_at is None and answer.keep_seconds:
            expires_at = now + answer.keep_seconds
        if expires_at is None or expires_at <= now:
            return Fetched(answer, state)
        store.put_credential(
            key,
            CachedCredential(
                username=credential.username,
                password=credential.password,
                expires_at=expires_at,
                fetched_at=now,
                refresh_at=refresh_time(
                    now,
                    expires_at,
                    rng,
                    handed_back=cached is not None and cached.password == credential.password,
                ),
                credential_expires_at=credential.expires_at,
                path_scope=credential.path_scope,
                per_image=answer.per_image,
                cache_seconds=answer.cache_seconds,
                depends_on=list(answer.depends_on),
                backend=backend_name,
                registry=lookup.host,
                identity=identity,
                parts=list(parts),
            ),
            now,
        )
        return Fetched(answer, state, parts)
