"""The disk cache's storage: a diskcache database in a root-only directory, plus lock files.

Every failure of the cache itself (a corrupt or unreadable database, a read-only or full
disk, a directory that others could tamper with) becomes one warning and a miss: the plugin
still answers, uncached. SQLite transactions make every write all-or-nothing, so a process
killed mid-write leaves the previous entry or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional

import msgspec

from provider import cacherecords as records
from provider.cachekeys import CRED_PREFIX, DATABASE, PLAN_PREFIX, dir_problem

if TYPE_CHECKING:
    import diskcache

__all__ = ["CachedCredential", "CredentialStore", "Plan"]


class CachedCredential(msgspec.Struct, kw_only=True):
    """A credential as stored. Times are Unix seconds: the entry is good until ``expires_at`` and
    is fetched anew from ``refresh_at`` on (jittered, ahead of expiry); ``credential_expires_at``
    is the credential's own expiry when it has one (helper credentials do not); the rest is
    the backend's answer, and what ``cache list`` shows. Field names: ``provider.cacherecords``."""

    v: int = msgspec.field(default=records.CREDENTIAL_VERSION, name=records.VERSION)
    username: str = msgspec.field(name=records.USERNAME)
    password: str = msgspec.field(name=records.PASSWORD)
    expires_at: float = msgspec.field(name=records.EXPIRES_AT)
    fetched_at: float = msgspec.field(name=records.FETCHED_AT)
    refresh_at: float = msgspec.field(name=records.REFRESH_AT)
    credential_expires_at: Optional[float] = msgspec.field(default=None, name=records.CREDENTIAL_EXPIRES_AT)
    path_scope: str = msgspec.field(default="", name=records.PATH_SCOPE)
    per_image: bool = msgspec.field(default=False, name=records.PER_IMAGE)
    cache_seconds: Optional[float] = msgspec.field(default=None, name=records.CACHE_SECONDS)
    depends_on: list[str] = msgspec.field(default_factory=list, name=records.DEPENDS_ON)
    backend: str = msgspec.field(name=records.BACKEND)
    registry: str = msgspec.field(name=records.REGISTRY)
    identity: str = msgspec.field(name=records.IDENTITY)
    parts: list[str] = msgspec.field(name=records.PARTS)

    def __repr__(self) -> str:
        return f"CachedCredential(backend={self.backend!r}, registry={self.registry!r}, password=<redacted>)"


class Plan(msgspec.Struct, kw_only=True):
    """How a request was answered, for the fast path: the credential entry's key material, the
    response's key and cacheKeyType, the cap on cacheDuration, the files it depends on, and the
    config's metrics textfile (where the fast path records its hit).
    Field names: ``provider.cacherecords``."""

    v: int = msgspec.field(default=records.PLAN_VERSION, name=records.VERSION)
    backend: str = msgspec.field(name=records.BACKEND)
    registry: str = msgspec.field(name=records.REGISTRY)
    parts: list[str] = msgspec.field(name=records.PARTS)
    per_token: bool = msgspec.field(name=records.PER_TOKEN)
    key: str = msgspec.field(name=records.KEY)
    cache_key_type: str = msgspec.field(name=records.CACHE_KEY_TYPE)
    cap_seconds: float = msgspec.field(name=records.CAP_SECONDS)
    deps: list[list[Any]] = msgspec.field(name=records.DEPS)
    metrics_textfile: Optional[str] = msgspec.field(default=None, name=records.METRICS_TEXTFILE)


_credential_decoder = msgspec.json.Decoder(CachedCredential)
_encoder = msgspec.json.Encoder()

# How SQLite says a database is of another schema than diskcache's (it is then rebuilt).
SCHEMA_ERRORS = ("no such column", "no such table", "table Cache has no column")
# Errors that mean "the cache is unusable right now", never "the request is bad".
CACHE_ERRORS = (OSError, sqlite3.Error, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


class CredentialStore:
    """The cache directory. Opens lazily; ``usable`` turns False after the first failure."""

    def __init__(self, directory: str, warn: Callable[[str], None]) -> None:
        self.directory = directory
        self._warn = warn
        self._cache: diskcache.Cache | None = None
        self._unreadable: set[str] = set()
        self.usable = True

    def _fail(self, what: str, exc: BaseException | str) -> None:
        if self.usable:
            detail = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or type(exc).__name__)
            self._warn(f"disk cache {self.directory} {what} ({detail}); answering without it")
        self.usable = False

    def _open(self) -> diskcache.Cache | None:
        if self._cache is not None or not self.usable:
            return self._cache
        old_umask = os.umask(0o077)
        try:
            with contextlib.suppress(FileExistsError):
                os.makedirs(self.directory, mode=0o700)
            problem = dir_problem(self.directory)
            if problem is not None:
                self._fail("is refused", problem)
                return None
            self._cache = self._open_database()
            for name in os.listdir(self.directory):
                if name.startswith(DATABASE):
                    os.chmod(os.path.join(self.directory, name), 0o600)
        except CACHE_ERRORS as exc:
            self._fail("cannot be opened", exc)
        except RecursionError:  # os.makedirs recurses once per missing level
            self._fail("cannot be opened", "too many missing directory levels to create")
        except ValueError:  # a NUL byte in the path (the config's check refuses one)
            self._fail("cannot be opened", "not a usable path")
        finally:
            os.umask(old_umask)
        return self._cache

    def _open_database(self) -> diskcache.Cache:
        """diskcache's database; one that is not one (a torn disk, a stray write, another
        schema, a directory or a symlink in its place) is moved aside, once, so the cache heals
        instead of staying off."""
        import diskcache

        database = os.path.join(self.directory, DATABASE)
        for path in (database, database + "-wal", database + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(os.lstat(path).st_mode):  # never followed, never written through
                    self._move_aside(path, "is not a regular file")
        try:
            return diskcache.Cache(self.directory, timeout=2)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith(SCHEMA_ERRORS):
                raise  # cannot open or write (read-only, full, locked): not damage
            self._move_aside(database, f"has another schema ({exc})")
        except sqlite3.DatabaseError as exc:
            self._move_aside(database, f"is damaged ({exc})")
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(database + suffix)
        return diskcache.Cache(self.directory, timeout=2)

    def _move_aside(self, path: str, why: str) -> None:
        aside = f"{path}.corrupt-{int(time.time())}"
        self._warn(f"disk cache {path} {why}; moved aside to {aside}")
        os.replace(path, aside)

    def _get_raw(self, key: str) -> bytes | None:
        cache = self._open()
        if cache is None:
            return None
        try:
            value = cache.get(key)
        except CACHE_ERRORS as exc:
            self._fail("cannot be read", exc)
            return None
        return value if isinstance(value, bytes) else None

    def _set_raw(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        cache = self._open()
        if cache is None:
            return
        old_umask = os.umask(0o077)
        try:
            cache.set(key, value, expire=max(1.0, expires_at - now))
        except CACHE_ERRORS as exc:
            self._fail("cannot be written", exc)
        finally:
            os.umask(old_umask)

    def get_credential(self, key: str) -> CachedCredential | None:
        raw = self._get_raw(key)
        if raw is None:
            return None
        try:
            entry = _credential_decoder.decode(raw)
        except CACHE_ERRORS:
            entry = None
        if entry is None or entry.v != records.CREDENTIAL_VERSION:
            if key not in self._unreadable:
                self._unreadable.add(key)
                self._warn(f"disk cache {self.directory}: ignoring an unreadable entry")
            return None
        return entry

    def put_credential(self, key: str, entry: CachedCredential, now: float) -> None:
        self._set_raw(key, _encoder.encode(entry), entry.expires_at, now)

    def put_plan(self, key: str, plan: Plan, expires_at: float, now: float) -> None:
        self._set_raw(key, _encoder.encode(plan), expires_at, now)

    def credentials(self) -> Iterator[tuple[str, CachedCredential]]:
        """Every credential entry (for ``cache list``)."""
        cache = self._open()
        if cache is None:
            return
        try:
            keys = [key for key in cache.iterkeys() if isinstance(key, str) and key.startswith(CRED_PREFIX)]
        except CACHE_ERRORS as exc:
            self._fail("cannot be read", exc)
            return
        for key in keys:
            entry = self.get_credential(key)
            if entry is not None:
                yield key, entry

    def purge(self, registry: str | None = None) -> int:
        """Delete credentials (those of ``registry`` only, if given) and every plan; return how many
        credentials went."""
        cache = self._open()
        if cache is None:
            return 0
        removed = 0
        try:
            for key in list(cache.iterkeys()):
                if not isinstance(key, str):
                    continue
                if key.startswith(PLAN_PREFIX):
                    cache.delete(key)
                elif key.startswith(CRED_PREFIX):
                    entry = self.get_credential(key)
                    if registry is None or entry is None or entry.registry == registry:
                        removed += bool(cache.delete(key))
        except CACHE_ERRORS as exc:
            self._fail("cannot be purged", exc)
        return removed

    @contextlib.contextmanager
    def lock(self, key: str, wait_seconds: float) -> Iterator[bool]:
        """Hold the cross-process lock of ``key`` (single flight); yields False when it could not
        be had within ``wait_seconds`` (the caller then goes on alone). The kernel drops a flock
        when its holder dies, so a killed process never leaves a key locked."""
        if self._open() is None:
            yield False
            return
        directory = os.path.join(self.directory, "locks")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            descriptor = os.open(
                os.path.join(directory, key.partition(":")[2][:40]), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError as exc:
            self._fail("cannot hold a lock", exc)
            yield False
            return
        try:
            yield self._acquire(descriptor, wait_seconds)
        finally:
            os.close(descriptor)

    @staticmethod
    def _acquire(descriptor: int, wait_seconds: float) -> bool:
        give_up = time.monotonic() + wait_seconds
        pause = 0.005
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    return False
            else:
                return True
            if time.monotonic() >= give_up:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
