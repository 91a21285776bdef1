"""Who a request's credentials are for: the node, or the pod's service account.

In token mode the kubelet sends the pod's service account token and the configured
annotations of its ServiceAccount, but not the account's name. The token is a JWT whose
``kubernetes.io`` claim names namespace, service account and UID; we read those claims
without verifying the signature (the cloud verifies the token when it is exchanged; here the
claims only separate one account's cached credentials from another's, as the kubelet's own
cache does). The token itself is never stored or printed, only a hash of it.

Standard library only: this runs on the disk cache's fast path.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from typing import Any

NODE = "node"


class ServiceAccountClaims:
    """The service account a token was issued to (empty strings when the token says nothing)."""

    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid

    def __repr__(self) -> str:
        return f"ServiceAccountClaims({self.namespace!r}, {self.name!r}, {self.uid!r})"


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without verifying it (whoever the token is for verifies it),
    or None when ``token`` is not a JWT with a JSON object for claims."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1].replace("-", "+").replace("_", "/")
    try:
        claims = json.loads(binascii.a2b_base64(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_claims(token: str) -> ServiceAccountClaims | None:
    """The ``kubernetes.io`` claims of a service account JWT, or None if it is not one."""
    claims = jwt_claims(token)
    kubernetes = claims.get("kubernetes.io") if claims is not None else None
    if not isinstance(kubernetes, dict):
        return None
    account = kubernetes.get("serviceaccount")
    namespace = kubernetes.get("namespace")
    if not isinstance(account, dict) or not isinstance(namespace, str):
        return None
    name, uid = account.get("name"), account.get("uid")
    if not isinstance(name, str) or not isinstance(uid, str):
        return None
    return ServiceAccountClaims(namespace, name, uid)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def token_hash(token: str) -> str:
    """A stable, one-way name for a token (what ``cacheType: Token`` keys on)."""
    return _digest("token", token)[:32]


def identity(token: str, annotations: dict[str, str], *, per_token: bool) -> str:
    """The cache identity of a request: ``node`` without a token; else a hash of the service
    account's namespace, name, UID and annotations (plus the token's hash when ``per_token``).

    A token that is not a service account JWT is keyed by its own hash: nothing else about it
    can be trusted to tell two callers apart.
    """
    if not token:
        return NODE
    claims = token_claims(token)
    if claims is None:
        return "token:" + token_hash(token)
    annotation_parts = [f"{key}={annotations[key]}" for key in sorted(annotations)]
    account = "sa:" + _digest(claims.namespace, claims.name, claims.uid, *annotation_parts)[:32]
    return f"{account}:{token_hash(token)}" if per_token else account
