"""Token authentication for the real registry: a small, strict token server and a registry using it.

CNCF distribution's ``auth.token`` sends clients to a token server (``realm``); nothing real
exists for that on the test machines, so this is one, written to the protocol and no further:

- ``GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...]``, optionally with Basic auth;
- the service must be the configured one; wrong credentials get 401 (never a token);
- each scope is granted only the actions the caller's ACL allows (``""`` is the anonymous caller,
  ``"*"`` any repository), and may be granted nothing: the registry then answers 401
  ``insufficient_scope`` for the repository, as real ones do;
- tokens are RS256 JWTs whose ``x5c`` header carries a certificate signed by the CA in the
  registry's ``rootcertbundle`` (both made with the openssl CLI; signing shells out to it).

``start_token_registry`` starts ``docker-registry serve`` with that configuration on a free port.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.infra._util import (
    ThreadedServer,
    require_binary,
    run_checked,
)
from tests.infra.registry import Registry, quote, serve_registry
from tests.infra.tls import TLSFiles

SERVICE = "test-registry"
ISSUER = "test-token-issuer"
TOKEN_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningFiles:
    ca_cert: Path  # the registry's rootcertbundle
    key: Path  # RSA key that signs tokens
    cert_der: bytes  # its certificate (signed by ca_cert), for the x5c header


def make_signing_files(directory: Path) -> SigningFiles:
    """An RSA CA and a token-signing certificate it signed (RS256 needs RSA)."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "token-ca.key", directory / "token-ca.crt"
    key, csr, cert = directory / "signer.key", directory / "signer.csr", directory / "signer.crt"
    run_checked(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
         "-days", "7", "-subj", "/CN=registry-credential-provider token CA"],
        what="openssl: token CA",
    )  # fmt: skip
    run_checked(
        [openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
         "-subj", "/CN=registry-credential-provider token signer"],
        what="openssl: token signer key",
    )  # fmt: skip
    run_checked(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-set_serial", "0x" + secrets.token_hex(8), "-days", "7", "-out", str(cert)],
        what="openssl: sign token signer",
    )  # fmt: skip
    der = subprocess.run(
        [openssl, "x509", "-in", str(cert), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    return SigningFiles(ca_cert=ca_cert, key=key, cert_der=der)


@dataclass
class TokenServer(ThreadedServer):
    """The token endpoint. ``users`` maps user -> password; ``acl`` maps user ("" = anonymous)
    -> repository ("*" = any) -> allowed actions."""

    signing: SigningFiles
    users: dict[str, str] = field(repr=False)
    acl: dict[str, dict[str, list[str]]]
    service: str = SERVICE
    issuer: str = ISSUER
    requests: list[dict[str, object]] = field(default_factory=list)  # what clients asked (no secrets)
    tls: TLSFiles | None = None  # serve https with this certificate
    token_path: str = "/token"
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def realm(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}{self.token_path}"

    def post(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        """A POST to ``path`` (subclasses serve more endpoints); this server has none."""
        return 404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]}

    def sign(self, claims: Mapping[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.signing.cert_der).decode()]}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = subprocess.run(
            [require_binary("openssl"), "dgst", "-sha256", "-sign", str(self.signing.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return signing_input + "." + _b64url(signature)

    def caller(self, authorization: str | None) -> str | None:
        """The authenticated user, "" for anonymous, None for wrong credentials."""
        if authorization is None:
            return ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password):
            return None
        return user

    def grant(self, user: str, scopes: list[str]) -> list[dict[str, object]]:
        rules = self.acl.get(user, {})
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            allowed = set(rules.get(name, []) + rules.get("*", []))
            granted = [action for action in actions.split(",") if action in allowed]
            access.append({"type": "repository", "name": name, "actions": granted})
        return access

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def reply(
                self, status: int, body: dict[str, object], headers: Mapping[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode()) if length else {}
                path = urlsplit(self.path).path
                server.requests.append({"method": "POST", "path": path, "fields": sorted(form)})
                status, body = server.post(path, form)
                self.reply(status, body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                user = server.caller(self.headers.get("Authorization"))
                server.requests.append(
                    {"path": url.path, "query": query, "user": user, "basic": "Authorization" in self.headers}
                )
                if url.path != server.token_path:
                    self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
                    return
                if query.get("service") != [server.service]:
                    self.reply(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
                    return
                if user is None:
                    self.reply(
                        401,
                        {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]},
                        {"WWW-Authenticate": 'Basic realm="token"'},
                    )
                    return
                now = int(time.time())
                claims = {
                    "iss": server.issuer,
                    "sub": user,
                    "aud": server.service,
                    "exp": now + TOKEN_SECONDS,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": secrets.token_hex(8),
                    "access": server.grant(user, query.get("scope", [])),
                }
                token = server.sign(claims)
                self.reply(200, {"token": token, "access_token": token, "expires_in": TOKEN_SECONDS})

        http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
            http_server.socket = context.wrap_socket(http_server.socket, server_side=True)
        self.serve(http_server, "token-server")
        return self


def start_token_registry(
    workdir: Path, token: TokenServer, *, tls: TLSFiles | None = None, timeout: float = 20.0
) -> Registry:
    """``docker-registry serve`` with ``auth.token`` pointing at ``token``; returns once /v2/ answers 401."""
    workdir.mkdir(parents=True, exist_ok=True)
    auth = (
        "auth:\n  token:\n"
        f"    realm: {quote(token.realm)}\n    service: {quote(token.service)}\n"
        f"    issuer: {quote(token.issuer)}\n    rootcertbundle: {quote(token.signing.ca_cert)}\n"
    )
    return serve_registry(workdir, auth=auth, tls=tls, timeout=timeout, what="token registry")
