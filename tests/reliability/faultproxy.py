"""A small fault-injecting TCP proxy on loopback, in front of any HTTP server.

``mode`` chooses what each new connection gets: ``pass`` (forwarded both ways), ``status:N``
(the request is read, then an HTTP N answer with a JSON body and ``Retry-After: 0``),
``reset`` (the request is read, then the connection is reset), ``slow`` (forwarded, but the
answer dribbles one byte every ``slow_seconds``), ``hang`` (the request is read and never
answered). ``connections`` counts what reached the proxy.

With ``only`` set, the proxy reads each request and applies the fault only to requests whose
request line holds ``only`` (a path, say); the others are forwarded one per connection, with
``Connection: close`` both ways so the client's next request opens a new connection and meets
the proxy's judgement again. ``faulted`` holds when each faulted request arrived (monotonic
seconds): the pauses between attempts, for a check that retries are jittered."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def _closing(message: bytes) -> bytes:
    """An HTTP message with its ``Connection`` header replaced by ``Connection: close``."""
    head, sep, body = message.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, slow_seconds: float = 0.5) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.slow_seconds = slow_seconds
        self.connections = 0
        self.only: str | None = None
        self.faulted: list[float] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    @staticmethod
    def _read_request(client: socket.socket) -> bytes:
        """The request's bytes (head and body), as far as they came."""
        client.settimeout(5)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
            data = head + b"\r\n\r\n" + body
        return data

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode != "pass" and self.only is not None:
                request = self._read_request(client)
                if self.only.encode() not in request.split(b"\r\n", 1)[0]:
                    self._forward_one(client, request)
                    return
                with self._lock:
                    self.faulted.append(time.monotonic())
                if mode == "slow":
                    self._forward_one(client, request, slow=True)
                    return
            elif mode in {"pass", "slow"}:
                self._forward(client, slow=mode == "slow")
                return
            else:
                self._read_request(client)
                with self._lock:
                    self.faulted.append(time.monotonic())
            if mode.startswith("status:"):
                status = int(mode.split(":")[1])
                body = b'{"__type": "InternalFailure", "message": "injected by the fault proxy"}'
                client.sendall(
                    f"HTTP/1.1 {status} Injected\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    f"Retry-After: 0\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            elif mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "hang":
                self._stopped.wait(120)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _forward_one(self, client: socket.socket, request: bytes, *, slow: bool = False) -> None:
        """``request`` to the upstream and its whole answer back, both marked ``Connection: close``."""
        upstream = socket.create_connection(self.upstream, timeout=30)
        try:
            upstream.sendall(_closing(request))
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := upstream.recv(65536):
                    answer += chunk
            answer = _closing(answer)
            if not slow:
                client.sendall(answer)
                return
            for index in range(len(answer)):
                if self._stopped.wait(self.slow_seconds):
                    return
                client.sendall(answer[index : index + 1])
        finally:
            upstream.close()

    def _forward(self, client: socket.socket, *, slow: bool) -> None:
        upstream = socket.create_connection(self.upstream, timeout=30)

        def pump(source: socket.socket, sink: socket.socket, dribble: bool) -> None:
            with contextlib.suppress(OSError):
                while True:
                    chunk = source.recv(65536)
                    if not chunk:
                        break
                    if dribble:
                        for index in range(len(chunk)):
                            if self._stopped.wait(self.slow_seconds):
                                return
                            sink.sendall(chunk[index : index + 1])
                    else:
                        sink.sendall(chunk)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client, slow), daemon=True)
        back.start()
        pump(client, upstream, False)
        back.join(timeout=120)
        for sock in (upstream, client):
            with contextlib.suppress(OSError):
                sock.close()
