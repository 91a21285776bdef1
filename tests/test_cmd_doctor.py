"""``doctor``: one line per check, short timeouts, never a hang, never a secret.

The cloud identity sources are loopback fakes that insist on what the real ones insist on
(IMDSv2's PUT for a token, ``Metadata-Flavor: Google``, ``Metadata: true``); a "black hole"
that accepts connections and never answers proves the command gives up on time.
"""

from __future__ import annotations

import email.utils
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cmdutil import SECRET, auth_file, provider_config, run
from tests.conftest import run_zipapp

CLOUD_RULES = (
    "  - match: ['*.dkr.ecr.*.amazonaws.com']\n    backend: ecr\n"
    "  - match: ['*.pkg.dev']\n    backend: gar\n"
    "  - match: ['*.azurecr.io']\n    backend: acr\n"
)


class _Metadata(BaseHTTPRequestHandler):
    skew_seconds = 0.0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew_seconds, usegmt=True)

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"ok") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._reply(200)
        else:
            self._reply(403)

    def do_GET(self) -> None:
        if (
            self.path.endswith("/service-accounts/default/token")
            and self.headers.get("Metadata-Flavor") == "Google"
        ):
            self._reply(200, {"Metadata-Flavor": "Google"}, b'{"access_token": "ya29.x", "expires_in": 3599}')
        elif self.path.startswith("/computeMetadata/v1/") and self.headers.get("Metadata-Flavor") == "Google":
            self._reply(200, {"Metadata-Flavor": "Google"})
        elif self.path.startswith("/metadata/instance?") and self.headers.get("Metadata") == "true":
            self._reply(200)
        else:
            self._reply(403)


def _serve(skew: float = 0.0) -> ThreadingHTTPServer:
    handler = type("Handler", (_Metadata,), {"skew_seconds": skew})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def metadata() -> Iterator[str]:
    server = _serve()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class BlackHole:
    """A TCP server that accepts connections and never answers, recording how many clients held a
    connection open at once (a client's close is noted before the next connection is accepted,
    so probes run one after the other never count as overlapping)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.hostport = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.most_open = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        open_conns: list[socket.socket] = []
        while not self._stop:
            readable, _, _ = select.select([self.listener, *open_conns], [], [], 0.05)
            for conn in [c for c in open_conns if c in readable]:
                if not conn.recv(4096):  # the client gave up
                    open_conns.remove(conn)
                    conn.close()
            if self.listener in readable:
                open_conns.append(self.listener.accept()[0])
                self.most_open = max(self.most_open, len(open_conns))
        for conn in open_conns:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def black_hole_server() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


@pytest.fixture
def black_hole(black_hole_server: BlackHole) -> str:
    """Accepts connections and never answers."""
    return black_hole_server.hostport


@pytest.fixture
def quiet_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private cache dir and zipapp dir, so the node checks do not depend on this machine's."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    pex_root = tmp_path / "pex"
    pex_root.mkdir(mode=0o755)
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR", str(cache))
    monkeypatch.setenv("PEX_ROOT", str(pex_root))


def _point_at(monkeypatch: pytest.MonkeyPatch, hostport: str) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://{hostport}")
    monkeypatch.setenv("GCE_METADATA_HOST", hostport)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", f"http://{hostport}")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "IDENTITY_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def checks(stdout: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for line in stdout.splitlines():
        parts = [p.strip() for p in line.split("  ") if p.strip()]
        if len(parts) >= 3 and parts[0] in ("ok", "warn", "fail"):
            found.setdefault(parts[1], []).append((parts[0], "  ".join(parts[2:])))
    return found


def test_every_identity_source_reachable(
    tmp_path: Path, metadata: str, monkeypatch: pytest.MonkeyPatch, quiet_node: None
) -> None:
    _point_at(monkeypatch, metadata)
    config = provider_config(tmp_path, CLOUD_RULES)
    result = run(["doctor", "--config", str(config)])
    found = checks(result.stdout)
    assert found["ecr"][-1][0] == "ok"
    assert "AWS IMDSv2 answered 200" in found["ecr"][-1][1]
    assert found["gar"][0][0] == "ok"
    assert "GCE metadata server answered 200" in found["gar"][0][1]
    assert found["gar"][1] == ("ok", "token of service account 'default': valid for 3599s")
    assert found["acr"][-1][0] == "ok"
    assert "Azure IMDS answered 200" in found["acr"][-1][1]
    assert found["clock"][0][0] == "ok"
    assert "behind" in found["clock"][0][1] or "ahead" in found["clock"][0][1]
    assert found["python"][0][0] == "ok"
    assert found["form"][0][1].startswith("zipapp (CPython 3.")
    assert [name for name, results in found.items() for s, _ in results if s == "fail"] == []
    assert result.code == 0
    assert result.stdout.rstrip().splitlines()[-1].endswith(", 0 fail")  # the summary line


def test_unreachable_sources_fail_in_parallel_probes(
    tmp_path: Path, black_hole_server: BlackHole, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(monkeypatch, black_hole_server.hostport)
    config = provider_config(tmp_path, CLOUD_RULES)
    result = run(["doctor", "--config", str(config), "--timeout", "2s", "-o", "json"])
    # The three sources were probed at once, not one after the other.
    assert black_hole_server.most_open >= 3
    assert result.code == 1
    report = result.json()
    by_check = {
        c["check"]: c
        for c in report["checks"]
        if c["check"] in ("ecr", "gar", "acr") and c["status"] == "fail"
    }
    assert set(by_check) == {"ecr", "gar", "acr"}
    assert "no identity source" in by_check["ecr"]["detail"]


def test_an_environment_identity_is_enough(
    tmp_path: Path, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(monkeypatch, black_hole)
    token = tmp_path / "web-identity-token"
    token.write_text(SECRET)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    config = provider_config(tmp_path, "  - match: ['*.dkr.ecr.*.amazonaws.com']\n    backend: ecr\n")
    result = run(["doctor", "--config", str(config), "--timeout", "1s"])
    assert SECRET not in result.stdout
    ecr = checks(result.stdout)["ecr"][-1]
    assert ecr[0] == "ok"
    assert f"identity from {token}" in ecr[1]


def test_clock_skew_is_hinted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _serve(skew=-300)
    try:
        _point_at(monkeypatch, f"127.0.0.1:{server.server_address[1]}")
        config = provider_config(tmp_path, "  - match: ['*.pkg.dev']\n    backend: gar\n")
        result = run(["doctor", "--config", str(config)])
    finally:
        server.shutdown()
        server.server_close()
    status, detail = checks(result.stdout)["clock"][0]
    assert status == "warn"
    assert "ahead of GCE metadata server" in detail
    assert "check NTP" in detail


def test_dockerconfig_files_and_helpers_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = auth_file(tmp_path, {"registry.example.com": ("alice", SECRET)})
    helpers = tmp_path / "helpers.json"
    helpers.write_text('{"credHelpers": {"r.io": "missing-helper"}, "credsStore": "present"}')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    present = bindir / "docker-credential-present"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    config = provider_config(
        tmp_path,
        f"  - match: [a.io]\n    backend: dockerconfig\n    files: [{auth}, {helpers}]\n"
        f"  - match: [b.io]\n    backend: dockerconfig\n    files: [{tmp_path / 'none.json'}]\n"
        "  - backend: anonymous\n",
    )
    result = run(["doctor", "--config", str(config)])
    assert SECRET not in result.stdout
    assert result.code == 1
    first = {
        detail.split(":")[0]: status for status, detail in checks(result.stdout)["rules[0] dockerconfig"]
    }
    assert first["helper docker-credential-present"] == "ok"
    assert first[f"helper docker-credential-missing-helper is not on PATH ({bindir}"] == "fail"
    second = checks(result.stdout)["rules[1] dockerconfig"][0]
    assert second[0] == "warn"
    assert "pulled anonymously" in second[1]


def test_unsafe_directories_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pex_root = tmp_path / "pex"
    pex_root.mkdir()
    pex_root.chmod(0o777)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o755)
    monkeypatch.setenv("PEX_ROOT", str(pex_root))
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR", str(cache))
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    result = run(["doctor", "--config", str(config)])
    assert result.code == 1
    found = checks(result.stdout)
    assert found["zipapp dir"][0][0] == "fail"
    assert "writable by group or others (mode 777)" in found["zipapp dir"][0][1]
    assert found["cache dir"][0][0] == "fail"
    assert "open to other users" in found["cache dir"][0][1]
    pex_root.chmod(0o755)
    cache.chmod(0o700)
    result = run(["doctor", "--config", str(config)])
    found = checks(result.stdout)
    assert found["zipapp dir"][0][0] == "ok"
    assert found["cache dir"][0][0] == "ok"


def test_proxy_settings_are_shown_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: str
) -> None:
    _point_at(monkeypatch, metadata)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:{SECRET}@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    config = provider_config(tmp_path, "  - match: ['*.pkg.dev']\n    backend: gar\n")
    result = run(["doctor", "--config", str(config)])
    assert SECRET not in result.stdout
    status, detail = checks(result.stdout)["proxy"][0]
    assert status == "warn"
    assert "HTTP_PROXY=http://proxy.internal:3128" in detail
    assert "add 169.254.169.254, metadata.google.internal to NO_PROXY" in detail


def test_broken_config_fails_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules: []\nbogus: 1\n"
    )
    result = run(["doctor", "--config", str(config)])
    assert result.code == 1
    status, detail = checks(result.stdout)["config"][0]
    assert status == "fail"
    assert str(config) in detail


def test_registry_probe(tmp_path: Path, black_hole: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    result = run(["doctor", "--config", str(config), "--registry", black_hole, "--timeout", "1s"])
    assert result.code == 1
    status, detail = checks(result.stdout)[f"registry {black_hole}"][0]
    assert status == "fail"
    assert "did not answer in time" in detail or "no answer in time" in detail


def test_doctor_through_the_zipapp(zipapp: Path, tmp_path: Path) -> None:
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(cache)}
    result = run_zipapp(zipapp, ["doctor", "--config", str(config), "-o", "json"], b"", env=env, timeout=60)
    assert result.returncode == 0, result.stdout
    import json

    report = json.loads(result.stdout)
    by_check = {c["check"]: c for c in report["checks"]}
    assert by_check["python"]["status"] == "ok"
    assert by_check["form"]["status"] == "ok"
    assert by_check["form"]["detail"].startswith("zipapp (CPython 3.")
    assert "running from the zipapp" in by_check["zipapp dir"]["detail"]
    assert by_check["config"]["status"] == "ok"


def test_registry_probe_takes_the_plain_http_it_suggests(tmp_path: Path, metadata: str) -> None:
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    over_tls = run(["doctor", "--config", str(config), "--registry", metadata, "--timeout", "5s"])
    status, detail = checks(over_tls.stdout)[f"registry {metadata}"][0]
    assert status == "fail"
    assert "(then pass --plain-http)" in detail
    plain = run(
        ["doctor", "--config", str(config), "--registry", metadata, "--plain-http", "--timeout", "5s"]
    )
    assert "see --help" not in plain.stderr, plain.stderr
    assert checks(plain.stdout)[f"registry {metadata}"][0] == ("warn", "GET /v2/: 403")


def test_doctor_names_the_self_contained_form_when_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    from provider.commands import doctor

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert doctor.installed_form().startswith("self-contained (brings its own CPython 3.")
