"""Whether this node has an identity a cloud backend could use, found out quickly.

A cloud backend's node identity comes from its environment variables, from files, or from
the cloud's metadata server. On a node of another cloud (or none) the metadata address is
either refused at once or silently dropped, so one bounded request says "not here" within
about a second, before any SDK is imported. ``doctor`` runs the same probe and shows what it
found. Standard library only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Optional

from provider.backends.base import CloudRule, Finding, Lookup, RuleBase
from provider.errors import NoIdentityError

__all__ = ["IdentitySource", "MetadataProbe", "Presence", "doctor_for", "find_identity", "require_identity"]

# How long a metadata server may take to answer the probe: it answers in milliseconds where
# it exists; a silent address costs this much, once per uncached lookup.
PROBE_SECONDS = 1.0


class MetadataProbe(NamedTuple):
    """One HTTP request that a cloud's metadata server answers in its own way."""

    name: str
    method: str
    url: str
    headers: dict[str, str]
    accept: Callable[[int, Mapping[str, str]], bool]


class IdentitySource(NamedTuple):
    """Where a backend's node identity may come from.

    ``env``: variables any one of which configures an identity. ``files``: the variables naming
    files, and fixed files, whose existence configures one. ``disabled``: a variable and value
    that turn the metadata server off. ``metadata``: the probe for the metadata server, built
    from the environment (None: this backend has none).
    """

    env: tuple[str, ...]
    files: Callable[[Mapping[str, str]], list[str]]
    metadata: Optional[Callable[[Mapping[str, str]], MetadataProbe]]
    disabled: Optional[tuple[str, str]] = None


class Presence(NamedTuple):
    """What a probe found: ``found`` an identity source; ``detail`` one line saying which, or why
    none (no secret in it); ``date`` the metadata server's name and Date header, for clock checks."""

    found: bool
    detail: str
    date: Optional[tuple[str, str]] = None


def _configured(source: IdentitySource, environ: Mapping[str, str]) -> list[str]:
    found = [name for name in source.env if environ.get(name)]
    found += [path for path in source.files(environ) if path and os.path.exists(path)]
    return found


def probe(metadata: MetadataProbe, timeout: float) -> tuple[bool, str, tuple[str, str] | None]:
    """Ask the metadata server once: (accepted, what happened, its Date header)."""
    import http.client  # only when a probe runs: this module loads with every backend
    from urllib.parse import urlsplit

    started = time.monotonic()
    parts = urlsplit(metadata.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(metadata.method, target, headers=metadata.headers)
        reply = connection.getresponse()
        reply.read(65536)
        headers = {key.lower(): value for key, value in reply.getheaders()}
    except OSError as exc:
        what = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        return False, f"{metadata.name} at {metadata.url}: {what}", None
    except http.client.HTTPException as exc:
        return False, f"{metadata.name} at {metadata.url}: not HTTP ({type(exc).__name__})", None
    finally:
        connection.close()
    elapsed = round((time.monotonic() - started) * 1000, 1)
    accepted = metadata.accept(reply.status, headers)
    date = headers.get("date")
    return (
        accepted,
        f"{metadata.name} answered {reply.status} in {elapsed:g} ms",
        (metadata.name, date) if date else None,
    )


def find_identity(
    source: IdentitySource, environ: Mapping[str, str], timeout: float = PROBE_SECONDS
) -> Presence:
    """Whether ``source`` gives this node an identity: configured ones win without a request;
    else the metadata server is asked once, within ``timeout``."""
    configured = _configured(source, environ)
    if configured:
        return Presence(True, f"identity from {', '.join(configured)}")
    if source.metadata is None:
        return Presence(False, "no identity configured")
    metadata = source.metadata(environ)
    if source.disabled is not None and environ.get(source.disabled[0], "").lower() == source.disabled[1]:
        return Presence(False, f"{metadata.name} disabled ({source.disabled[0]}) and no identity configured")
    accepted, what, date = probe(metadata, timeout)
    if accepted:
        return Presence(True, what, date)
    return Presence(False, f"no identity source: {what}", date)


def identity_findings(
    source: IdentitySource, title: str, rule: RuleBase, environ: Mapping[str, str], timeout: float
) -> tuple[bool, list[Finding]]:
    """Whether this node has an identity for ``source``, and doctor's line about it: found (ok),
    not found with ``onNoIdentity: next`` (ok: its images go to the next rule), or not found (fail)."""
    presence = find_identity(source, environ, timeout)
    if presence.found:
        return True, [Finding("ok", presence.detail, presence.date)]
    if isinstance(rule, CloudRule) and rule.on_no_identity == "next":
        detail = (
            f"not on {title} ({presence.detail}): its images go to the next matching rule "
            "(onNoIdentity: next)"
        )
        return False, [Finding("ok", detail, presence.date)]
    return False, [Finding("fail", presence.detail, presence.date)]


def doctor_for(
    source: IdentitySource, title: str
) -> Callable[[RuleBase, Mapping[str, str], float], list[Finding]]:
    """A backend's doctor probe: is there an identity for ``source`` on this node, and what
    happens to the rule's images if not."""

    def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
        return identity_findings(source, title, rule, environ, timeout)[1]

    return doctor


def require_identity(source: IdentitySource, lookup: Lookup, message: str) -> None:
    """Raise ``NoIdentityError`` when this node has no identity for ``source``, within about a
    second (see ``PROBE_SECONDS``), before any SDK is loaded. ``message`` says what was looked
    for and what to do; ``{found}`` in it is replaced by what the probe saw."""
    presence = find_identity(source, lookup.environ, lookup.deadline.bound(PROBE_SECONDS))
    if not presence.found:
        raise NoIdentityError(message.format(found=presence.detail))
