"""The disk cache's two records as stored: their JSON field names and versions, defined once.

The full path writes and reads them through msgspec structs (``provider.cache``), the fast
path reads them with ``json`` (``provider.fastpath``); both take every name from here, and a
test holds the structs to these tuples. Standard library only, no imports at all.

A change to a record's meaning bumps its version: readers ignore a record of another version.
"""

from __future__ import annotations

VERSION = "v"  # every record's first field

# Fields both records have.
BACKEND = "backend"
REGISTRY = "registry"
PARTS = "parts"

# A credential (``cred:<hash>``).
CREDENTIAL_VERSION = 1
USERNAME = "username"
PASSWORD = "password"  # noqa: S105 - a field name
EXPIRES_AT = "expiresAt"
FETCHED_AT = "fetchedAt"
REFRESH_AT = "refreshAt"
CREDENTIAL_EXPIRES_AT = "credentialExpiresAt"
PATH_SCOPE = "pathScope"
PER_IMAGE = "perImage"
CACHE_SECONDS = "cacheSeconds"
DEPENDS_ON = "dependsOn"
IDENTITY = "identity"
CREDENTIAL_FIELDS = (
    VERSION,
    USERNAME,
    PASSWORD,
    EXPIRES_AT,
    FETCHED_AT,
    REFRESH_AT,
    CREDENTIAL_EXPIRES_AT,
    PATH_SCOPE,
    PER_IMAGE,
    CACHE_SECONDS,
    DEPENDS_ON,
    BACKEND,
    REGISTRY,
    IDENTITY,
    PARTS,
)

# A plan (``plan:<hash>``): how one request was answered.
PLAN_VERSION = 2
PER_TOKEN = "perToken"  # noqa: S105 - a field name
KEY = "key"
CACHE_KEY_TYPE = "cacheKeyType"
CAP_SECONDS = "capSeconds"
DEPS = "deps"
METRICS_TEXTFILE = "metricsTextfile"  # the config's metrics.textfile: where the fast path records a hit
PLAN_FIELDS = (
    VERSION,
    BACKEND,
    REGISTRY,
    PARTS,
    PER_TOKEN,
    KEY,
    CACHE_KEY_TYPE,
    CAP_SECONDS,
    DEPS,
    METRICS_TEXTFILE,
)
