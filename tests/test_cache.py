"""The disk cache's policy, in process, under a controllable clock.

A counting fake backend stands in for a cloud token API; everything else (diskcache, SQLite,
the lock files, the plugin's response policy) is real.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.backends.base import Answer, Credential, Lookup
from provider.cache import CredentialStore
from provider.cachekeys import cache_seconds, credential_key
from provider.config import DockerConfigRule
from provider.credcache import REFRESH_WINDOW, STALE_CACHE_SECONDS, obtain, refresh_time
from provider.deadline import Deadline
from provider.errors import CredentialSourceError
from provider.fastpath import answer as fast_answer
from provider.identity import identity, token_claims
from provider.kubelet import CredentialProviderRequest
from tests.infra.tmpfs import TmpfsError, fill, mounted_tmpfs, remount_read_only

LIFETIME = 12 * 3600.0
T0 = 2_000_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenAPI:
    """A fake cloud token API: numbered tokens, a fixed lifetime, and an off switch."""

    def __init__(self, lifetime: float = LIFETIME) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.down = False

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        return ("us-east-1", "role/puller")

    def get_credentials(self, lookup: Lookup) -> Answer:
        self.calls += 1
        if self.down:
            raise CredentialSourceError("token API unavailable (throttled)")
        credential = Credential(
            username="AWS", password=f"token-{self.calls}", expires_at=lookup.now() + self.lifetime
        )
        return Answer(credential=credential, cache_seconds=self.lifetime / 2, cacheable=True)


def lookup(clock: Clock, warnings: list[str], token: str = "") -> Lookup:
    request = CredentialProviderRequest(
        api_version="credentialprovider.kubelet.k8s.io/v1",
        kind="CredentialProviderRequest",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        service_account_token=token,
    )
    return Lookup(
        request=request,
        image=request.image,
        host="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        path="/app",
        rule=DockerConfigRule(),
        deadline=Deadline(30),
        environ={},
        warn=warnings.append,
        now=clock,
    )


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(
        str(tmp_path / "cache"), lambda message: pytest.fail(f"unexpected warning: {message}")
    )


def test_miss_then_hit_then_refresh_ahead_of_expiry(store: CredentialStore) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    rng = random.Random(7)
    first = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=rng)
    assert (first.state, api.calls) == ("miss", 1)
    entry = store.get_credential(
        credential_key("ecr", lookup(clock, warnings).host, ("us-east-1", "role/puller"), "node")
    )
    assert entry is not None
    assert T0 + REFRESH_WINDOW[0] * LIFETIME <= entry.refresh_at <= T0 + REFRESH_WINDOW[1] * LIFETIME

    clock.now = entry.refresh_at - 1
    hit = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=rng)
    assert (hit.state, api.calls) == ("hit", 1)
    assert hit.answer.credential is not None
    assert hit.answer.credential.password == "token-1"

    clock.now = entry.refresh_at + 1
    refreshed = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=rng)
    assert (refreshed.state, api.calls) == ("refresh", 2)
    assert refreshed.answer.credential is not None
    assert refreshed.answer.credential.password == "token-2"
    assert warnings == []


def test_a_fresh_process_reads_what_another_stored(tmp_path: Path) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    directory = str(tmp_path / "cache")
    obtain(
        api,
        "ecr",
        lookup(clock, warnings),
        CredentialStore(directory, warnings.append),
        "node",
        rng=random.Random(),
    )
    again = obtain(
        api,
        "ecr",
        lookup(clock, warnings),
        CredentialStore(directory, warnings.append),
        "node",
        rng=random.Random(),
    )
    assert (again.state, api.calls, warnings) == ("hit", 1, [])


def test_identities_never_share_credentials(store: CredentialStore) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    for caller in ("node", "sa:one", "sa:two", "sa:one", "node"):
        obtain(api, "ecr", lookup(clock, warnings), store, caller, rng=random.Random())
    assert api.calls == 3


def test_refresh_jitter_spreads_a_fleet() -> None:
    times = [refresh_time(T0, T0 + LIFETIME, random.Random(seed)) for seed in range(2000)]
    fractions = [(t - T0) / LIFETIME for t in times]
    assert min(fractions) >= REFRESH_WINDOW[0]
    assert max(fractions) <= REFRESH_WINDOW[1]
    assert max(fractions) - min(fractions) > 0.9 * (REFRESH_WINDOW[1] - REFRESH_WINDOW[0])
    # no more than a tenth of the fleet in any tenth of the window, give or take
    buckets = [0] * 10
    for fraction in fractions:
        buckets[
            min(9, int((fraction - REFRESH_WINDOW[0]) / (REFRESH_WINDOW[1] - REFRESH_WINDOW[0]) * 10))
        ] += 1
    assert max(buckets) < 2000 * 0.15


class CachingTokenSource(TokenAPI):
    """Google's metadata server: it hands out the token it holds, with what it has left, until
    fewer than ``reissue_below`` seconds are left, then mints a new one."""

    def __init__(self, clock: Clock, lifetime: float = 3600.0, reissue_below: float = 300.0) -> None:
        super().__init__(lifetime)
        self.clock = clock
        self.reissue_below = reissue_below
        self.minted = 0
        self.expires_at = 0.0

    def get_credentials(self, lookup: Lookup) -> Answer:
        self.calls += 1
        if self.expires_at - self.clock.now < self.reissue_below:
            self.minted += 1
            self.expires_at = self.clock.now + self.lifetime
        credential = Credential(username="u", password=f"token-{self.minted}", expires_at=self.expires_at)
        return Answer(credential=credential, cache_seconds=None, cacheable=True)


def test_a_source_that_hands_back_its_token_is_asked_again_only_near_expiry(store: CredentialStore) -> None:
    clock, warnings = Clock(), list[str]()
    source = CachingTokenSource(clock)
    rng = random.Random(3)
    for _ in range(8 * 60):  # a pull a minute for 8 hours
        fetched = obtain(source, "gar", lookup(clock, warnings), store, "node", rng=rng)
        credential = fetched.answer.credential
        assert credential is not None
        assert credential.expires_at is not None
        assert credential.expires_at - clock.now > 60  # never handed out about to expire
        clock.now += 60
    # once in the refresh window, once just before the metadata server mints anew
    assert source.calls <= 2 * source.minted
    assert warnings == []


def test_stale_while_error_then_clear_failure(store: CredentialStore) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random(1))
    api.down = True
    clock.now = T0 + 0.8 * LIFETIME  # past any refresh time, before expiry
    stale = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random(1))
    assert stale.state == "stale"
    assert stale.answer.credential is not None
    assert stale.answer.credential.password == "token-1"
    assert stale.answer.cache_seconds is not None
    assert stale.answer.cache_seconds <= STALE_CACHE_SECONDS
    assert len(warnings) == 1
    assert "token API unavailable" in warnings[0]
    assert "answering with the cached credential" in warnings[0]

    clock.now = T0 + LIFETIME - 5  # too little left to hand out
    with pytest.raises(CredentialSourceError, match="token API unavailable"):
        obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random(1))


def test_a_failure_with_nothing_cached_is_the_error(store: CredentialStore) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    api.down = True
    with pytest.raises(CredentialSourceError):
        obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random())


def test_cache_duration_never_outlives_the_credential() -> None:
    for now in (T0, T0 + 3600, T0 + LIFETIME - 60, T0 + LIFETIME + 1):
        seconds = cache_seconds(LIFETIME / 2, T0 + LIFETIME, now)
        assert now + 2 * seconds <= max(now, T0 + LIFETIME)


def test_an_uncacheable_backend_is_always_asked(store: CredentialStore) -> None:
    class Static(TokenAPI):
        def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
            return None

    api, clock, warnings = Static(), Clock(), list[str]()
    for _ in range(3):
        assert obtain(api, "x", lookup(clock, warnings), store, "node", rng=random.Random()).state == "off"
    assert api.calls == 3


def _jwt(namespace: str, name: str, uid: str, nonce: str) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
        "jti": nonce,
    }
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_service_account_identity_from_token_claims() -> None:
    token = _jwt("team-a", "puller", "uid-1", "n1")
    claims = token_claims(token)
    assert claims is not None
    assert (claims.namespace, claims.name, claims.uid) == ("team-a", "puller", "uid-1")
    same_account = identity(_jwt("team-a", "puller", "uid-1", "n2"), {}, per_token=False)
    assert identity(token, {}, per_token=False) == same_account
    assert identity(token, {}, per_token=True) != identity(
        _jwt("team-a", "puller", "uid-1", "n2"), {}, per_token=True
    )
    assert identity(token, {"a": "1"}, per_token=False) != same_account
    assert identity(_jwt("team-b", "puller", "uid-1", "n1"), {}, per_token=False) != same_account
    assert identity("", {}, per_token=False) == "node"
    assert identity("not-a-jwt", {}, per_token=False).startswith("token:")
    assert token not in identity(token, {}, per_token=True)


def test_service_account_token_is_never_stored(tmp_path: Path) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    token = _jwt("team-a", "puller", "uid-1", "secret-nonce-that-must-not-be-stored")
    directory = tmp_path / "cache"
    store = CredentialStore(str(directory), warnings.append)
    caller = identity(token, {}, per_token=True)
    obtain(api, "ecr", lookup(clock, warnings, token), store, caller, rng=random.Random())
    stored = b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())
    assert b"token-1" in stored  # the credential itself is there...
    leaked = token.encode() in stored or b"secret-nonce" in stored
    assert not leaked, "the service account token reached the cache"


def test_directory_and_files_are_root_only(store: CredentialStore, tmp_path: Path) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random())
    directory = tmp_path / "cache"
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: d.chmod(0o777), "is open to other users"),
        (lambda d: d.chmod(0o750), "is open to other users"),
        (lambda d: os.chown(d, 65534, 65534), "is owned by uid 65534"),
    ],
    ids=["world-writable", "group-readable", "foreign-owner"],
)
def test_unsafe_directories_are_refused_and_the_answer_is_uncached(
    tmp_path: Path, prepare: object, message: str
) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    prepare(directory)  # type: ignore[operator]
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    store = CredentialStore(str(directory), warnings.append)
    for _ in range(2):
        fetched = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random())
        assert fetched.answer.credential is not None
    assert api.calls == 2
    assert len(warnings) == 1
    assert message in warnings[0]
    assert "answering without it" in warnings[0]


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(tmp_path / "real")
    warnings: list[str] = []
    store = CredentialStore(str(tmp_path / "cache"), warnings.append)
    obtain(TokenAPI(), "ecr", lookup(Clock(), warnings), store, "node", rng=random.Random())
    assert len(warnings) == 1
    assert "symlinks are refused" in warnings[0]


def test_a_damaged_database_is_moved_aside_and_the_cache_heals(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    (directory / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    store = CredentialStore(str(directory), warnings.append)
    assert obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random()).state == "miss"
    assert len(warnings) == 1
    assert "is damaged" in warnings[0]
    assert list(directory.glob("cache.db.corrupt-*"))
    fresh = CredentialStore(str(directory), warnings.append)
    assert obtain(api, "ecr", lookup(clock, warnings), fresh, "node", rng=random.Random()).state == "hit"


def test_an_unreadable_entry_is_a_miss(store: CredentialStore) -> None:
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    key = credential_key("ecr", lookup(clock, warnings).host, ("us-east-1", "role/puller"), "node")
    store._set_raw(key, b'{"v": 1, "username": 5}', T0 + 3600, T0)
    replaced = CredentialStore(store.directory, warnings.append)
    assert obtain(api, "ecr", lookup(clock, warnings), replaced, "node", rng=random.Random()).state == "miss"
    assert len(warnings) == 1
    assert "unreadable entry" in warnings[0]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own (tests run as root, as the kubelet does)."""
    try:
        with mounted_tmpfs(tmp_path / "mnt") as mountpoint:
            yield mountpoint
    except TmpfsError as exc:
        pytest.fail(str(exc))


def test_read_only_disk_is_a_miss_with_one_warning(tmpfs: Path) -> None:
    directory = tmpfs / "cache"
    directory.mkdir(mode=0o700)
    remount_read_only(tmpfs)
    api, clock, warnings = TokenAPI(), Clock(), list[str]()
    store = CredentialStore(str(directory), warnings.append)
    for _ in range(2):
        fetched = obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random())
        assert fetched.answer.credential is not None
    assert api.calls == 2
    assert len(warnings) == 1
    assert "answering without it" in warnings[0]


def test_full_disk_is_a_miss_with_one_warning(tmpfs: Path) -> None:
    directory = tmpfs / "cache"
    warnings: list[str] = []
    api, clock = TokenAPI(), Clock()
    store = CredentialStore(str(directory), warnings.append)
    obtain(api, "ecr", lookup(clock, warnings), store, "node", rng=random.Random())  # the database exists
    fill(tmpfs)
    big = TokenAPI()
    big.lifetime = LIFETIME
    fetched_states = []
    for caller in ("sa:a", "sa:b"):
        fetched = obtain(big, "ecr", lookup(clock, warnings), store, caller, rng=random.Random())
        assert fetched.answer.credential is not None
        fetched_states.append(fetched.state)
    assert big.calls == 2
    assert len(warnings) == 1, warnings
    assert "answering without it" in warnings[0]


WRITER = """
import random, sys, time
from provider.cache import CachedCredential, CredentialStore
store = CredentialStore(sys.argv[1], lambda m: None)
i = 0
while True:
    i += 1
    now = time.time()
    store.put_credential(f"cred:{i % 50}", CachedCredential(
        username="u" * 200, password=str(i) * 500, expires_at=now + 3600, fetched_at=now, refresh_at=now + 1800,
        backend="ecr", registry="r.io", identity="node", parts=["p" * 100]), now)
    if i == 20:
        print("writing", flush=True)
"""


def test_sigkill_during_writes_never_leaves_a_half_written_entry(tmp_path: Path) -> None:
    directory = str(tmp_path / "cache")
    rng = random.Random(3)
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, directory],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n"
        subprocess.run(["sleep", str(rng.uniform(0.0, 0.2))], check=True)
        writer.kill()
        writer.wait()
    warnings: list[str] = []
    store = CredentialStore(directory, warnings.append)
    entries = list(store.credentials())
    assert warnings == []
    assert 0 < len(entries) <= 50
    for key, entry in entries:
        assert entry.username == "u" * 200
        # Whole: the writer's counter i, 500 times, stored under key cred:<i % 50>; a torn or
        # mixed-up value is no such repetition, or sits under another key.
        counter, rest = divmod(len(entry.password), 500)
        assert rest == 0
        i = entry.password[:counter]
        assert entry.password == i * 500
        assert key == f"cred:{int(i) % 50}"
    import sqlite3

    with sqlite3.connect(os.path.join(directory, "cache.db")) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_fast_path_answers_what_the_full_path_cached(tmp_path: Path) -> None:
    """After one full answer, the stdlib-only path answers byte for byte the same."""
    from provider.cachekeys import config_version, environment_version
    from provider.config import decode_config
    from provider.fullpath import CacheContext, respond
    from provider.kubelet import encode_response

    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(
        '#!/bin/sh\necho \'{"ServerURL":"r.io","Username":"helper-user","Secret":"helper-secret"}\'\n'
    )
    helper.chmod(0o700)
    files = tmp_path / "config.json"
    files.write_text('{"credsStore": "fake"}')
    config_file = tmp_path / "provider.yaml"
    config_file.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
        f"rules:\n  - backend: dockerconfig\n    files: [{files}]\n    cacheDuration: 10m\n"
    )
    environ = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache"),
    }
    data = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","image":"r.io/team/app"}'
    config = decode_config(config_file.read_bytes(), str(config_file))
    store = CredentialStore(environ["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"], pytest.fail)
    context = CacheContext(
        store,
        config_version=config_version(str(config_file)),
        environment_version=environment_version(environ),
    )
    request = __import__("provider.kubelet", fromlist=["decode_request"]).decode_request(data)
    now = __import__("time").time()  # diskcache's own expiry runs on the real clock
    clock = Clock(now)
    assert fast_answer(str(config_file), data, environ, now) is None  # cold
    full = respond(
        request, config, deadline=Deadline(10), environ=environ, warn=lambda m: None, now=clock, cache=context
    )
    assert full.cache == "miss"
    hit = respond(
        request, config, deadline=Deadline(10), environ=environ, warn=lambda m: None, now=clock, cache=context
    )
    assert hit.cache == "hit"
    fast = fast_answer(str(config_file), data, environ, now)
    assert fast == encode_response(hit.response)
    # Later, the fast path shortens cacheDuration as the entry ages, exactly like the full path.
    later = now + 100
    clock.now = later
    assert fast_answer(str(config_file), data, environ, later) == encode_response(
        respond(
            request,
            config,
            deadline=Deadline(10),
            environ=environ,
            warn=lambda m: None,
            now=clock,
            cache=context,
        ).response
    )
    # Anything that could change the answer sends the request down the full path.
    assert fast_answer(str(config_file), data, {**environ, "DOCKER_CONFIG": "/elsewhere"}, now) is None
    assert fast_answer(str(config_file), data.replace(b"r.io/team/app", b"r.io/other"), environ, now) is None
    files.write_text('{"credsStore": "fake", "auths": {}}')
    assert fast_answer(str(config_file), data, environ, now) is None
