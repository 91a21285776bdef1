"""The disk cache's hit path, lean enough to run on every pull.

After a kubelet restart, most calls ask again for what the disk cache already holds. This
module answers those with the standard library alone: it reads the request with ``json``,
finds the plan recorded for it (see ``provider.cachekeys``) and its credential straight in
diskcache's SQLite table (opened read-only), checks both are fresh and that no file the answer
depends on has changed, and prints the response. It never parses the config, imports msgspec,
diskcache or a cloud SDK, and never writes.

It answers only what the full path would answer byte for byte: the request must be one
``provider.kubelet.decode_request`` accepts (strict UTF-8 JSON, no BOM, no NaN, no lone
surrogate, no null where a string or map is due, and no duplicate key at all), and every record
must be exactly what ``provider.cache`` writes (names and versions from
``provider.cacherecords``, every field's type, sane times and durations, a response key that
covers the image). Anything else, including any error, declines: ``answer`` returns None and
the full path (which reports errors properly) takes over. With ``REGISTRY_CREDENTIAL_PROVIDER_DEBUG=1``
a decline prints one line on stderr saying why (field names only, never a value).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from typing import Any

from provider import cacherecords as records
from provider import goduration
from provider.cachekeys import (
    CACHE_DIR_ENV,
    DATABASE,
    DEBUG_ENV,
    DEFAULT_DIR,
    cache_seconds,
    config_version,
    credential_key,
    dir_problem,
    environment_version,
    file_version,
    plan_key,
)
from provider.identity import identity
from provider.matching import BadURLError, parse_schemeless, urls_match
from provider.protocol import API_VERSIONS, MAX_REQUEST_BYTES, REQUEST_KIND, RESPONSE_KIND

_SELECT = (
    "SELECT value FROM Cache WHERE key = ? AND raw = 1 AND mode = 1 AND filename IS NULL"
    " AND (expire_time IS NULL OR expire_time > ?)"
)
# The full path writes only these two (plugin.respond); anything else is not its answer.
_CACHE_KEY_TYPES = ("Image", "Registry")
# Go's longest duration in whole seconds: a longer cacheDuration is one the kubelet rejects.
MAX_DURATION_SECONDS = ((1 << 63) - 1) // goduration.SECOND
# No time we wrote lies beyond this (the year 5138).
_LATEST = 1e11
_PLAN_FIELDS = frozenset(records.PLAN_FIELDS)
_CREDENTIAL_FIELDS = frozenset(records.CREDENTIAL_FIELDS)


class _Decline(Exception):
    """The fast path cannot vouch for an answer; the message says why, with no value in it."""


def answer(
    config_path: str | None,
    data: bytes,
    environ: Mapping[str, str],
    now: float | None = None,
    *,
    metrics: bool = False,
) -> bytes | None:
    """The response for ``data`` from the disk cache, or None when the full path must answer.
    ``metrics``: record the hit in the config's metrics textfile, if it names one."""
    now = time.time() if now is None else now
    try:
        response, plan, credential = _answer(config_path, data, environ, now)
    except _Decline as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"unexpected {type(exc).__name__}"  # its message might hold a secret
    else:
        if metrics and plan[records.METRICS_TEXTFILE] is not None:
            _record_hit(plan, credential, now)
        return response
    if environ.get(DEBUG_ENV) == "1":
        sys.stderr.write(f"registry-credential-provider: debug: fast path declined: {reason}\n")
    return None


def _record_hit(plan: dict[str, Any], credential: dict[str, Any], now: float) -> None:
    """Count the hit in the metrics textfile; a failure to write it costs the kubelet nothing."""
    from provider import metrics

    update = metrics.hit(
        plan[records.BACKEND], plan[records.REGISTRY], credential[records.CREDENTIAL_EXPIRES_AT], now, "fast"
    )
    try:  # noqa: SIM105 - contextlib is one more import on every hit
        metrics.record(plan[records.METRICS_TEXTFILE], update)
    except (OSError, ValueError):
        pass  # the full path warns about an unwritable file; the hit path stays quiet and fast


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_unicode(value: Any) -> None:
    """Raise if any string holds a lone surrogate (JSON ``\\ud800``; msgspec refuses those)."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            key.encode("utf-8")
            _check_unicode(item)


def _strict_json(raw: bytes, what: str) -> Any:
    """``raw`` as JSON, as strictly as msgspec reads it (and a duplicate key refused outright)."""
    try:
        text = raw.decode("utf-8")  # no UTF-16 guessing, and json then refuses a BOM
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        if "\\u" in text:
            _check_unicode(value)
    except (ValueError, RecursionError):
        raise _Decline(f"{what} is not strict UTF-8 JSON") from None
    return value


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _number(value: object, low: float, high: float) -> bool:
    """An int or float (not a bool) within [low, high]; NaN and infinities never are."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _time(value: object) -> bool:
    return _number(value, 1.0, _LATEST)


def _dep(value: object) -> bool:
    """``cachekeys.file_version``'s form: ``[path]`` or ``[path, inode, size, mtime_ns]``."""
    if not isinstance(value, list) or len(value) not in (1, 4) or not isinstance(value[0], str):
        return False
    return all(type(part) is int and part >= 0 for part in value[1:])


def _request(data: bytes) -> tuple[str, str, str, dict[str, str]]:
    """apiVersion, image, token and annotations of a request ``decode_request`` would accept."""
    if len(data) > MAX_REQUEST_BYTES:
        raise _Decline("the request is too large")
    request = _strict_json(data, "the request")
    if not isinstance(request, dict):
        raise _Decline("the request is not a JSON object")
    api_version, image = request.get("apiVersion"), request.get("image")
    if (
        request.get("kind") != REQUEST_KIND
        or not isinstance(api_version, str)
        or api_version not in API_VERSIONS
    ):
        raise _Decline("the request's kind or apiVersion is not one we answer")
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise _Decline("the request's image is not a non-empty string without whitespace")
    token = request.get("serviceAccountToken", "")
    annotations = request.get("serviceAccountAnnotations", {})
    if not isinstance(token, str) or not _string_map(annotations):
        raise _Decline("the request's serviceAccountToken or serviceAccountAnnotations has the wrong type")
    return api_version, image, token, annotations


def _record(connection: sqlite3.Connection, key: str, now: float, what: str, fields: frozenset[str]) -> Any:
    """The record stored under ``key`` with exactly ``fields``, or None when there is none."""
    row = connection.execute(_SELECT, (key, now)).fetchone()
    if row is None:
        return None
    if not isinstance(row[0], bytes):
        raise _Decline(f"the {what} record is not stored as bytes")
    record = _strict_json(row[0], f"the {what} record")
    if not isinstance(record, dict) or record.keys() != fields:
        raise _Decline(f"the {what} record does not have exactly the fields we write")
    return record


def _check_plan(plan: dict[str, Any], host: str, image: str) -> str:
    """Raise unless ``plan`` is one the full path could have written for ``image``; return the
    response key's path."""
    if type(plan[records.VERSION]) is not int or plan[records.VERSION] != records.PLAN_VERSION:
        raise _Decline("the plan record is of another version")
    key = plan[records.KEY]
    if not (
        isinstance(plan[records.BACKEND], str)
        and plan[records.BACKEND]
        and isinstance(plan[records.REGISTRY], str)
        and _strings(plan[records.PARTS])
        and isinstance(plan[records.PER_TOKEN], bool)
        and isinstance(key, str)
        and plan[records.CACHE_KEY_TYPE] in _CACHE_KEY_TYPES
        and _number(plan[records.CAP_SECONDS], 0.0, MAX_DURATION_SECONDS)
        and isinstance(plan[records.DEPS], list)
        and all(_dep(dep) for dep in plan[records.DEPS])
        and (plan[records.METRICS_TEXTFILE] is None or isinstance(plan[records.METRICS_TEXTFILE], str))
    ):
        raise _Decline("a field of the plan record has the wrong type or an absurd value")
    if plan[records.REGISTRY] != host or not key.startswith(host):
        raise _Decline("the plan record is for another registry")
    key_path = key[len(host) :]
    if (key_path and not key_path.startswith("/")) or not urls_match(key, image):
        raise _Decline("the plan record's key does not cover the image")
    if key_path and plan[records.CACHE_KEY_TYPE] != "Image":
        raise _Decline("the plan record's cacheKeyType is too wide for its key")
    return key_path


def _check_credential(credential: dict[str, Any], plan: dict[str, Any], caller: str, key_path: str) -> None:
    """Raise unless ``credential`` is the one the full path stored for ``plan`` and ``caller``."""
    if (
        type(credential[records.VERSION]) is not int
        or credential[records.VERSION] != records.CREDENTIAL_VERSION
    ):
        raise _Decline("the credential record is of another version")
    expires_at, fetched_at = credential[records.EXPIRES_AT], credential[records.FETCHED_AT]
    refresh_at, own_expiry = credential[records.REFRESH_AT], credential[records.CREDENTIAL_EXPIRES_AT]
    cache_for = credential[records.CACHE_SECONDS]
    if not (
        isinstance(credential[records.USERNAME], str)
        and isinstance(credential[records.PASSWORD], str)
        and _time(expires_at)
        and _time(fetched_at)
        and _time(refresh_at)
        and fetched_at <= refresh_at <= expires_at
        and (own_expiry is None or own_expiry == expires_at)
        and isinstance(credential[records.PATH_SCOPE], str)
        and isinstance(credential[records.PER_IMAGE], bool)
        and (cache_for is None or _number(cache_for, 0.0, MAX_DURATION_SECONDS))
        and _strings(credential[records.DEPENDS_ON])
        and isinstance(credential[records.IDENTITY], str)
    ):
        raise _Decline("a field of the credential record has the wrong type or an absurd value")
    if (
        credential[records.BACKEND] != plan[records.BACKEND]
        or credential[records.REGISTRY] != plan[records.REGISTRY]
        or credential[records.PARTS] != plan[records.PARTS]
        or credential[records.IDENTITY] != caller
        or credential[records.DEPENDS_ON] != [dep[0] for dep in plan[records.DEPS]]
    ):
        raise _Decline("the credential record is not the one its plan names")
    path_scope = credential[records.PATH_SCOPE]
    if (path_scope or credential[records.PER_IMAGE]) and plan[records.CACHE_KEY_TYPE] != "Image":
        raise _Decline("the plan record's cacheKeyType is too wide for its credential")
    if len(key_path) < len(path_scope):
        raise _Decline("the plan record's key is wider than its credential's path scope")


def _database_uri(path: str) -> str:
    """A read-only SQLite URI for ``path`` (``%``, ``?`` and ``#`` escaped)."""
    escaped = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{escaped}?mode=ro"


def _answer(
    config_path: str | None, data: bytes, environ: Mapping[str, str], now: float
) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """The response, and the plan and credential records it came from."""
    api_version, image, token, annotations = _request(data)
    try:
        host = parse_schemeless(image).host
    except BadURLError:
        raise _Decline("the image is not one the kubelet could send") from None
    if not host:
        raise _Decline("the image has no registry host")
    directory = environ.get(CACHE_DIR_ENV) or DEFAULT_DIR
    database = os.path.join(directory, DATABASE)
    if dir_problem(directory) is not None or not os.path.exists(database):
        raise _Decline("no usable cache directory")
    caller = identity(token, annotations, per_token=False)
    connection = sqlite3.connect(_database_uri(database), uri=True, timeout=1.0)
    try:
        plan_id = plan_key(config_version(config_path), image, caller, environment_version(environ))
        plan = _record(connection, plan_id, now, "plan", _PLAN_FIELDS)
        if plan is None:
            raise _Decline("no plan recorded for this request")
        key_path = _check_plan(plan, host, image)
        if any(file_version(dep[0]) != dep for dep in plan[records.DEPS]):
            raise _Decline("a file the answer depends on has changed")
        owner = identity(token, annotations, per_token=plan[records.PER_TOKEN])
        credential_id = credential_key(plan[records.BACKEND], host, plan[records.PARTS], owner)
        credential = _record(connection, credential_id, now, "credential", _CREDENTIAL_FIELDS)
    finally:
        connection.close()
    if credential is None:
        raise _Decline("no credential stored for this plan")
    _check_credential(credential, plan, owner, key_path)
    if not (now < credential[records.REFRESH_AT] and now < credential[records.EXPIRES_AT]):
        raise _Decline("the credential is due for refresh or expired")
    seconds = cache_seconds(plan[records.CAP_SECONDS], credential[records.CREDENTIAL_EXPIRES_AT], now)
    response = {
        "apiVersion": api_version,
        "kind": RESPONSE_KIND,
        "cacheKeyType": plan[records.CACHE_KEY_TYPE],
        "cacheDuration": goduration.format_seconds(seconds),
        "auth": {
            plan[records.KEY]: {
                "username": credential[records.USERNAME],
                "password": credential[records.PASSWORD],
            }
        },
    }
    encoded = json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
    return encoded, plan, credential
