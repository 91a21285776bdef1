"""A real CNCF distribution registry (``docker-registry serve``) on 127.0.0.1 with htpasswd auth."""

from __future__ import annotations

import base64
import os
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra._util import (
    InfraError,
    free_port,
    redact,
    require_binary,
    run_checked,
    start_server,
    stop_process,
    tail,
    wait_until,
)
from tests.infra.tls import TLSFiles

# bcrypt (the only htpasswd hash distribution accepts) ignores everything after 72 bytes.
BCRYPT_MAX_PASSWORD_BYTES = 72


def bcrypt_htpasswd_line(username: str, password: str) -> str:
    """One ``user:$2y$...`` line made by ``htpasswd -nBi`` (password fed on stdin, never on argv)."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    if not username or ":" in username or "\n" in username:
        raise ValueError("htpasswd user names must be non-empty and contain no ':' or newline")
    if "\n" in password:
        raise ValueError("htpasswd passwords cannot contain a newline")
    htpasswd = require_binary("htpasswd")
    result = run_checked(
        [htpasswd, "-nBi", username], input_text=password, secrets=[password], what="htpasswd -nBi"
    )
    line = result.stdout.strip()
    if not line.startswith(f"{username}:$2"):
        raise InfraError(f"htpasswd printed no bcrypt entry for {username!r}")
    return line


@dataclass(eq=False)
class Registry:
    """A running registry. ``host`` is ``127.0.0.1:PORT``, the form image references use."""

    host: str
    url: str  # http://127.0.0.1:PORT or https://127.0.0.1:PORT
    tls: bool
    ca_file: Path | None  # the CA that signed the registry certificate (TLS only)
    ca_dir: Path | None  # a directory holding only that CA as ca.crt (skopeo --cert-dir)
    workdir: Path
    log_file: Path
    htpasswd_file: Path
    storage_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _users: dict[str, str] = field(default_factory=dict, repr=False)
    _last_mtime_ns: int = field(default=0, repr=False)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def ref(self, repo_tag: str) -> str:
        """``team/app:v1`` -> ``127.0.0.1:PORT/team/app:v1``."""
        return f"{self.host}/{repo_tag}"

    def add_user(self, username: str, password: str, *, allow_long_password: bool = False) -> None:
        """Add or replace a user; the running registry re-reads the file on its next request.

        bcrypt silently ignores bytes after the 72nd, so a longer password would also accept
        any "wrong" password sharing its first 72 bytes. That is refused unless
        ``allow_long_password`` is set (then do not test near-miss passwords with it).
        """
        __tracebackhide__ = True  # never show the secrets in its arguments
        if len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES and not allow_long_password:
            raise ValueError(
                f"password longer than {BCRYPT_MAX_PASSWORD_BYTES} bytes: bcrypt would ignore the rest; "
                "pass allow_long_password=True if that is fine for the test"
            )
        bcrypt_htpasswd_line(username, password)  # validate before mutating
        self._users[username] = password
        self._write_htpasswd()

    def remove_user(self, username: str) -> None:
        self._users.pop(username, None)
        self._write_htpasswd()

    def _write_htpasswd(self) -> None:
        self._last_mtime_ns = write_htpasswd(self.htpasswd_file, self._users, self._last_mtime_ns)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def v2_status(self, username: str | None = None, password: str | None = None) -> int:
        """HTTP status of ``GET /v2/`` (200 with valid credentials, 401 otherwise)."""
        __tracebackhide__ = True  # never show the secrets in its arguments
        request = urllib.request.Request(self.url + "/v2/")
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.tls:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context()))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=5) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def log_text(self) -> str:
        """The registry's log, with the known passwords redacted (it should never contain them anyway)."""
        return redact(self.log_file.read_text(errors="replace"), self._users.values())

    def stop(self) -> None:
        stop_process(self.process)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def write_htpasswd(path: Path, users: Mapping[str, str], last_mtime_ns: int = 0) -> int:
    """Atomically write a bcrypt htpasswd file; return its mtime, which is > ``last_mtime_ns``.

    distribution re-reads the file when its mtime changes, so the mtime is forced forward
    even when two writes fall in one clock tick.
    """
    __tracebackhide__ = True  # never show the secrets in its arguments
    lines = [bcrypt_htpasswd_line(u, p) for u, p in sorted(users.items())]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.chmod(0o600)
    mtime_ns = max(tmp.stat().st_mtime_ns, last_mtime_ns + 1_000_000)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    tmp.replace(path)
    return mtime_ns


def quote(value: str | Path) -> str:
    """A YAML scalar for any path or string (JSON-style quoting is valid YAML)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config_yaml(port: int, storage: Path, auth: str, tls: TLSFiles | None) -> str:
    """The registry's config; ``auth`` is its ``auth:`` section (htpasswd or token)."""
    text = (
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "  formatter: text\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {quote(storage)}\n"
        "  delete:\n"
        "    enabled: true\n"
        "  maintenance:\n"
        "    uploadpurging:\n"
        "      enabled: false\n"
        "http:\n"
        f"  addr: {quote(f'127.0.0.1:{port}')}\n"
        f"  secret: {quote(secrets.token_hex(16))}\n"
    )
    if tls is not None:
        text += f"  tls:\n    certificate: {quote(tls.server_cert)}\n    key: {quote(tls.server_key)}\n"
    return text + auth


def serve_registry(
    workdir: Path,
    *,
    auth: str,
    tls: TLSFiles | None,
    timeout: float,
    what: str = "registry",
    htpasswd_file: Path | None = None,
    users: Mapping[str, str] | None = None,
    mtime_ns: int = 0,
) -> Registry:
    """Start ``docker-registry serve`` with the ``auth`` section on a free 127.0.0.1 port; return
    once ``/v2/`` answers 401 (another port on a lost race for one)."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    binary = require_binary("docker-registry")
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    log_file = workdir / "registry.log"
    scheme = "https" if tls else "http"
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(_config_yaml(port, storage, auth, tls))
        registry = Registry(
            host=f"127.0.0.1:{port}",
            url=f"{scheme}://127.0.0.1:{port}",
            tls=tls is not None,
            ca_file=tls.ca_cert if tls else None,
            ca_dir=tls.ca_dir if tls else None,
            workdir=workdir,
            log_file=log_file,
            htpasswd_file=htpasswd_file or workdir / "unused-htpasswd",
            storage_dir=storage,
            process=start_server([binary, "serve", str(config)], log_file),
            _users=dict(users or {}),
            _last_mtime_ns=mtime_ns,
        )

        def died(reg: Registry = registry) -> str | None:
            code = reg.process.poll()
            return None if code is None else f"docker-registry exited with {code}"

        def answers_401(reg: Registry = registry) -> bool:
            try:
                return reg.v2_status() == 401
            except (OSError, ssl.SSLError):
                return False

        try:
            wait_until(answers_401, timeout=timeout, what=f"{what} on {registry.url}", abort=died)
        except InfraError as exc:
            registry.stop()
            last_error = f"{exc}\n--- {log_file} (tail) ---\n{tail(log_file)}"
            if "address already in use" in tail(log_file, 5):
                continue  # lost the race for the port: try another one
            raise InfraError(last_error) from None
        return registry
    raise InfraError(last_error)


def start_registry(
    workdir: Path,
    *,
    tls: TLSFiles | None = None,
    users: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Registry:
    """Start ``docker-registry serve`` on a free 127.0.0.1 port; return once ``/v2/`` answers 401.

    Storage, config, htpasswd and ``registry.log`` live in ``workdir``.
    """
    __tracebackhide__ = True  # never show the secrets in its arguments
    require_binary("htpasswd")
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    for user, password in (users or {}).items():
        if len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES:
            raise ValueError(
                f"password of {user!r} is longer than 72 bytes; use add_user(allow_long_password=True)"
            )
    # Written before the start: without the file the registry would create one with a random user.
    mtime_ns = write_htpasswd(htpasswd, users or {})
    auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {quote(htpasswd)}\n"
    return serve_registry(
        workdir, auth=auth, tls=tls, timeout=timeout, htpasswd_file=htpasswd, users=users, mtime_ns=mtime_ns
    )
