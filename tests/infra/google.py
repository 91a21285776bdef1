"""Strict loopback fakes of the Google endpoints the ``gar`` backend calls, on one port.

- The GCE metadata server (``GCE_METADATA_HOST`` = ``host``): every request needs
  ``Metadata-Flavor: Google`` (else 403) and is refused when it came through a proxy
  (``X-Forwarded-For``); answers carry ``Metadata-Flavor: Google``.
  ``GET /computeMetadata/v1/instance/service-accounts/`` lists the accounts, ``.../<name>/``
  gives an account's info and ``.../service-accounts/<name>/token`` gives ``node_token`` for ``default`` or any of
  ``accounts`` (404 for others), ``expires_in`` = ``token_seconds``. With ``reissue_below`` set
  it behaves as the real server does (CLOUDS.md; Google's docs: it caches a token until it has
  5 minutes left): the token it holds, with what it has left, and a new ``node_token`` (valid
  ``token_seconds``) only once fewer than ``reissue_below`` seconds are left.
- STS ``POST /v1/token``: a token exchange (form body) with ``subject_token_type`` JWT, the
  ``audience`` configured, and a subject token in ``subjects``; anything else 400
  ``invalid_grant``. Answers ``federated_token``.
- IAM credentials ``POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`` with
  ``Authorization: Bearer <federated_token>`` for an email in ``impersonable``, else 403.
  Answers ``impersonated_tokens[email]``.

``mode`` breaks the metadata server on purpose: ``5xx`` answers 503 to the next ``failures``
token requests, ``slow`` sleeps ``hang_seconds`` before answering them. ``requests`` records
every request (kind, method, path, whether it had the flavor header), never a token.
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from tests.infra._util import ThreadedServer

METADATA_PREFIX = "/computeMetadata/v1/"
ACCOUNTS_PATH = METADATA_PREFIX + "instance/service-accounts/"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
Mode = Literal["ok", "5xx", "slow"]
Kind = Literal["metadata", "sts", "iam", "other"]


@dataclass(frozen=True)
class GoogleRequest:
    kind: Kind
    method: str
    path: str
    flavored: bool  # carried Metadata-Flavor: Google


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: GoogleFake) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: object = "", *, flavor: bool = False) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        if flavor:
            self.send_header("Metadata-Flavor", "Google")
        self.end_headers()
        self.wfile.write(data)

    def _kind(self) -> Kind:
        path = urlsplit(self.path).path
        if path.startswith(METADATA_PREFIX):
            return "metadata"
        if path == "/v1/token":
            return "sts"
        if path.startswith("/v1/projects/-/serviceAccounts/"):
            return "iam"
        return "other"

    def _record(self) -> Kind:
        kind = self._kind()
        flavored = self.headers.get("Metadata-Flavor") == "Google"
        self.server.fake._record(GoogleRequest(kind, self.command, self.path, flavored))
        return kind

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: PLR0911 - one return per kind of answer
        fake = self.server.fake
        kind = self._record()
        if kind != "metadata":
            self._reply(404)
            return
        if self.headers.get("Metadata-Flavor") != "Google" or "X-Forwarded-For" in self.headers:
            self._reply(403, "Missing required header: Metadata-Flavor", flavor=True)
            return
        path = urlsplit(self.path).path
        if path == ACCOUNTS_PATH:
            self._reply(200, "".join(f"{name}/\n" for name in ("default", *fake.accounts)), flavor=True)
            return
        name, _, leaf = path[len(ACCOUNTS_PATH) :].partition("/")
        if path.startswith(ACCOUNTS_PATH) and leaf == "" and (name == "default" or name in fake.accounts):
            email = fake.accounts[0] if name == "default" and fake.accounts else name
            info = {
                "email": email,
                "aliases": ["default"],
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
            self._reply(200, info, flavor=True)  # the account's info (google-auth's compute credentials ask)
            return
        if not path.startswith(ACCOUNTS_PATH) or leaf != "token":
            self._reply(404, flavor=True)
            return
        if fake._take_failure():
            self._reply(503, "unavailable", flavor=True)
            return
        if fake.mode == "slow":
            time.sleep(fake.hang_seconds)
        if name != "default" and name not in fake.accounts:
            self._reply(404, "not found", flavor=True)
            return
        token, seconds = fake._node_token_now()
        self._reply(200, {"access_token": token, "expires_in": seconds, "token_type": "Bearer"}, flavor=True)

    def do_POST(self) -> None:
        kind = self._record()
        body = self._body()
        if kind == "sts":
            self._sts(parse_qs(body.decode()))
        elif kind == "iam":
            self._iam(body)
        else:
            self._reply(404)

    def _sts(self, form: dict[str, list[str]]) -> None:
        fake = self.server.fake

        def one(name: str) -> str:
            return (form.get(name) or [""])[0]

        ok = (
            one("grant_type") == EXCHANGE_GRANT
            and one("subject_token_type") == JWT_TYPE
            and one("audience") == fake.audience
            and one("subject_token") in fake.subjects
        )
        if not ok:
            self._reply(
                400, {"error": "invalid_grant", "error_description": "The token or audience is not valid."}
            )
            return
        fake._note_audience(one("audience"))
        self._reply(
            200,
            {
                "access_token": fake.federated_token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": fake.token_seconds,
            },
        )

    def _iam(self, body: bytes) -> None:
        fake = self.server.fake
        email = unquote(urlsplit(self.path).path.rsplit("/", 1)[-1]).removesuffix(":generateAccessToken")
        bearer = self.headers.get("Authorization", "")
        if bearer != f"Bearer {fake.federated_token}" or email not in fake.impersonable:
            message = f"Permission 'iam.serviceAccounts.getAccessToken' denied on resource {email}"
            self._reply(403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}})
            return
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=fake.token_seconds
        )
        stamp = expires.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        self._reply(200, {"accessToken": fake.impersonated_tokens[email], "expireTime": stamp})


class GoogleFake(ThreadedServer):
    """A running fake. ``host`` is what ``GCE_METADATA_HOST`` should hold, ``url`` the STS and
    IAM credentials endpoint (a rule's ``stsEndpoint`` / ``iamCredentialsEndpoint``)."""

    def __init__(
        self,
        *,
        node_token: str | None = None,
        accounts: tuple[str, ...] = ("nodes@project.iam.gserviceaccount.com",),
        audience: str = "",
        subjects: tuple[str, ...] = (),
        impersonable: dict[str, str] | None = None,
        token_seconds: int = 3599,
        mode: Mode = "ok",
        failures: int = 0,
        hang_seconds: float = 5.0,
        reissue_below: float | None = None,
    ) -> None:
        self.node_token = node_token or "ya29.node-" + secrets.token_urlsafe(24)
        self.federated_token = "ya29.federated-" + secrets.token_urlsafe(24)
        self.accounts = accounts
        self.audience = audience
        self.subjects = subjects
        self.impersonable = dict(impersonable or {})
        self.impersonated_tokens = dict(self.impersonable.items())
        self.token_seconds = token_seconds
        self.mode: Mode = mode
        self.failures = failures
        self.hang_seconds = hang_seconds
        self.reissue_below = reissue_below
        self.node_tokens_minted = 1
        self._node_expires_at = time.time() + token_seconds
        self.requests: list[GoogleRequest] = []
        self.audiences: list[str] = []
        self._lock = threading.Lock()
        self.serve(_Server(self), "google-fake")

    def __enter__(self) -> GoogleFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def secrets(self) -> list[str]:
        """Every token this fake hands out."""
        return [self.node_token, self.federated_token, *self.impersonated_tokens.values()]

    def kinds(self) -> list[Kind]:
        with self._lock:
            return [r.kind for r in self.requests]

    def token_requests(self) -> int:
        """How many metadata token requests arrived."""
        with self._lock:
            return sum(1 for r in self.requests if r.kind == "metadata" and r.path.endswith("/token"))

    # -- the handler's side ---------------------------------------------------------------

    def _record(self, request: GoogleRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _note_audience(self, audience: str) -> None:
        with self._lock:
            self.audiences.append(audience)

    def _node_token_now(self) -> tuple[str, int]:
        """The node token to hand out now and its ``expires_in``."""
        with self._lock:
            if self.reissue_below is None:
                return self.node_token, self.token_seconds
            now = time.time()
            if self._node_expires_at - now < self.reissue_below:
                self.node_token = "ya29.node-" + secrets.token_urlsafe(24)
                self.node_tokens_minted += 1
                self._node_expires_at = now + self.token_seconds
            return self.node_token, int(self._node_expires_at - now)

    def _take_failure(self) -> bool:
        with self._lock:
            if self.mode == "5xx" and self.failures > 0:
                self.failures -= 1
                return True
            return False
