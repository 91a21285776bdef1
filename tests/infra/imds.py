"""A strict fake of the EC2 instance metadata service (IMDSv2) on 127.0.0.1.

Nothing real exists to run here (moto's IMDS ignores the v2 token and breaks botocore's region
lookup), so this fake is as strict as the real service where it matters to a client:

- ``PUT /latest/api/token`` needs ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600) and is
  refused (403) when it carries ``X-Forwarded-For``, i.e. came through a proxy;
- every ``GET`` needs a valid, unexpired ``X-aws-ec2-metadata-token``, else 401 (no IMDSv1);
- other methods get 405, unknown paths 404.

It serves the instance role's credentials, the region, the availability zone and the
instance identity document. ``mode`` breaks it on purpose: ``no-token`` refuses every token
request (403, like a v1-only or locked-down IMDS), ``hang-token`` never answers one in time
(what a container sees with hop limit 1). ``requests`` records every request (never a token).
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from tests.infra._util import ThreadedServer

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL_SECONDS = 21600
Mode = Literal["ok", "no-token", "hang-token"]


@dataclass(frozen=True)
class ImdsRequest:
    method: str
    path: str
    authorized: bool  # a GET with a valid token, or a PUT that got one
    forwarded: bool  # it carried X-Forwarded-For (came through a proxy)


@dataclass(frozen=True)
class RoleCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hung handler must not hold up stop()

    def __init__(self, fake: ImdsFake) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: requests are recorded instead

    def _reply(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, authorized: bool) -> None:
        self.server.fake._record(
            ImdsRequest(self.command, self.path, authorized, "X-Forwarded-For" in self.headers)
        )

    def do_PUT(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path != "/latest/api/token":
            self._record(False)
            self._reply(405 if self.path.startswith("/latest/") else 404)
            return
        if fake.mode == "hang-token":
            self._record(False)
            time.sleep(fake.hang_seconds)
            self.close_connection = True
            return
        if fake.mode == "no-token" or "X-Forwarded-For" in self.headers:
            self._record(False)
            self._reply(403)
            return
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            self._record(False)
            self._reply(400)
            return
        token = fake._issue_token(ttl)
        self._record(True)
        self._reply(200, token)

    def do_GET(self) -> None:
        fake = self.server.fake
        if not fake._valid_token(self.headers.get(TOKEN_HEADER, "")):
            self._record(False)
            self._reply(401)
            return
        self._record(True)
        body = fake._document(self.path)
        if body is None:
            self._reply(404)
        else:
            text, content_type = body
            self._reply(200, text, content_type)

    def _not_allowed(self) -> None:
        self._record(False)
        self._reply(405)

    do_POST = do_DELETE = do_PATCH = do_HEAD = _not_allowed


class ImdsFake(ThreadedServer):
    """A running fake. ``url`` is what ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` should hold."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
        role_name: str = "node-role",
        mode: Mode = "ok",
        hang_seconds: float = 5.0,
    ) -> None:
        self.region = region
        self.account = account
        self.role_name = role_name
        self.mode: Mode = mode
        self.hang_seconds = hang_seconds
        self.credentials = RoleCredentials(
            "ASIAIMDS" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30), secrets.token_urlsafe(60)
        )
        self.requests: list[ImdsRequest] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.serve(_Server(self), "imds-fake")

    def __enter__(self) -> ImdsFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at ---------------------------------------------------------------

    def paths(self, method: str = "GET") -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.method == method]

    # -- the handler's side ---------------------------------------------------------------

    def _record(self, request: ImdsRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def _valid_token(self, token: str) -> bool:
        with self._lock:
            expires = self._tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def _document(self, path: str) -> tuple[str, str] | None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        credentials_path = "/latest/meta-data/iam/security-credentials/"
        if path == credentials_path:
            return self.role_name, "text/plain"
        if path != "/" and path.endswith("/"):
            path = path[:-1]  # IMDS serves a leaf with or without a trailing slash (botocore asks with)
        if path == credentials_path + self.role_name:
            creds = self.credentials
            document = {
                "Code": "Success",
                "LastUpdated": now.isoformat().replace("+00:00", "Z"),
                "Type": "AWS-HMAC",
                "AccessKeyId": creds.access_key_id,
                "SecretAccessKey": creds.secret_access_key,
                "Token": creds.token,
                "Expiration": (now + datetime.timedelta(hours=6)).isoformat().replace("+00:00", "Z"),
            }
            return json.dumps(document), "text/plain"
        if path == "/latest/meta-data/placement/region":
            return self.region, "text/plain"
        if path == "/latest/meta-data/placement/availability-zone":
            return self.region + "a", "text/plain"
        if path == "/latest/dynamic/instance-identity/document":
            document = {
                "accountId": self.account,
                "architecture": "x86_64",
                "availabilityZone": self.region + "a",
                "imageId": "ami-0123456789abcdef0",
                "instanceId": "i-0123456789abcdef0",
                "instanceType": "m7i.large",
                "pendingTime": now.isoformat().replace("+00:00", "Z"),
                "privateIp": "10.0.0.10",
                "region": self.region,
                "version": "2017-09-30",
            }
            return json.dumps(document, indent=2), "text/plain"
        return None
