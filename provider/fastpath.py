"""The disk cache's hit path, lean enough to run on every pull.

After a kubelet restart, most calls ask again for what the disk cache already holds. This
module answers those with the standard library alone: it reads the request with ``json``,
finds the plan recorded for it (see ``provider.cachekeys``) and its credential straight in
diskcache's SQLite table, checks both are fresh and that no file the answer depends on has
changed, and prints the response. It never parses the config, imports msgspec, diskcache or a
cloud SDK, and never writes. Anything unexpected, including any error, returns None, and
the full path (which reports errors properly) takes over.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from provider import goduration
from provider.cachekeys import (
    CACHE_DIR_ENV,
    DATABASE,
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
from provider.protocol import API_VERSIONS, REQUEST_KIND, RESPONSE_KIND

_SELECT = (
    "SELECT value FROM Cache WHERE key = ? AND raw = 1 AND mode = 1 AND filename IS NULL"
    " AND (expire_time IS NULL OR expire_time > ?)"
)


def _entry(connection: sqlite3.Connection, key: str, now: float) -> Any:
    row = connection.execute(_SELECT, (key, now)).fetchone()
    return json.loads(row[0]) if row is not None else None


def _strings(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def answer(
    config_path: str | None, data: bytes, environ: Mapping[str, str], now: float | None = None
) -> bytes | None:
    """The response for ``data`` from the disk cache, or None when the full path must answer."""
    try:
        return _answer(config_path, data, environ, time.time() if now is None else now)
    except Exception:
        return None


def _answer(  # noqa: PLR0911 - every early return means "let the full path answer"
    config_path: str | None, data: bytes, environ: Mapping[str, str], now: float
) -> bytes | None:
    request = json.loads(data)
    if not isinstance(request, dict) or request.get("kind") != REQUEST_KIND:
        return None
    api_version, image = request.get("apiVersion"), request.get("image")
    token = request.get("serviceAccountToken", "")
    annotations = request.get("serviceAccountAnnotations") or {}
    if (
        api_version not in API_VERSIONS
        or not isinstance(image, str)
        or not image
        or any(c.isspace() for c in image)
    ):
        return None
    if not isinstance(token, str) or not _strings(annotations):
        return None
    directory = environ.get(CACHE_DIR_ENV) or DEFAULT_DIR
    database = os.path.join(directory, DATABASE)
    if dir_problem(directory) is not None or not os.path.exists(database):
        return None
    caller = identity(token, annotations, per_token=False)
    connection = sqlite3.connect(database, timeout=1.0)
    try:
        plan = _entry(
            connection,
            plan_key(config_version(config_path), image, caller, environment_version(environ)),
            now,
        )
        if not isinstance(plan, dict) or plan.get("v") != 1:
            return None
        if any(file_version(dep[0]) != dep for dep in plan["deps"]):
            return None
        key = credential_key(
            plan["backend"],
            plan["registry"],
            plan["parts"],
            identity(token, annotations, per_token=plan["perToken"]),
        )
        credential = _entry(connection, key, now)
    finally:
        connection.close()
    if not isinstance(credential, dict) or not (
        now < credential["refreshAt"] and now < credential["expiresAt"]
    ):
        return None
    expires_at = credential.get("credentialExpiresAt")
    response = {
        "apiVersion": api_version,
        "kind": RESPONSE_KIND,
        "cacheKeyType": plan["cacheKeyType"],
        "cacheDuration": goduration.format_seconds(cache_seconds(plan["capSeconds"], expires_at, now)),
        "auth": {plan["key"]: {"username": credential["username"], "password": credential["password"]}},
    }
    return json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
