"""AWS for the tests: a real moto server (ECR, STS) and a strict recording front for it.

``start_moto_server`` runs ``moto_server -H 127.0.0.1 -p PORT`` (pip ``moto[server]``). Its ECR
``GetAuthorizationToken`` answers ``base64("AWS:<registry id>-auth-token")``, deterministic, so
the test registry's htpasswd can hold it and the token really authenticates a pull; its
``expiresAt`` is fixed in 2015. STS ``AssumeRoleWithWebIdentity`` works and accepts any token.

``AwsFront`` sits between botocore and moto, on loopback. It forwards what moto does, and adds
the few things moto cannot:

- it records every call: service, operation, the access key id and region of the SigV4
  signature (so a test sees *whose* identity asked) and whether it came as a proxy request;
- it refuses unsigned ECR and ECR Public calls (403), as AWS does;
- it answers ECR Public's ``GetAuthorizationToken`` itself (moto does not implement ECR Public)
  with ``base64("AWS:public-auth-token")``, valid 12 hours;
- ``fail(...)`` injects AWS errors (throttling, access denied...) for an operation, in the
  service's own wire format, so botocore parses and retries them as it would AWS's;
- ``expires_in`` rewrites the ``expiresAt`` of ECR tokens to now + that many seconds;
- as an HTTP proxy (``HTTP_PROXY=front.url``) it forwards absolute-URI requests to loopback
  targets, adding ``X-Forwarded-For`` as proxies do, and records them.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.infra._util import (
    InfraError,
    MissingToolError,
    ThreadedServer,
    free_port,
    start_server,
    stop_process,
    tail,
    wait_until,
)

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921"
ECR_PUBLIC_TARGET = "SpencerFrontendService"
PUBLIC_PASSWORD = "public-auth-token"
DEFAULT_ACCOUNT = "123456789012"
_SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/[0-9]{8}/([^/]+)/([^/]+)/aws4_request")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}


def moto_password(registry_id: str = DEFAULT_ACCOUNT) -> str:
    """The password moto's ECR hands out for ``registry_id``."""
    return f"{registry_id}-auth-token"


@dataclass(eq=False)
class MotoServer:
    url: str
    port: int
    log_file: Path
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        """Forget every resource moto holds (``POST /moto-api/reset``)."""
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10):
            pass

    def stop(self) -> None:
        stop_process(self.process)


def moto_server_binary() -> str:
    """``moto_server`` from this interpreter's environment (the venv), else PATH."""
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return str(candidate)
    import shutil

    found = shutil.which("moto_server")
    if found is None:
        raise MissingToolError(
            "moto_server not found; install it with `pip install -r requirements-dev.txt` (moto[server])"
        )
    return found


def start_moto_server(workdir: Path, *, timeout: float = 30.0) -> MotoServer:
    """Start moto's server on a free loopback port; return once it answers."""
    binary = moto_server_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(3):
        port = free_port()
        log_file = workdir / f"moto-{port}.log"
        process = start_server([binary, "-H", "127.0.0.1", "-p", str(port)], log_file)
        server = MotoServer(f"http://127.0.0.1:{port}", port, log_file, process)

        def answers(url: str = server.url) -> bool:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(url + "/moto-api/", timeout=2) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        def died(proc: subprocess.Popen[bytes] = process) -> str | None:
            code = proc.poll()
            return None if code is None else f"moto_server exited with {code}"

        try:
            wait_until(
                answers, timeout=timeout, what=f"moto_server on {server.url}", abort=died, interval=0.1
            )
        except InfraError as exc:
            server.stop()
            last_error = f"{exc}\n--- {log_file} (tail) ---\n{tail(log_file)}"
            if "in use" in tail(log_file, 5):
                continue
            raise InfraError(last_error) from None
        return server
    raise InfraError(last_error)


@dataclass(frozen=True)
class AwsCall:
    """One request the front saw. ``access_key_id`` and ``region`` come from the SigV4
    ``Authorization`` header (empty when unsigned)."""

    service: str  # ecr, ecr-public, sts, imds-or-other
    operation: str
    access_key_id: str
    region: str
    via_proxy: bool
    target: str  # host:port the request was for


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    remaining: int | None  # None: every time


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, front: AwsFront) -> None:
        self.front = front
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        front = self.server.front
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        via_proxy = self.path.startswith("http://")
        if via_proxy:
            url = urlsplit(self.path)
            target, path = url.netloc, (url.path or "/") + (f"?{url.query}" if url.query else "")
        else:
            target, path = f"{front.upstream_host}:{front.upstream_port}", self.path
        service, operation = _identify(self.headers.get("X-Amz-Target", ""), body, path)
        signature = _SIGV4.search(self.headers.get("Authorization", ""))
        access_key_id, region = (signature.group(1), signature.group(2)) if signature else ("", "")
        front._record(AwsCall(service, operation, access_key_id, region, via_proxy, target))

        if service in ("ecr", "ecr-public") and signature is None:
            self._send(
                *_error(service, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            )
            return
        fault = front._take_fault(operation)
        if fault is not None:
            self._send(*_error(service, fault.status, fault.code, fault.message))
            return
        if service == "ecr-public" and operation == "GetAuthorizationToken":
            token = base64.b64encode(f"AWS:{PUBLIC_PASSWORD}".encode()).decode()
            reply = {"authorizationData": {"authorizationToken": token, "expiresAt": time.time() + 12 * 3600}}
            self._send(200, json.dumps(reply).encode(), {"Content-Type": "application/x-amz-json-1.1"})
            return
        host, _, port = target.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            self._send(502, b"the test front only forwards to loopback", {"Content-Type": "text/plain"})
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if via_proxy:
            headers["X-Forwarded-For"] = self.client_address[0]
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
        try:
            connection.request(self.command, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            reply_headers = {
                k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}
            }
            status = response.status
        except OSError as exc:
            self._send(502, f"upstream failed: {exc}".encode(), {"Content-Type": "text/plain"})
            return
        finally:
            connection.close()
        if (
            service == "ecr"
            and operation == "GetAuthorizationToken"
            and status == 200
            and front.expires_in is not None
        ):
            document = json.loads(data)
            for item in document.get("authorizationData", []):
                item["expiresAt"] = time.time() + front.expires_in
            data = json.dumps(document).encode()
        self._send(status, data, reply_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def _identify(amz_target: str, body: bytes, path: str) -> tuple[str, str]:
    prefix, _, operation = amz_target.partition(".")
    if prefix == ECR_TARGET:
        return "ecr", operation
    if prefix == ECR_PUBLIC_TARGET:
        return "ecr-public", operation
    action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    if action:
        return "sts", action
    return "other", path


def _error(service: str, status: int, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    if service == "sts":
        xml = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        return status, xml.encode(), {"Content-Type": "text/xml"}
    document = {"__type": code, "message": message}
    return (
        status,
        json.dumps(document).encode(),
        {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code},
    )


class AwsFront(ThreadedServer):
    """A running front for ``moto``; ``url`` goes into ``AWS_ENDPOINT_URL_*`` (or ``HTTP_PROXY``)."""

    def __init__(self, moto: MotoServer) -> None:
        self.upstream_host = "127.0.0.1"
        self.upstream_port = moto.port
        self.expires_in: float | None = None
        self.calls: list[AwsCall] = []
        self._faults: dict[str, _Fault] = {}
        self._lock = threading.Lock()
        self.serve(_Server(self), "aws-front")

    def fail(
        self, operation: str, code: str, message: str = "", *, status: int = 400, times: int | None = None
    ) -> None:
        """Answer ``operation`` with AWS error ``code`` (``times`` times, or always)."""
        with self._lock:
            self._faults[operation] = _Fault(status, code, message or code, times)

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def calls_of(self, operation: str) -> list[AwsCall]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    def _record(self, call: AwsCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            fault = self._faults.get(operation)
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[operation]
            return fault
