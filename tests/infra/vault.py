"""A strict fake of the parts of HashiCorp Vault's HTTP API the ``vault`` backend uses, on 127.0.0.1.

No Vault server can be installed here, so this follows Vault's documented API:

- ``POST /v1/auth/<mount>/login`` for the ``kubernetes`` and ``jwt`` methods (body ``{"role", "jwt"}``)
  and ``approle`` (body ``{"role_id", "secret_id"}``). An unknown role is 400 ``invalid role name``; a
  token whose ``kubernetes.io`` claims are not bound to the role (namespace, service account) is 403
  ``permission denied``, as is a wrong secret id. Success returns ``auth.client_token`` and
  ``auth.lease_duration``. The fake decodes the JWT without checking its signature, but only accepts
  tokens it was told about (``trusted_jwts``), standing in for Vault's TokenReview / JWKS check.
- ``GET /v1/<kv mount>/data/<path>`` (KV v2): needs ``X-Vault-Token`` of a live login whose policy
  allows the path (a role's ``paths``, with ``{namespace}``/``{serviceAccount}`` of the login), else
  403 ``permission denied``; a missing secret is 404 ``{"errors": []}``; a hit returns
  ``data.data``, ``data.metadata.version`` and ``lease_duration`` 0, as KV v2 does.
- ``GET /v1/sys/health`` (unauthenticated): 200 with ``initialized``, ``sealed``, ``standby``...
  when active; 503 when ``sealed``, as Vault's defaults are.
- Tokens made outside a login (``create_token``, as ``vault token create`` or Vault Agent's
  sink file) read what their ``paths`` allow until ``revoke``; an unknown or revoked token is
  403 ``permission denied``.
- Anything else: 404 ``unsupported path`` / 405.

``requests`` records every call (method, path, status, and the role or token's role, never a token).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.infra._util import ThreadedServer


@dataclass(frozen=True)
class VaultRole:
    """A role of a kubernetes/jwt mount (``namespaces``, ``service_accounts`` bound; ``*`` any) or
    of an approle mount (``role_id``/``secret_id``); ``paths``: the KV paths its tokens may read."""

    paths: tuple[str, ...]
    namespaces: tuple[str, ...] = ("*",)
    service_accounts: tuple[str, ...] = ("*",)
    role_id: str = ""
    secret_id: str = field(default="", repr=False)
    ttl: int = 3600


@dataclass(frozen=True)
class VaultCall:
    method: str
    path: str
    status: int
    role: str = ""


@dataclass
class _Login:
    mount: str
    role: str
    namespace: str
    service_account: str


def _claims(jwt: str) -> dict[str, Any] | None:
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: VaultFake) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], role: str = "") -> None:
        data = json.dumps(body).encode()
        # Recorded before the reply leaves: a client that has its answer finds the call counted.
        self.server.fake._record(VaultCall(self.command, self.path, status, role))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            value = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def do_POST(self) -> None:
        fake = self.server.fake
        prefix, suffix = "/v1/auth/", "/login"
        if not (self.path.startswith(prefix) and self.path.endswith(suffix)):
            self._reply(405, {"errors": ["1 error occurred:\n\t* unsupported operation\n\n"]})
            return
        mount = self.path[len(prefix) : -len(suffix)]
        body = self._body()
        if mount not in fake.mounts or body is None:
            self._reply(
                400 if body is None else 404, {"errors": [f"no handler for route 'auth/{mount}/login'"]}
            )
            return
        fake._login(self, fake.mounts[mount], mount, body)

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.split("?")[0] == "/v1/sys/health":
            body = {"initialized": True, "sealed": fake.sealed, "standby": False,
                    "performance_standby": False, "replication_performance_mode": "disabled",
                    "replication_dr_mode": "disabled", "server_time_utc": 1767225600,
                    "version": "1.19.0", "cluster_name": "vault-fake", "cluster_id": "fake"}  # fmt: skip
            self._reply(503 if fake.sealed else 200, body)
            return
        token = self.headers.get("X-Vault-Token", "")
        login = fake._tokens.get(token)
        for mount in fake.kv:
            prefix = f"/v1/{mount}/data/"
            if self.path.startswith(prefix):
                path = self.path[len(prefix) :]
                if login is None or not fake._allowed(login, path):
                    self._reply(403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
                    return
                versions = fake.kv[mount].get(path)
                if not versions:
                    self._reply(404, {"errors": []}, login.role)
                    return
                self._reply(
                    200,
                    {
                        "request_id": secrets.token_hex(8),
                        "lease_id": "",
                        "renewable": False,
                        "lease_duration": 0,
                        "data": {
                            "data": versions[-1],
                            "metadata": {
                                "created_time": "2026-01-01T00:00:00.000000Z",
                                "custom_metadata": None,
                                "deletion_time": "",
                                "destroyed": False,
                                "version": len(versions),
                            },
                        },
                        "wrap_info": None,
                        "warnings": None,
                        "auth": None,
                    },
                    login.role,
                )
                return
        self._reply(404, {"errors": []})


class VaultFake(ThreadedServer):
    """Vault on loopback (``tls``: ``(cert, key)`` PEM files to serve https)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        # mount -> (method, role name -> role)
        self.mounts: dict[str, tuple[str, dict[str, VaultRole]]] = {}
        self.kv: dict[str, dict[str, list[dict[str, str]]]] = {"secret": {}}
        self.trusted_jwts: set[str] = set()
        self.requests: list[VaultCall] = []
        self._tokens: dict[str, _Login] = {}
        self._lock = threading.Lock()
        self._tls = tls
        self.sealed = False
        self._token_roles: dict[str, VaultRole] = {}  # create_token's, by role name

    def start(self) -> VaultFake:
        server = _Server(self)
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.serve(server, "vault-fake")
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def mount(self, name: str, method: str, roles: dict[str, VaultRole]) -> None:
        self.mounts[name] = (method, roles)

    def put_secret(self, path: str, data: dict[str, str], mount: str = "secret") -> int:
        """Write a new version of the secret; returns its version."""
        versions = self.kv.setdefault(mount, {}).setdefault(path, [])
        versions.append(dict(data))
        return len(versions)

    def create_token(self, paths: tuple[str, ...], role: str = "node-token") -> str:
        """A token that may read ``paths`` (no placeholders), made outside any login."""
        self._token_roles[role] = VaultRole(paths=paths)
        token = "hvs." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Login("", role, "", "")
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def _record(self, call: VaultCall) -> None:
        with self._lock:
            self.requests.append(call)

    def _allowed(self, login: _Login, path: str) -> bool:
        role = self._token_roles[login.role] if not login.mount else self.mounts[login.mount][1][login.role]
        allowed = (
            template.format(namespace=login.namespace, serviceAccount=login.service_account)
            for template in role.paths
        )
        return path in allowed

    def _issue(self, handler: _Handler, login: _Login, ttl: int) -> None:
        token = "hvs." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = login
        handler._reply(
            200,
            {
                "request_id": secrets.token_hex(8),
                "lease_id": "",
                "renewable": False,
                "lease_duration": 0,
                "data": None,
                "wrap_info": None,
                "warnings": None,
                "auth": {
                    "client_token": token,
                    "accessor": secrets.token_urlsafe(12),
                    "policies": ["default", login.role],
                    "token_policies": ["default", login.role],
                    "metadata": {"role": login.role},
                    "lease_duration": ttl,
                    "renewable": True,
                    "entity_id": secrets.token_hex(8),
                    "token_type": "service",
                    "orphan": True,
                },
            },
            login.role,
        )

    def _login(
        self, handler: _Handler, mount: tuple[str, dict[str, VaultRole]], name: str, body: dict[str, Any]
    ) -> None:
        method, roles = mount
        denied = {"errors": ["permission denied"]}
        if method == "approle":
            role_id, secret_id = body.get("role_id"), body.get("secret_id")
            found = next(
                (
                    n
                    for n, r in roles.items()
                    if r.role_id and r.role_id == role_id and r.secret_id == secret_id
                ),
                None,
            )
            if found is None:
                handler._reply(400 if not any(r.role_id == role_id for r in roles.values()) else 403, denied)
                return
            self._issue(handler, _Login(name, found, "", ""), roles[found].ttl)
            return
        role_name, jwt = body.get("role"), body.get("jwt")
        if not isinstance(role_name, str) or not isinstance(jwt, str) or not jwt:
            handler._reply(400, {"errors": ["missing role or jwt"]})
            return
        if role_name not in roles:
            handler._reply(400, {"errors": [f'invalid role name "{role_name}"']})
            return
        role = roles[role_name]
        claims = _claims(jwt) if jwt in self.trusted_jwts else None
        kubernetes = (claims or {}).get("kubernetes.io") or {}
        namespace = kubernetes.get("namespace", "")
        account = (kubernetes.get("serviceaccount") or {}).get("name", "")
        if (
            claims is None
            or ("*" not in role.namespaces and namespace not in role.namespaces)
            or ("*" not in role.service_accounts and account not in role.service_accounts)
        ):
            handler._reply(403, denied, role_name)
            return
        self._issue(handler, _Login(name, role_name, namespace, account), role.ttl)
