"""Names and places shared by the disk cache's two readers: the full path (``provider.credcache``)
and the lean hit path (``provider.fastpath``). Standard library only.

Two kinds of entries live in one diskcache database:

- ``cred:<hash>``: a credential (username, password, expiry, when to refresh it), keyed by
  backend, registry host, the backend's own key parts and the caller's identity;
- ``plan:<hash>``: how a given request was answered (which credential entry, which response
  key and cacheKeyType, the duration cap, the files the answer depends on), keyed by
  everything that decides that: the config file's version, the image, the caller and the
  environment. The fast path reads a plan and its credential straight from SQLite, without
  parsing the config or importing diskcache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

from provider.filestamp import file_version

__all__ = ["cache_dir", "cache_seconds", "config_version", "credential_key", "file_version", "plan_key"]

DEFAULT_DIR = "/var/cache/registry-credential-provider"
CACHE_DIR_ENV = "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"
DATABASE = "cache.db"  # diskcache's file name inside the directory
CRED_PREFIX = "cred:"
PLAN_PREFIX = "plan:"
DEBUG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_DEBUG"  # =1: the fast path says on stderr why it declines


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def credential_key(backend: str, registry: str, parts: Iterable[str], identity: str) -> str:
    """The key of a cached credential."""
    return CRED_PREFIX + _digest([backend, registry, identity, *parts])


def plan_key(config_version: str, image: str, caller: str, environment: str) -> str:
    """The key of a cached plan (see the module docstring)."""
    return PLAN_PREFIX + _digest([config_version, image, caller, environment])


def config_version(path: str | None) -> str:
    """What changes whenever the config does: path, inode, size and mtime (or the embedded default)."""
    if path is None:
        from provider import __version__

        return "embedded:" + __version__
    try:
        stat = os.stat(path)
    except OSError:
        return "unreadable:" + path
    return f"{path}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


# Set by shells, the zipapp's launcher or for debugging; no backend's answer depends on them.
_VOLATILE = frozenset({"PWD", "OLDPWD", "_", "SHLVL", "PEX", "VIRTUAL_ENV", DEBUG_ENV})


def environment_version(environ: Mapping[str, str]) -> str:
    """A digest of the environment (backends read it; the kubelet's is stable), less what
    varies from one exec to the next without changing any answer."""
    keys = sorted(key for key in environ if key not in _VOLATILE and not key.startswith("PEX_"))
    return _digest(f"{key}={environ[key]}" for key in keys)


def cache_dir(configured: str | None, environ: Mapping[str, str]) -> str:
    """The environment wins over the config, which wins over the default."""
    return environ.get(CACHE_DIR_ENV) or configured or DEFAULT_DIR


def dir_problem(path: str) -> str | None:
    """Why ``path`` must not hold credentials, or None: it must be a real directory owned by us
    and closed to everyone else."""
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    import stat as stat_module

    if not stat_module.S_ISDIR(stat.st_mode):
        return "is not a directory (symlinks are refused)"
    if stat.st_uid != os.geteuid():
        return f"is owned by uid {stat.st_uid}, not by us (uid {os.geteuid()})"
    if stat.st_mode & 0o077:
        return f"is open to other users (mode {stat.st_mode & 0o777:o}, expected 700)"
    return None


def cache_seconds(cap: float, expires_at: float | None, now: float) -> float:
    """The cacheDuration we tell the kubelet: the cap, and at most half of what the credential
    has left, so the kubelet's copy always expires well before the credential does."""
    if expires_at is None:
        return cap
    return min(cap, max(0.0, (expires_at - now) / 2))
