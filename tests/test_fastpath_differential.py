"""The fast path against the full path, over a generated table.

For every case the full path first fills a real disk cache; then, at each of several clock
readings and for each way of writing the request, the fast path must either decline (None)
or print byte for byte what the full path prints for the same bytes, cache and clock. Records
damaged in any way make it decline, and it never serves a credential past its refresh time or
its expiry. The backend is a counting fake cloud token API; config, plugin, disk cache and
fast path are real.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from provider import cacherecords, core, fastpath
from provider.backends import BY_NAME, Answer, Credential, Lookup
from provider.cache import CachedCredential, Plan
from provider.cachekeys import DEBUG_ENV, config_version
from provider.config import ProviderConfig, load_config
from provider.errors import ProviderError
from provider.protocol import API_VERSIONS

HOUR = 3600.0


@dataclass(frozen=True)
class Issued:
    """What the fake token API hands out. ``lifetime`` None: no expiry of its own, kept in the
    disk cache for ``KEEP_SECONDS`` (as a credential helper's answer is). ``path_scoped``: the
    credential is for the image's own path only."""

    lifetime: float | None = 12 * HOUR
    username: str = "AWS"
    password: str = "token"
    path_scoped: bool = False  # scoped to the image's own path
    per_image: bool = False
    cache_seconds: float | None = None


KEEP_SECONDS = 600.0


@dataclass
class FakeTokenAPI:
    """Stands in for a cloud token API; numbered passwords show which fetch answered."""

    issued: Issued = field(default_factory=Issued)
    calls: int = 0


_API = FakeTokenAPI()


class FakeBackend:
    """The backend ``load_backend`` returns for ``dockerconfig`` rules in these tests."""

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        return ("us-east-1", "role/puller")

    def get_credentials(self, lookup: Lookup) -> Answer:
        _API.calls += 1
        issued = _API.issued
        expires_at = None if issued.lifetime is None else lookup.now() + issued.lifetime
        credential = Credential(
            username=issued.username,
            password=f"{issued.password}-{_API.calls}",
            expires_at=expires_at,
            path_scope=lookup.path if issued.path_scoped else "",
        )
        return Answer(
            credential=credential,
            cache_seconds=issued.cache_seconds,
            per_image=issued.per_image,
            cacheable=True,
            keep_seconds=KEEP_SECONDS if issued.lifetime is None else None,
        )


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    _API.issued, _API.calls = Issued(), 0
    fake = BY_NAME["dockerconfig"]._replace(backend=FakeBackend)
    monkeypatch.setitem(BY_NAME, "dockerconfig", fake)


def jwt(namespace: str, name: str, uid: str, nonce: str) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
        "jti": nonce,
    }
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


class World:
    """A config file, a cache directory and the environment of one kubelet node."""

    def __init__(self, root: Path, rules: str, cache_type: str = "ServiceAccount") -> None:
        self.config_path = root / "provider.yaml"
        self.config_path.write_text(
            "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
            f"defaultCacheDuration: 7m\ncache:\n  serviceAccountCacheType: {cache_type}\nrules:\n{rules}"
        )
        self.environ = {
            "PATH": "/usr/bin:/bin",
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }
        self.version = config_version(str(self.config_path))
        self.config: ProviderConfig = load_config(str(self.config_path))

    def full(self, data: bytes, now: float) -> bytes | None:
        """What the full path prints for ``data`` at ``now`` (``provider.core`` with the fast path
        off, the disk cache on); None when it fails (a fresh CredentialStore each time, as in a
        new process)."""
        try:
            reply = core.answer(
                data,
                config_path=str(self.config_path),
                environ=self.environ,
                timeout=10,
                fast_path=False,
                now=lambda: now,
            )
        except ProviderError:
            return None
        assert reply.path == "full"
        return reply.stdout

    def fast(self, data: bytes, now: float, environ: dict[str, str] | None = None) -> bytes | None:
        return fastpath.answer(str(self.config_path), data, environ or self.environ, now)


# --- the table --------------------------------------------------------------------------------

RULES = {
    # every image, keyed by host: Registry
    "any": "  - backend: dockerconfig\n",
    # a path glob: the key is the glob, Image
    "path-glob": "  - backend: dockerconfig\n    match: [r.io/team, localhost:5000/a, '[::1]:5000/app']\n"
    "    cacheDuration: 10m\n  - backend: dockerconfig\n",
    # another rule serves part of the host: host key, but Image
    "partitioned": "  - backend: anonymous\n    match: [r.io/public, localhost:5000/public]\n  - backend: dockerconfig\n",
    # a wildcard glob and a long cacheDuration: host key, Registry, capped by expiry
    "wildcard": "  - backend: dockerconfig\n    match: ['*.io', '*.io/*', 'localhost:5000', '[::1]:5000', '*.example.com']\n"
    "    cacheDuration: 2400h\n  - backend: dockerconfig\n",
    # an identity rule that selects the service account caller (its own cacheDuration tells it apart)
    "identity": "  - backend: dockerconfig\n    namespaces: [team-a]\n    serviceAccountAnnotations: {x: \u00e9}\n"
    "    cacheDuration: 10m\n  - backend: dockerconfig\n",
    # an identity rule for another namespace: every caller here falls through to the next rule
    "identity-other": "  - backend: dockerconfig\n    serviceAccounts: [team-b/puller]\n    cacheDuration: 10m\n"
    "  - backend: dockerconfig\n",
}

ISSUED = {
    "12h": Issued(),
    "12h-suggests-1h": Issued(cache_seconds=HOUR),
    "nearly-expired-90s": Issued(lifetime=90.0),
    "no-expiry": Issued(lifetime=None),
    "path-scoped": Issued(path_scoped=True),
    "per-image": Issued(per_image=True),
    "odd-secret": Issued(
        username='us\u00e9r "q" \\ </script> \u2028', password="p\u00e4ss\u0001\u007f\U0001f511\ttab\nnl"
    ),
}

IMAGES = (
    "r.io/team/app",
    "localhost:5000/a/b",
    "[::1]:5000/app",
    "r.io:443/x",
    "docker.io/library/nginx",
    "a.example.com/app_x-y.z/9",
    "b\u00fccher.example/app",
    "r.io/team/app%41b",
)

CALLERS = ("node", "service-account", "opaque-token")
ANNOTATIONS = {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::1:role/r", "x": "\u00e9"}


def caller_fields(caller: str, nonce: str) -> dict[str, Any]:
    if caller == "node":
        return {}
    if caller == "service-account":
        return {
            "serviceAccountToken": jwt("team-a", "puller", "uid-1", nonce),
            "serviceAccountAnnotations": ANNOTATIONS,
        }
    return {"serviceAccountToken": f"opaque-{nonce}", "serviceAccountAnnotations": {}}


def encodings(api: str, image: str, extra: dict[str, Any]) -> dict[str, bytes]:
    """The same request written in ways the full path accepts, and in ways it rejects."""
    fields = {"kind": "CredentialProviderRequest", "apiVersion": api, "image": image, **extra}
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    body = canonical[1:-1]
    return {
        "canonical": canonical,
        "pretty": json.dumps(fields, indent=2, ensure_ascii=True).encode() + b"\n",
        "reordered": json.dumps(dict(reversed(fields.items()))).encode(),
        "unknown-fields": b'{"metadata":{"a":[1,2.5e3,null,true]},"big":1e400,' + body + b"}",
        "escaped": canonical.replace(b'"image"', b'"im\\u0061ge"').replace(b"/", b"\\/"),
        "null-annotations": b"{" + body + b',"serviceAccountAnnotations":null}',
        "null-token": b"{" + body + b',"serviceAccountToken":null}',
        "number-annotation": b"{" + body + b',"serviceAccountAnnotations":{"a":1}}',
        "bom": b"\xef\xbb\xbf" + canonical,
        "utf-16": canonical.decode().encode("utf-16"),
        "utf-16-le": canonical.decode().encode("utf-16-le"),
        "utf-32": canonical.decode().encode("utf-32"),
        "duplicate-image": b'{"image":"r.io/other",' + body + b"}",
        "duplicate-kind": b"{" + body + b',"kind":"CredentialProviderRequest"}',
        "duplicate-null-first": b'{"serviceAccountAnnotations":null,'
        + body
        + b',"serviceAccountAnnotations":{}}',
        "nan": b'{"x":NaN,' + body + b"}",
        "infinity": b'{"x":[-Infinity],' + body + b"}",
        "lone-surrogate": b'{"x":"\\ud800",' + body + b"}",
        "bad-utf-8": b'{"x":"\xff",' + body + b"}",
        "trailing-junk": canonical + b"x",
        "second-document": canonical + b"\n{}",
        "form-feed": b"\x0c" + canonical,
        "array": b"[" + canonical + b"]",
        "wrong-kind": canonical.replace(b"CredentialProviderRequest", b"CredentialProviderResponse"),
        "image-with-space": canonical.replace(image.encode(), image.encode() + b" "),
    }


ACCEPTED = ("canonical", "pretty", "reordered", "unknown-fields", "escaped")


@dataclass(frozen=True)
class Case:
    api: str
    caller: str
    rules: str
    issued: str
    image: str
    cache_type: str

    @property
    def id(self) -> str:
        return f"{self.api.rsplit('/', 1)[1]}-{self.caller}-{self.rules}-{self.issued}-{self.image}-{self.cache_type}"


def table() -> list[Case]:
    """Every API version x caller x rule set, each with the other dimensions rotated through."""
    cases = []
    for number, (api, caller, rules) in enumerate(
        (api, caller, rules) for api in API_VERSIONS for caller in CALLERS for rules in RULES
    ):
        cases.append(
            Case(
                api=api,
                caller=caller,
                rules=rules,
                issued=list(ISSUED)[number % len(ISSUED)],
                image=IMAGES[number % len(IMAGES)],
                cache_type=("ServiceAccount", "Token")[number // 2 % 2],
            )
        )
    return cases


@pytest.mark.parametrize("case", table(), ids=lambda case: case.id)
def test_the_fast_path_declines_or_prints_what_the_full_path_prints(case: Case, tmp_path: Path) -> None:
    _API.issued = ISSUED[case.issued]
    world = World(tmp_path, RULES[case.rules], case.cache_type)
    lifetime = _API.issued.lifetime or KEEP_SECONDS
    base = time.time()  # diskcache's own expiry runs on the real clock
    requests = encodings(case.api, case.image, caller_fields(case.caller, "n1"))
    assert world.fast(requests["canonical"], base) is None  # cold
    first = world.full(requests["canonical"], base)
    assert first is not None
    answered = 0
    # Ascending: past the refresh time the full path fetches anew, and later readings age that one.
    for age in (0.0, 0.3, 0.49, 0.71, 0.999, 1.5):
        now = base + age * lifetime
        for name, data in requests.items():
            fast = world.fast(data, now)
            full = world.full(data, now)
            if fast is not None:
                answered += 1
                assert fast == full, f"{name} at {age} of the lifetime"
            elif age < 0.5 and name in ACCEPTED:
                pytest.fail(f"the fast path declined the {name} request at {age} of the lifetime")
            if name not in ACCEPTED:
                assert fast is None, name
    assert answered >= 3 * len(ACCEPTED)


def test_the_table_covers_every_dimension() -> None:
    cases = table()
    assert {case.api for case in cases} == set(API_VERSIONS)
    assert {case.caller for case in cases} == set(CALLERS)
    assert {case.rules for case in cases} == set(RULES)
    assert {case.issued for case in cases} == set(ISSUED)
    assert {case.image for case in cases} == set(IMAGES)
    assert {case.cache_type for case in cases} == {"ServiceAccount", "Token"}


def test_the_table_yields_both_key_types(tmp_path: Path) -> None:
    """Registry and Image keys, host and path keys, all come out of the table's rules."""
    seen = set()
    for index, (rules, image, issued) in enumerate(
        (
            ("any", "r.io/team/app", "12h"),
            ("path-glob", "r.io/team/app", "12h"),
            ("partitioned", "r.io/team/app", "12h"),
            ("any", "r.io/team/app", "path-scoped"),
        )
    ):
        _API.issued = ISSUED[issued]
        root = tmp_path / str(index)
        root.mkdir()
        world = World(root, RULES[rules])
        data = encodings(API_VERSIONS[0], image, {})["canonical"]
        world.full(data, time.time())
        response = json.loads(world.fast(data, time.time()) or b"null")
        seen.add((response["cacheKeyType"], *response["auth"]))
    assert seen == {
        ("Registry", "r.io"),
        ("Image", "r.io/team"),
        ("Image", "r.io"),
        ("Image", "r.io/team/app"),
    }


# --- damaged records --------------------------------------------------------------------------

IMAGE = "r.io/team/app"
REQUEST = encodings(API_VERSIONS[0], IMAGE, {})["canonical"]
SECRET = "token-1"

Mutation = Callable[[dict[str, Any]], Any]


def _set(name: str, value: object) -> Mutation:
    return lambda record: {**record, name: value}


def _drop(name: str) -> Mutation:
    return lambda record: {k: v for k, v in record.items() if k != name}


def _raw(text: bytes) -> Mutation:
    return lambda record: text


PLAN_DAMAGE: dict[str, Mutation] = {
    "version-1": _set("v", 1),
    "version-3": _set("v", 3),
    "version-true": _set("v", True),
    "version-missing": _drop("v"),
    "missing-capSeconds": _drop("capSeconds"),
    "missing-metricsTextfile": _drop("metricsTextfile"),
    "metricsTextfile-number": _set("metricsTextfile", 7),
    "metricsTextfile-list": _set("metricsTextfile", ["/x.prom"]),
    "extra-field": _set("email", "x"),
    "cacheKeyType-bogus": _set("cacheKeyType", "Everything"),
    "cacheKeyType-lowercase": _set("cacheKeyType", "registry"),
    "cacheKeyType-global": _set("cacheKeyType", "Global"),
    "cacheKeyType-null": _set("cacheKeyType", None),
    "key-other-host": _set("key", "evil.io"),
    "key-wildcard": _set("key", "*.io"),
    "key-not-covering": _set("key", "r.io/other"),
    "key-longer-than-image": _set("key", "r.io/team/appx"),
    "key-path-with-registry-type": _set("key", "r.io/team"),
    "key-with-port": _set("key", "r.io:443"),
    "key-number": _set("key", 7),
    "key-empty": _set("key", ""),
    "cap-1e300": _set("capSeconds", 1e300),
    "cap-huge-int": _set("capSeconds", 10**30),
    "cap-negative": _set("capSeconds", -5),
    "cap-string": _set("capSeconds", "10m"),
    "cap-bool": _set("capSeconds", True),
    "perToken-string": _set("perToken", "false"),
    "registry-other": _set("registry", "evil.io"),
    "backend-empty": _set("backend", ""),
    "parts-number": _set("parts", [1]),
    "deps-malformed": _set("deps", [["/etc/x", "inode"]]),
    "deps-not-list": _set("deps", "/etc/x"),
    "array": lambda record: list(record.values()),
    "null": lambda record: None,
}

CREDENTIAL_DAMAGE: dict[str, Mutation] = {
    "password-number": _set("password", 5),
    "password-null": _set("password", None),
    "username-list": _set("username", ["AWS"]),
    "version-0": _set("v", 0),
    "version-float": _set("v", 1.5),
    "missing-password": _drop("password"),
    "missing-refreshAt": _drop("refreshAt"),
    "extra-field": _set("identitytoken", "x"),
    "expiresAt-negative": _set("expiresAt", -1.0),
    "expiresAt-1e300": lambda record: {**record, "expiresAt": 1e300, "refreshAt": 1e300},
    "expiresAt-string": _set("expiresAt", "tomorrow"),
    "expiresAt-null": _set("expiresAt", None),
    "fetchedAt-negative": _set("fetchedAt", -100.0),
    "fetchedAt-after-refresh": lambda record: {**record, "fetchedAt": record["refreshAt"] + 1},
    "refreshAt-after-expiry": lambda record: {**record, "refreshAt": record["expiresAt"] + 1},
    "credentialExpiresAt-later": lambda record: {**record, "credentialExpiresAt": record["expiresAt"] + 1e6},
    "credentialExpiresAt-string": _set("credentialExpiresAt", "later"),
    "cacheSeconds-1e300": _set("cacheSeconds", 1e300),
    "pathScope-with-registry-key": _set("pathScope", "/team"),
    "perImage-with-registry-key": _set("perImage", True),
    "perImage-string": _set("perImage", "yes"),
    "identity-other": _set("identity", "sa:someone-else"),
    "registry-other": _set("registry", "evil.io"),
    "backend-other": _set("backend", "ecr"),
    "parts-other": _set("parts", ["eu-west-1", "role/puller"]),
    "dependsOn-number": _set("dependsOn", [1]),
    "dependsOn-extra": _set("dependsOn", ["/etc/x"]),
}

RAW_DAMAGE: dict[str, bytes] = {
    "nan": b"NaN",
    "infinity": b"Infinity",
    "overflow": b"1e400",
}


class Populated:
    """A world after one full answer for ``REQUEST``, with access to its two records."""

    def __init__(self, root: Path) -> None:
        self.world = World(root, RULES["any"])
        self.now = time.time()
        assert self.world.full(REQUEST, self.now) is not None
        self.database = root / "cache" / "cache.db"

    def keys(self, prefix: str) -> list[str]:
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute("SELECT key FROM Cache WHERE key LIKE ?", (prefix + "%",)).fetchall()
        return [row[0] for row in rows]

    def read(self, prefix: str) -> Any:
        (key,) = self.keys(prefix)
        with sqlite3.connect(self.database) as connection:
            (value,) = connection.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchone()
        return json.loads(value)

    def write(self, prefix: str, value: bytes | str) -> None:
        (key,) = self.keys(prefix)
        with sqlite3.connect(self.database) as connection:
            connection.execute("UPDATE Cache SET value = ? WHERE key = ?", (value, key))


def _encode(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value, allow_nan=True).encode()


@pytest.fixture
def populated(tmp_path: Path) -> Populated:
    populated = Populated(tmp_path)
    assert populated.world.fast(REQUEST, populated.now) == populated.world.full(REQUEST, populated.now)
    return populated


def _assert_declines(populated: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    world = populated.world
    assert world.fast(REQUEST, populated.now + 1) is None
    assert capsys.readouterr().err == ""  # silent without the debug switch
    assert world.fast(REQUEST, populated.now + 1, {**world.environ, DEBUG_ENV: "1"}) is None
    err = capsys.readouterr().err
    assert err.startswith("registry-credential-provider: debug: fast path declined: ")
    assert err.count("\n") == 1
    assert SECRET not in err


@pytest.mark.parametrize("damage", PLAN_DAMAGE.values(), ids=PLAN_DAMAGE.keys())
def test_a_damaged_plan_declines(
    damage: Mutation, populated: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    populated.write("plan:", _encode(damage(populated.read("plan:"))))
    _assert_declines(populated, capsys)


@pytest.mark.parametrize("damage", CREDENTIAL_DAMAGE.values(), ids=CREDENTIAL_DAMAGE.keys())
def test_a_damaged_credential_declines(
    damage: Mutation, populated: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    populated.write("cred:", _encode(damage(populated.read("cred:"))))
    _assert_declines(populated, capsys)


@pytest.mark.parametrize("prefix", ["plan:", "cred:"])
@pytest.mark.parametrize("literal", RAW_DAMAGE.values(), ids=RAW_DAMAGE.keys())
def test_non_finite_numbers_decline(
    prefix: str, literal: bytes, populated: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "capSeconds" if prefix == "plan:" else "expiresAt"
    record = populated.read(prefix)
    text = _encode(record).replace(
        f'"{name}": {json.dumps(record[name])}'.encode(), f'"{name}": '.encode() + literal
    )
    assert literal in text
    populated.write(prefix, text)
    _assert_declines(populated, capsys)


@pytest.mark.parametrize("prefix", ["plan:", "cred:"])
@pytest.mark.parametrize(
    "raw",
    [b"\x80not json", b'{"v":1,"v":1}', b"", "text, not a blob"],
    ids=["not-utf-8", "duplicate-key", "empty", "stored-as-text"],
)
def test_unreadable_records_decline(
    prefix: str, raw: bytes | str, populated: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    if raw == b'{"v":1,"v":1}':
        record = populated.read(prefix)
        raw = b'{"v":1,' + _encode(record)[1:]
    populated.write(prefix, raw)
    _assert_declines(populated, capsys)


def test_a_credential_is_never_served_past_its_refresh_time_or_expiry(populated: Populated) -> None:
    """Even when diskcache's own expiry would let the row through, the record's times rule."""
    with sqlite3.connect(populated.database) as connection:
        connection.execute("UPDATE Cache SET expire_time = NULL")
    credential = populated.read("cred:")
    refresh_at, expires_at = credential["refreshAt"], credential["expiresAt"]
    world = populated.world
    assert world.fast(REQUEST, refresh_at - 1) is not None
    for now in (
        refresh_at,
        (refresh_at + expires_at) / 2,
        expires_at - 0.001,
        expires_at,
        expires_at + 86400,
    ):
        assert world.fast(REQUEST, now) is None, now - populated.now


def test_a_nearly_expired_credential_gets_a_short_cache_duration(tmp_path: Path) -> None:
    _API.issued = ISSUED["nearly-expired-90s"]
    world = World(tmp_path, RULES["any"])
    now = time.time()
    world.full(REQUEST, now)
    credential = json.loads(
        sqlite3.connect(tmp_path / "cache" / "cache.db")
        .execute("SELECT value FROM Cache WHERE key LIKE 'cred:%'")
        .fetchone()[0]
    )
    later = credential["refreshAt"] - 1
    fast = world.fast(REQUEST, later)
    assert fast == world.full(REQUEST, later)
    seconds = int((credential["expiresAt"] - later) / 2)
    assert json.loads(fast or b"null")["cacheDuration"] == f"{seconds}s"


# --- the records' names are defined once -------------------------------------------------------


@pytest.mark.parametrize(
    ("struct", "names", "version"),
    [
        (CachedCredential, cacherecords.CREDENTIAL_FIELDS, cacherecords.CREDENTIAL_VERSION),
        (Plan, cacherecords.PLAN_FIELDS, cacherecords.PLAN_VERSION),
    ],
    ids=["credential", "plan"],
)
def test_the_structs_write_the_names_the_fast_path_reads(
    struct: type, names: tuple[str, ...], version: int
) -> None:
    assert tuple(f.encode_name for f in msgspec.structs.fields(struct)) == names
    assert msgspec.structs.fields(struct)[0].default == version
    assert len(set(names)) == len(names)
