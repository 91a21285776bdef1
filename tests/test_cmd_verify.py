"""``verify IMAGE`` against the real test registries: htpasswd (http and TLS) and token auth.

The token registry is CNCF distribution with ``auth.token`` and a strict token server
(``tests/infra/tokenauth.py``) whose RS256 tokens carry an ``x5c`` chain to the registry's
``rootcertbundle``. Each failure mode must be named: no credentials, rejected, no pull scope,
not found, TLS, plain http.
"""

from __future__ import annotations

import json
import re
import secrets
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provider.registryclient import Challenge, parse_challenges, proxy_for, redact_url, token_url
from tests.cmdutil import auth_file, provider_config, run
from tests.conftest import run_zipapp
from tests.infra.fixtures import RegistryFixture, _setup
from tests.infra.images import OCIImage, push_image
from tests.infra.registry import Registry, start_registry
from tests.infra.tls import make_tls_files
from tests.infra.tokenauth import TokenServer, make_signing_files, start_token_registry
from tests.reliability.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e


def steps(stdout: str) -> list[tuple[str, str, str]]:
    """(status, check, detail) per line of the report."""
    found = []
    for line in stdout.splitlines():
        parts = [p for p in line.split("  ") if p.strip()]
        if len(parts) >= 3 and parts[0].strip() in ("ok", "warn", "fail"):
            found.append((parts[0].strip(), parts[1].strip(), "  ".join(parts[2:]).strip()))
    return found


def config_for(tmp_path: Path, host: str, creds: tuple[str, str] | None, name: str = "p.yaml") -> Path:
    if creds is None:
        return provider_config(tmp_path, f"  - match: ['{host}']\n    backend: anonymous\n", name=name)
    auth = auth_file(tmp_path, {host: creds}, name=name + ".auth.json")
    return provider_config(
        tmp_path, f"  - match: ['{host}']\n    backend: dockerconfig\n    files: [{auth}]\n", name=name
    )


def verify(
    tmp_path: Path, image: str, host: str, creds: tuple[str, str] | None, *extra: str
) -> tuple[int, str]:
    config = config_for(tmp_path, host, creds)
    result = run(["verify", image, "--config", str(config), "--no-cache", *extra])
    if creds is not None and len(creds[1]) >= 8:
        leaked = creds[1] in result.stdout + result.stderr
        assert not leaked, "the password was printed"
    return result.code, result.stdout


# --- htpasswd registries ----------------------------------------------------------------------------


def test_http_registry_with_good_credentials(tmp_path: Path, registry_http: RegistryFixture) -> None:
    code, stdout = verify(
        tmp_path, registry_http.ref(), registry_http.host, registry_http.creds, "--plain-http"
    )
    assert code == 0, stdout
    checks = steps(stdout)
    assert [c[1] for c in checks] == ["credentials", "GET /v2/", "Basic auth", "manifest"]
    assert all(c[0] == "ok" for c in checks)
    assert 'challenge Basic realm="test-registry"' in stdout
    assert "the pull would be authorized" in stdout
    assert stdout.rstrip().endswith(
        f"pull authorized: {registry_http.host}/team/app at http://{registry_http.host}"
    )


def test_http_registry_rejects_a_wrong_password(tmp_path: Path, registry_http: RegistryFixture) -> None:
    creds = (registry_http.username, "wrong-" + secrets.token_hex(4))
    code, stdout = verify(tmp_path, registry_http.ref(), registry_http.host, creds, "--plain-http")
    assert code == 1
    assert steps(stdout)[-1][:2] == ("fail", "Basic auth")
    assert "rejected: GET /v2/ with user 'testuser' answered 401" in stdout


def test_http_registry_without_credentials(tmp_path: Path, registry_http: RegistryFixture) -> None:
    code, stdout = verify(tmp_path, registry_http.ref(), registry_http.host, None, "--plain-http")
    assert code == 1
    assert steps(stdout)[0][:2] == ("warn", "credentials")
    assert "empty auth, so the runtime pulls anonymously" in stdout
    assert "no credentials: the registry requires Basic auth and the plugin gave none" in stdout


def test_missing_repository_and_tag(tmp_path: Path, registry_http: RegistryFixture) -> None:
    code, stdout = verify(
        tmp_path, f"{registry_http.host}/nope/app", registry_http.host, registry_http.creds, "--plain-http"
    )
    assert code == 1
    assert "not found: nope/app does not exist (the credentials were accepted)" in stdout
    code, stdout = verify(
        tmp_path, f"{registry_http.host}/team/app:v9", registry_http.host, registry_http.creds, "--plain-http"
    )
    assert code == 1
    assert "not found: team/app:v9 does not exist" in stdout
    code, stdout = verify(
        tmp_path, f"{registry_http.host}/team/app", registry_http.host, registry_http.creds, "--plain-http"
    )
    assert code == 0
    assert steps(stdout)[-1][:2] == ("ok", "tags/list")


def test_an_answer_trickling_in_is_cut_at_the_request_bound(
    tmp_path: Path, registry_http: RegistryFixture
) -> None:
    # A byte every 50 ms never trips a per-read timeout: the whole answer must come within it.
    with FaultProxy("127.0.0.1", registry_http.registry.port, slow_seconds=0.05) as proxy:
        proxy.mode, proxy.only = "slow", "/v2/"
        host = f"127.0.0.1:{proxy.port}"
        code, stdout = verify(
            tmp_path, f"{host}/team/app", host, registry_http.creds, "--plain-http", "--timeout", "2s"
        )
    assert code == 1
    status, check, detail = steps(stdout)[-1]
    # within what was left of the 2 s: the plugin's step came first
    assert (status, check) == ("fail", "GET /v2/")
    assert re.fullmatch(rf"timeout: {re.escape(host)} did not answer in full within [0-9.]+s", detail), detail
    assert len(proxy.faulted) == 1


def test_https_against_a_plain_http_registry_says_so(tmp_path: Path, registry_http: RegistryFixture) -> None:
    code, stdout = verify(tmp_path, registry_http.ref(), registry_http.host, registry_http.creds)
    assert code == 1
    assert "tls: handshake with" in stdout
    assert "does it speak plain http? (then pass --plain-http)" in stdout


def test_tls_registry_needs_its_ca(tmp_path: Path, registry_tls: RegistryFixture) -> None:
    code, stdout = verify(tmp_path, registry_tls.ref(), registry_tls.host, registry_tls.creds)
    assert code == 1
    assert "is not trusted" in stdout
    assert "pass --ca-file" in stdout
    assert registry_tls.ca_file is not None
    code, stdout = verify(
        tmp_path,
        registry_tls.ref(),
        registry_tls.host,
        registry_tls.creds,
        "--ca-file",
        str(registry_tls.ca_file),
    )
    assert code == 0, stdout
    assert f"at https://{registry_tls.host}" in stdout


def test_a_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, stdout = verify(tmp_path, f"127.0.0.1:{port}/a/b", f"127.0.0.1:{port}", ("u", "p"), "--plain-http")
    assert code == 1
    assert f"connect: connection to 127.0.0.1:{port} refused" in stdout


def test_json_report(tmp_path: Path, registry_http: RegistryFixture) -> None:
    config = config_for(tmp_path, registry_http.host, registry_http.creds)
    result = run(["verify", registry_http.ref(), "--config", str(config), "--plain-http", "-o", "json"])
    assert result.code == 0
    report = result.json()
    assert report["ok"] is True
    assert report["registry"] == f"http://{registry_http.host}"
    assert [s["status"] for s in report["steps"]] == ["ok"] * 4
    assert registry_http.password not in result.stdout


def test_verify_through_the_zipapp(zipapp: Path, tmp_path: Path, registry_http: RegistryFixture) -> None:
    config = config_for(tmp_path, registry_http.host, registry_http.creds)
    result = run_zipapp(zipapp, ["verify", registry_http.ref(), "--config", str(config), "--plain-http"], b"")
    assert result.returncode == 0, result.stdout + result.stderr
    assert registry_http.password.encode() not in result.stdout + result.stderr
    assert b"pull authorized" in result.stdout


# --- token auth ---------------------------------------------------------------------------------------


@dataclass
class TokenRegistry:
    registry: Registry
    token: TokenServer
    passwords: dict[str, str]

    @property
    def host(self) -> str:
        return self.registry.host


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory, test_image: OCIImage) -> Iterator[TokenRegistry]:
    passwords = {user: secrets.token_urlsafe(12) for user in ("pusher", "reader", "outsider")}
    acl = {
        "pusher": {"*": ["pull", "push"]},
        "reader": {"team/app": ["pull"]},
        "outsider": {"other/app": ["pull"]},
        "": {"public/app": ["pull"]},
    }

    def start() -> TokenRegistry:
        signing = make_signing_files(tmp_path_factory.mktemp("token-signing"))
        token = TokenServer(signing=signing, users=passwords, acl=acl).start()
        registry = start_token_registry(tmp_path_factory.mktemp("registry-token"), token)
        for repo in ("team/app:v1", "public/app:v1", "other/app:v1"):
            push_image(test_image, registry, repo, username="pusher", password=passwords["pusher"])
        return TokenRegistry(registry=registry, token=token, passwords=passwords)

    started = _setup(start)
    yield started
    started.registry.stop()
    started.token.stop()


def test_token_auth_with_pull_scope(tmp_path: Path, token_registry: TokenRegistry) -> None:
    host = token_registry.host
    creds = ("reader", token_registry.passwords["reader"])
    code, stdout = verify(tmp_path, f"{host}/team/app:v1", host, creds, "--plain-http")
    assert code == 0, stdout
    assert [c[1] for c in steps(stdout)] == ["credentials", "GET /v2/", "token", "manifest"]
    assert 'challenge Bearer realm="http://127.0.0.1:' in stdout
    assert 'service="test-registry"' in stdout
    assert "as 'reader' for 'repository:team/app:pull'" in stdout
    assert "token grants ['pull']" in stdout
    asked = token_registry.token.requests[-1]
    assert asked["query"] == {"service": ["test-registry"], "scope": ["repository:team/app:pull"]}
    assert asked["user"] == "reader"
    assert token_registry.passwords["reader"] not in stdout


def test_token_auth_without_pull_scope(tmp_path: Path, token_registry: TokenRegistry) -> None:
    host = token_registry.host
    creds = ("outsider", token_registry.passwords["outsider"])
    code, stdout = verify(tmp_path, f"{host}/team/app:v1", host, creds, "--plain-http")
    assert code == 1
    assert "no pull scope: asked as 'outsider' for 'repository:team/app:pull'" in stdout
    assert "granted nothing; user 'outsider' may not pull team/app" in stdout


def test_token_auth_rejects_a_wrong_password(tmp_path: Path, token_registry: TokenRegistry) -> None:
    host = token_registry.host
    code, stdout = verify(tmp_path, f"{host}/team/app:v1", host, ("reader", "wrong"), "--plain-http")
    assert code == 1
    assert "rejected: http://127.0.0.1:" in stdout
    assert "refused the credentials of 'reader' (401)" in stdout


def test_token_auth_anonymous(tmp_path: Path, token_registry: TokenRegistry) -> None:
    host = token_registry.host
    code, stdout = verify(tmp_path, f"{host}/public/app:v1", host, None, "--plain-http")
    assert code == 0, stdout
    assert "anonymously for 'repository:public/app:pull'" in stdout
    code, stdout = verify(tmp_path, f"{host}/team/app:v1", host, None, "--plain-http")
    assert code == 1
    assert "no credentials: anonymous access may not pull team/app" in stdout


def test_the_registry_enforces_the_scope_too(token_registry: TokenRegistry) -> None:
    """The registry itself (not only our reading of the token) refuses a token without pull."""
    import base64
    import urllib.request

    realm = token_registry.token.realm
    challenge = Challenge("bearer", {"realm": realm, "service": "test-registry"})
    request = urllib.request.Request(token_url(challenge, "repository:team/app:pull"))
    basic = base64.b64encode(f"outsider:{token_registry.passwords['outsider']}".encode()).decode()
    request.add_header("Authorization", "Basic " + basic)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        bearer = json.loads(response.read())["token"]
    manifest = urllib.request.Request(
        f"{token_registry.registry.url}/v2/team/app/manifests/v1",
        headers={"Authorization": "Bearer " + bearer},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(manifest, timeout=10)
    assert refused.value.code == 401
    assert "insufficient_scope" in refused.value.headers.get("WWW-Authenticate", "")


# --- proxies --------------------------------------------------------------------------------------------


class _Proxy(socketserver.ThreadingTCPServer):
    """A CONNECT and absolute-URI HTTP proxy that maps ``registry.test`` to 127.0.0.1 and records what it saw."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://proxyuser:proxy-pa55@127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        header, _, rest = head.partition(b"\r\n\r\n")
        lines = header.decode().split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        self.server.seen.append(f"{method} {target}")
        auth = next(
            (h.split(":", 1)[1].strip() for h in lines[1:] if h.lower().startswith("proxy-authorization:")),
            None,
        )
        self.server.auth.append(auth)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection(("127.0.0.1" if host == "registry.test" else host, int(port)))
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(upstream, rest)
            return
        # absolute-form: http://registry.test:PORT/path
        without_scheme = target.split("://", 1)[1]
        hostport, _, path = without_scheme.partition("/")
        host, port = hostport.rsplit(":", 1)
        upstream = socket.create_connection(("127.0.0.1" if host == "registry.test" else host, int(port)))
        kept = [h for h in lines[1:] if not h.lower().startswith(("proxy-authorization:", "connection:"))]
        request = "\r\n".join([f"{method} /{path} HTTP/1.1", *kept, "Connection: close"]) + "\r\n\r\n"
        self._pipe(upstream, request.encode() + rest)

    def _pipe(self, upstream: socket.socket, first: bytes) -> None:
        with upstream:
            if first:
                upstream.sendall(first)
            sockets = [self.request, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_https_proxy_tunnel_with_sni_and_ca(
    tmp_path: Path, proxy: _Proxy, test_image: OCIImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is used (CONNECT), the certificate is checked for the registry's name, not the proxy's."""
    tls = _setup(lambda: make_tls_files(tmp_path / "tls", hosts=("registry.test", "127.0.0.1")))
    password = secrets.token_urlsafe(12)
    registry = _setup(lambda: start_registry(tmp_path / "reg", tls=tls, users={"proxied": password}))
    try:
        push_image(test_image, registry, "team/app:v1", username="proxied", password=password)
        host = f"registry.test:{registry.port}"
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.com")
        code, stdout = verify(
            tmp_path, f"{host}/team/app:v1", host, ("proxied", password), "--ca-file", str(tls.ca_cert)
        )
        assert code == 0, stdout
        assert proxy.seen
        assert all(seen == f"CONNECT {host}" for seen in proxy.seen)
        assert proxy.auth[0] == "Basic cHJveHl1c2VyOnByb3h5LXBhNTU="  # proxyuser:proxy-pa55
        assert f"proxy: http://127.0.0.1:{proxy.server_address[1]}" in stdout
        assert "proxy-pa55" not in stdout
        monkeypatch.setenv("NO_PROXY", ".test")
        proxy.seen.clear()
        code, stdout = verify(
            tmp_path, f"{host}/team/app:v1", host, ("proxied", password), "--ca-file", str(tls.ca_cert)
        )
        assert proxy.seen == []  # bypassed, so registry.test does not even resolve
        assert code == 1
        assert "dns: cannot resolve registry.test" in stdout
    finally:
        registry.stop()


def test_http_proxy_forwarding(
    tmp_path: Path, proxy: _Proxy, registry_http: RegistryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    host = f"registry.test:{registry_http.registry.port}"
    code, stdout = verify(tmp_path, f"{host}/team/app:v1", host, registry_http.creds, "--plain-http")
    assert code == 0, stdout
    assert f"GET http://{host}/v2/" in proxy.seen
    assert f"HEAD http://{host}/v2/team/app/manifests/v1" in proxy.seen


# --- units -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="test-registry"', [("basic", {"realm": "test-registry"})]),
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
            [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/nginx:pull"})],
        ),
        ('Bearer realm="r", error="insufficient_scope"', [("bearer", {"realm": "r", "error": "insufficient_scope"})]),
        ('Bearer realm="a\\"b",service=plain', [("bearer", {"realm": 'a"b', "service": "plain"})]),
        ('Negotiate, Basic realm="x"', [("negotiate", {}), ("basic", {"realm": "x"})]),
    ],
)  # fmt: skip
def test_challenge_parsing(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert [(c.scheme, c.params) for c in parse_challenges([header])] == expected


def test_token_url_keeps_the_realms_query() -> None:
    challenge = Challenge("bearer", {"realm": "https://r.io/token?account=x", "service": "s v"})
    assert (
        token_url(challenge, "repository:a/b:pull")
        == "https://r.io/token?account=x&service=s+v&scope=repository%3Aa%2Fb%3Apull"
    )


@pytest.mark.parametrize(
    ("url", "no_proxy", "proxied"),
    [
        ("https://registry.example.com/v2/", "", True),
        ("https://127.0.0.1:5000/v2/", "", False),
        ("https://localhost/v2/", "", False),
        ("https://[::1]:5000/v2/", "", False),
        ("https://registry.example.com/v2/", "example.com", False),
        ("https://registry.example.com/v2/", ".example.com", False),
        ("https://example.com/v2/", ".example.com", True),
        ("https://registry.example.com/v2/", "*", False),
        ("https://registry.example.com:5000/v2/", "registry.example.com:443", True),
        ("https://registry.example.com/v2/", "registry.example.com:443", False),
        ("https://10.1.2.3/v2/", "10.0.0.0/8", False),
        ("https://notexample.com/v2/", "example.com", True),
    ],
)
def test_proxy_rules_follow_go(url: str, no_proxy: str, proxied: bool) -> None:
    environ = {"HTTPS_PROXY": "proxy.internal:3128", "NO_PROXY": no_proxy}
    assert (proxy_for(url, environ) == "http://proxy.internal:3128") is proxied
    assert proxy_for("http://registry.example.com/v2/", environ) is None  # no HTTP_PROXY


def test_redact_url() -> None:
    assert redact_url("http://u:secret@proxy:3128") == "http://proxy:3128"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
