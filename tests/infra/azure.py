"""Strict loopback fakes of Azure for the ``acr`` backend: IMDS, Entra ID and ACR's token endpoints.

Nothing real can run here, so each fake follows the protocol as clients see it, and no further:

- ``AzureImds`` (http, as IMDS is): every request needs ``Metadata: true`` (else 400, as the
  real one answers); ``GET /metadata/instance`` is the instance document;
  ``GET /metadata/identity/oauth2/token?resource=...`` issues a token for the system-assigned
  identity or a user-assigned one named by ``client_id``, ``mi_res_id`` or ``msi_res_id``
  (unknown: 400). ``mode`` ``hang`` never answers in time.
- ``AppServiceIdentity`` (http, as it is): the App Service managed identity endpoint that
  ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` name (azure-identity's first choice over IMDS).
- ``EntraFake`` (https, with a test CA: the authority must be https): the tenant's OpenID
  configuration and ``POST /<tenant>/oauth2/v2.0/token`` for ``client_credentials`` with a
  client secret or a client assertion (a JWT; an expired one is refused with AADSTS700024); a
  client of another tenant is refused with AADSTS700016.
- ``AcrTokenServer`` (https): the registry's token realm, ``/oauth2/token``, and
  ``POST /oauth2/exchange``, which turns an access token issued by the fakes above (for ACR's
  scope, in the tenant asked for) into a refresh token (a JWT with ``exp``); ``/oauth2/token``
  accepts ``00000000-...`` with a live refresh token as Basic auth. ``exchange_status`` forces
  an answer (401...).

Every fake records its requests (never a token) and shares one ``TokenBook`` of what was issued.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.infra._util import ThreadedServer
from tests.infra.tls import TLSFiles
from tests.infra.tokenauth import TokenServer

ACR_SCOPE = "https://containerregistry.azure.net/.default"
ACR_RESOURCE = "https://containerregistry.azure.net"
ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
REFRESH_SECONDS = 3 * 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, object]) -> str:
    """A JWT shaped token (the fakes do not check signatures: none of the clients can)."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(32))}"


def jwt_claims(token: str) -> dict[str, object] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


@dataclass
class TokenBook:
    """What the fakes issued: access tokens (-> tenant, who) and refresh tokens (-> expiry)."""

    access: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    refresh: dict[str, float] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def issue_access(self, tenant: str, who: str) -> str:
        token = unsigned_jwt({"tid": tenant, "sub": who, "aud": ACR_RESOURCE, "exp": int(time.time()) + 3600})
        with self.lock:
            self.access[token] = (tenant, who)
        return token

    def secrets(self) -> list[str]:
        with self.lock:
            return [*self.access, *self.refresh]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _serve_tls(server: ThreadingHTTPServer, tls: TLSFiles) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)


class AzureImds(ThreadedServer):
    """IMDS. ``identities``: user-assigned identities as client id -> resource id; the system
    identity always exists. ``url`` is what ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` should hold."""

    def __init__(
        self, book: TokenBook, tenant: str, identities: dict[str, str] | None = None, mode: str = "ok"
    ) -> None:
        self.book = book
        self.tenant = tenant
        self.identities = dict(identities or {})
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                fake.requests.append(
                    {"path": url.path, "query": sorted(query), "metadata": self.headers.get("Metadata")}
                )
                if fake.mode == "hang":
                    time.sleep(30)
                    return
                if self.headers.get("Metadata") != "true":
                    self.reply(
                        400,
                        {
                            "error": "bad_request",
                            "error_description": "Required metadata header not specified",
                        },
                    )
                    return
                if url.path == "/metadata/instance":
                    self.reply(
                        200, {"compute": {"azEnvironment": "AzurePublicCloud", "location": "westeurope"}}
                    )
                    return
                if url.path != "/metadata/identity/oauth2/token":
                    self.reply(404, {"error": "not_found"})
                    return
                if query.get("resource") != ACR_RESOURCE:
                    self.reply(
                        400, {"error": "invalid_resource", "error_description": "resource not expected"}
                    )
                    return
                who = fake.who(query)
                if who is None:
                    self.reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
                    return
                token = fake.book.issue_access(fake.tenant, who)
                expires = int(time.time()) + 3600
                self.reply(200, {"access_token": token, "expires_in": "3600", "expires_on": str(expires),
                                 "resource": ACR_RESOURCE, "token_type": "Bearer"})  # fmt: skip

        self.serve(_Server(("127.0.0.1", 0), Handler), "azure-imds")

    def who(self, query: dict[str, str]) -> str | None:
        client = query.get("client_id")
        resource = query.get("mi_res_id") or query.get("msi_res_id")
        if client:
            return f"mi:{client}" if client in self.identities else None
        if resource:
            found = [c for c, r in self.identities.items() if r.lower() == resource.lower()]
            return f"mi:{found[0]}" if found else None
        return "mi:system"

    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/metadata/identity/oauth2/token"]


class AppServiceIdentity(ThreadedServer):
    """The App Service / Functions managed identity endpoint (``IDENTITY_ENDPOINT`` and
    ``IDENTITY_HEADER``), as documented: ``GET <endpoint>?api-version=2019-08-01&resource=...``
    (``client_id`` / ``mi_res_id`` for a user-assigned identity) with header
    ``X-IDENTITY-HEADER`` equal to ``header``, else 400; another api-version is 400; a resource
    other than ACR's is 500, as the real one answers it; a token carries ``expires_on`` (epoch
    seconds, a string). ``url`` is what ``IDENTITY_ENDPOINT`` should hold."""

    def __init__(self, book: TokenBook, tenant: str, header: str) -> None:
        self.book = book
        self.tenant = tenant
        self.header = header
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                given = self.headers.get("X-IDENTITY-HEADER", "")
                header_ok = bool(given) and secrets.compare_digest(given, fake.header)
                fake.requests.append({"path": url.path, "query": sorted(query), "header_ok": header_ok})
                if url.path != "/msi/token":
                    self.reply(404, {"statusCode": 404, "message": "not found"})
                    return
                if not header_ok:
                    self.reply(400, {"statusCode": 400, "message": "Missing or invalid X-IDENTITY-HEADER"})
                    return
                if query.get("api-version") != "2019-08-01":
                    self.reply(400, {"statusCode": 400, "message": "Unsupported api-version"})
                    return
                if query.get("resource") != ACR_RESOURCE:
                    self.reply(500, {"statusCode": 500, "message": "An unexpected error occured"})
                    return
                who = "mi:" + (query.get("client_id") or query.get("mi_res_id") or "app-service")
                token = fake.book.issue_access(fake.tenant, who)
                self.reply(200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                                 "resource": ACR_RESOURCE, "token_type": "Bearer",
                                 "client_id": "88888888-8888-8888-8888-888888888888"})  # fmt: skip

        self.serve(_Server(("127.0.0.1", 0), Handler), "app-service-identity")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"


class EntraFake(ThreadedServer):
    """Entra ID. ``clients``: client id -> (tenant, secret or "" for assertion-only clients).
    ``url`` (https) is what ``AZURE_AUTHORITY_HOST`` should hold."""

    def __init__(self, book: TokenBook, tls: TLSFiles, clients: dict[str, tuple[str, str]]) -> None:
        self.book = book
        self.clients = clients
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                fake.requests.append({"method": "GET", "path": path})
                tenant, _, rest = path.strip("/").partition("/")
                if rest == "v2.0/.well-known/openid-configuration":
                    base = f"{fake.url}/{tenant}"
                    self.reply(200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                     "issuer": f"{base}/v2.0", "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"})  # fmt: skip
                    return
                self.reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                tenant, _, rest = path.strip("/").partition("/")
                fake.requests.append({"method": "POST", "path": path, "fields": sorted(form)})
                if rest != "oauth2/v2.0/token":
                    self.reply(404, {"error": "not_found"})
                    return
                status, body = fake.token(tenant, form)
                self.reply(status, body)

        server = _Server(("127.0.0.1", 0), Handler)
        _serve_tls(server, tls)
        self.serve(server, "entra-fake")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        def refuse(status: int, error: str, description: str) -> tuple[int, dict[str, object]]:
            return status, {
                "error": error,
                "error_description": description,
                "error_codes": [int(description[7:].split(":", maxsplit=1)[0])],
            }

        if form.get("grant_type") != "client_credentials" or form.get("scope") != ACR_SCOPE:
            return refuse(400, "invalid_request", "AADSTS900144: grant_type and the ACR scope are required")
        client = form.get("client_id", "")
        registered = self.clients.get(client)
        if registered is None or registered[0] != tenant:
            return refuse(400, "unauthorized_client",
                          f"AADSTS700016: Application with identifier '{client}' was not found in the directory '{tenant}'")  # fmt: skip
        secret = registered[1]
        if "client_assertion" in form:
            claims = jwt_claims(form["client_assertion"])
            if (
                form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                or claims is None
            ):
                return refuse(400, "invalid_client", "AADSTS50027: JWT token is invalid or malformed")
            exp = claims.get("exp")
            if not isinstance(exp, (int, float)) or exp <= time.time():
                return refuse(
                    400, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range"
                )
        elif not secret or not secrets.compare_digest(form.get("client_secret", ""), secret):
            return refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided")
        token = self.book.issue_access(tenant, f"app:{client}")
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


@dataclass
class AcrTokenServer(TokenServer):
    """ACR's realm: ``/oauth2/token`` and ``/oauth2/exchange`` (see the module docstring)."""

    book: TokenBook = field(default_factory=TokenBook)
    token_path: str = "/oauth2/token"
    exchange_status: int | None = None  # force this answer from /oauth2/exchange
    refresh_exp: bool = True  # put an exp claim into refresh tokens

    def caller(self, authorization: str | None) -> str | None:
        if authorization and authorization.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return None
            if user == ACR_USERNAME:
                with self.book.lock:
                    expires = self.book.refresh.get(password)
                return user if expires is not None and expires > time.time() else None
        return super().caller(authorization)

    def post(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        if path != "/oauth2/exchange":
            return super().post(path, form)
        if self.exchange_status is not None:
            return self.exchange_status, {"errors": [{"code": "UNAUTHORIZED", "message": "forced"}]}
        fields = {key: values[0] for key, values in form.items()}
        if fields.get("grant_type") != "access_token" or fields.get("service") != self.service:
            return 400, {"errors": [{"code": "BAD_REQUEST", "message": "grant_type and service required"}]}
        with self.book.lock:
            issued = self.book.access.get(fields.get("access_token", ""))
        if issued is None or ("tenant" in fields and fields["tenant"] != issued[0]):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid access token or tenant"}]}
        expires = time.time() + REFRESH_SECONDS
        claims: dict[str, object] = {
            "jti": secrets.token_hex(8),
            "sub": issued[1],
            "grant_type": "refresh_token",
        }
        if self.refresh_exp:
            claims["exp"] = int(expires)
        token = unsigned_jwt(claims)
        with self.book.lock:
            self.book.refresh[token] = expires
        return 200, {"refresh_token": token}

    def exchanges(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("path") == "/oauth2/exchange"]


TENANT = "11111111-1111-1111-1111-111111111111"
OTHER_TENANT = "22222222-2222-2222-2222-222222222222"
UAMI_CLIENT = "33333333-3333-3333-3333-333333333333"
UAMI_RESOURCE = (
    "/subscriptions/44444444-4444-4444-4444-444444444444/resourceGroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/pull"
)
SP_CLIENT = "55555555-5555-5555-5555-555555555555"
SP_SECRET = "service-principal-secret-that-must-never-leak"
POD_CLIENT = "66666666-6666-6666-6666-666666666666"
PUSHER_PASSWORD = "pusher-password-for-seeding-the-registry"
FOREIGN_CLIENT = "77777777-7777-7777-7777-777777777777"  # registered in OTHER_TENANT


@dataclass
class AzureWorld:
    """IMDS, Entra ID and an ACR (token server in front of a real registry), and the
    environment that points the provider at them."""

    book: TokenBook
    imds: AzureImds
    entra: EntraFake
    acr: AcrTokenServer
    registry: object  # tests.infra.registry.Registry
    tls: TLSFiles
    environ: dict[str, str]

    @property
    def login_server(self) -> str:
        host: str = self.registry.host  # type: ignore[attr-defined]
        return host

    def all_requests(self) -> int:
        return len(self.imds.requests) + len(self.entra.requests) + len(self.acr.requests)

    def stop(self) -> None:
        self.registry.stop()  # type: ignore[attr-defined]
        for server in (self.imds, self.entra, self.acr):
            server.stop()


def start_azure(workdir: Path) -> AzureWorld:
    """Everything above, on loopback ports, sharing one test CA and one token book."""
    from tests.infra.tls import make_tls_files
    from tests.infra.tokenauth import make_signing_files, start_token_registry

    tls = make_tls_files(workdir / "tls")
    book = TokenBook()
    imds = AzureImds(book, TENANT, {UAMI_CLIENT: UAMI_RESOURCE})
    entra = EntraFake(
        book,
        tls,
        {SP_CLIENT: (TENANT, SP_SECRET), POD_CLIENT: (TENANT, ""), FOREIGN_CLIENT: (OTHER_TENANT, "")},
    )
    acr = AcrTokenServer(
        signing=make_signing_files(workdir / "signing"),
        users={"pusher": PUSHER_PASSWORD},
        acl={ACR_USERNAME: {"*": ["pull"]}, "pusher": {"*": ["pull", "push"]}},
        book=book,
        tls=tls,
    )
    acr.start()
    registry = start_token_registry(workdir / "registry", acr, tls=tls)
    environ = {
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": imds.url,
        "AZURE_AUTHORITY_HOST": entra.url,
        "REQUESTS_CA_BUNDLE": str(tls.ca_cert),
        "SSL_CERT_FILE": str(tls.ca_cert),
    }
    return AzureWorld(book, imds, entra, acr, registry, tls, environ)
