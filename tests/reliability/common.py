"""What every part of the reliability suite shares: the sentinel secrets and the scan for them,
one exec of the zipapp as the kubelet does it, the shape a failure must have, a tally of
figures, and a counting trap that stands in for every cloud endpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.infra._util import ThreadedServer

ROOT = Path(__file__).resolve().parent.parent.parent
ZIPAPP = ROOT / "dist" / "registry-credential-provider"
PROG = "registry-credential-provider"
V1 = "credentialprovider.kubelet.k8s.io/v1"
API_VERSIONS = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
)

# Known secrets planted in every scenario; none may appear where it does not belong.
DOCKER_PASSWORD = "sentinel-docker-password-5f2c9e"
HELPER_SECRET = "sentinel-helper-secret-8a41d7"
SA_TOKEN = "sentinel-sa-token-3b7e0c.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln"
AWS_SECRET = "sentinel-aws-secret-key-0d9f6a"
AWS_SESSION = "sentinel-aws-session-token-c4e1b2"
SENTINELS = (DOCKER_PASSWORD, HELPER_SECRET, SA_TOKEN, AWS_SECRET, AWS_SESSION)


def secrets_in(text: str | bytes, secrets: Iterable[str] = SENTINELS) -> list[str]:
    """Which of ``secrets`` occur in ``text`` (names them by position, never by value)."""
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [f"sentinel#{index}" for index, secret in enumerate(secrets) if secret in data]


def loose_secret_files(root: Path, secrets: Iterable[str] = SENTINELS) -> list[str]:
    """Files under ``root`` that others may read and that hold a sentinel secret (by path)."""
    found: list[str] = []
    secret_bytes = [secret.encode() for secret in secrets]
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            try:
                mode = path.lstat().st_mode
                if not stat.S_ISREG(mode) or not mode & (stat.S_IROTH | stat.S_IRGRP):
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(secret in data for secret in secret_bytes):
                found.append(str(path))
    return found


@dataclass
class Exec:
    """One exec of the plugin: exit code, both streams, wall seconds."""

    code: int
    stdout: bytes
    stderr: bytes
    seconds: float


def run_plugin(
    args: Sequence[str],
    stdin: bytes,
    env: Mapping[str, str],
    *,
    timeout: float = 70.0,
    zipapp: Path = ZIPAPP,
    prefix: Sequence[str] = (),
) -> Exec:
    """Exec the zipapp as the kubelet does (argv, stdin, its own environment, no shell)."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            [*prefix, str(zipapp), *args],
            input=stdin,
            capture_output=True,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Exec(-9, exc.stdout or b"", exc.stderr or b"", time.monotonic() - started)
    return Exec(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A systemd kubelet's environment: PATH, a locale, nothing else (no HOME)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **(extra or {})}


def failure_problem(result: Exec) -> str | None:  # noqa: PLR0911 - one return per problem
    """What is wrong with a failed call's shape, or None: exit 1, nothing on stdout, exactly one
    stderr line saying ``error:``, never a traceback or an internal error."""
    stderr = result.stderr.decode("utf-8", "replace")
    if result.code == -9:
        return "hang"
    if result.code != 1:
        return f"exit-{result.code}"
    if result.stdout:
        return "stdout-on-failure"
    if "Traceback" in stderr:
        return "traceback"
    if "internal error" in stderr:
        return "internal-error"
    lines = stderr.splitlines()
    if len(lines) != 1 or not stderr.endswith("\n"):
        return "not-one-stderr-line"
    if not lines[0].startswith(f"{PROG}: error: "):
        return "stderr-not-an-error-line"
    return None


@dataclass
class Tally:
    """One part's figures: cases run, failures by kind (with a few redacted examples), the worst
    wall time per label, and sentinel secrets found where they do not belong."""

    part: str
    cases: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    worst: dict[str, float] = field(default_factory=dict)
    secrets_found: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def case(self, label: str, seconds: float) -> None:
        self.cases += 1
        self.worst[label] = max(self.worst.get(label, 0.0), round(seconds, 3))

    def fail(self, kind: str, example: str) -> None:
        self.failures[kind] += 1
        if len(self.examples) < 20:
            for secret in SENTINELS:
                example = example.replace(secret, "<sentinel>")
            self.examples.append(f"{kind}: {example[:300]}")

    def scan(self, where: str, *texts: str | bytes, allowed: Iterable[str] = ()) -> None:
        """Count sentinel secrets in ``texts`` other than those ``allowed`` there."""
        secrets = [secret for secret in SENTINELS if secret not in set(allowed)]
        for text in texts:
            found = secrets_in(text, secrets)
            if found:
                self.secrets_found += len(found)
                self.fail("secret-leaked", f"{where}: {', '.join(found)}")

    def merge(self, other: Tally) -> None:
        self.cases += other.cases
        self.failures.update(other.failures)
        self.examples.extend(other.examples[: max(0, 20 - len(self.examples))])
        for label, seconds in other.worst.items():
            self.worst[label] = max(self.worst.get(label, 0.0), seconds)
        self.secrets_found += other.secrets_found
        self.notes.update(other.notes)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def as_json(self) -> dict[str, object]:
        return {
            "cases": self.cases,
            "failures": dict(sorted(self.failures.items())),
            "examples": self.examples,
            "worst_seconds": dict(sorted(self.worst.items())),
            "secrets_found": self.secrets_found,
            **({"notes": self.notes} if self.notes else {}),
        }


class _TrapHandler(BaseHTTPRequestHandler):
    server: _TrapServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        self.server.trap.record(f"{self.command} {self.headers.get('Host', '')}{self.path}")
        body = b'{"message": "trap: no cloud call was expected"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = do_DELETE = _handle


class _TrapServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, trap: Trap) -> None:
        self.trap = trap
        super().__init__(("127.0.0.1", 0), _TrapHandler)


class Trap(ThreadedServer):
    """An HTTP server that answers 503 to everything and records what reached it: every cloud
    endpoint, metadata address and proxy of the fuzzing config points here."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.serve(_TrapServer(self), "trap")

    def record(self, line: str) -> None:
        with self._lock:
            self.requests.append(line)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> Trap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cloud_env(trap: Trap, root: Path) -> dict[str, str]:
    """Every cloud's endpoints, metadata addresses and proxies at ``trap``, sentinel AWS
    credentials (so ECR has an identity and would call out), and a private disk cache."""
    hostport = f"127.0.0.1:{trap.port}"
    return {
        "AWS_ENDPOINT_URL_ECR": trap.url,
        "AWS_ENDPOINT_URL_ECR_PUBLIC": trap.url,
        "AWS_ENDPOINT_URL_STS": trap.url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": trap.url,
        "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_SESSION,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": trap.url,
        "AZURE_AUTHORITY_HOST": trap.url,
        "GCE_METADATA_HOST": hostport,
        "HTTP_PROXY": trap.url,
        "HTTPS_PROXY": trap.url,
        "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
    }


def fuzz_config(root: Path) -> Path:
    """Our config for fuzzing: a rule per cloud backend for its hosts (``onNoIdentity: fail``,
    taken from ``BACKENDS``, so a new backend joins), the sentinel docker password for
    ``registry.example.com``, and anonymous for everything else."""
    import base64

    from provider.backends import BACKENDS
    from provider.backends.base import CloudRule

    auth = root / "auth.json"
    token = base64.b64encode(f"fuzz-user:{DOCKER_PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {"registry.example.com": {"auth": token}}}))
    auth.chmod(0o600)
    rules: list[dict[str, object]] = []
    for spec in BACKENDS:
        if spec.default_globs and issubclass(spec.rule, CloudRule):
            rules.append({"match": list(spec.default_globs), "backend": spec.name, "onNoIdentity": "fail"})
    rules.append(
        {
            "match": ["registry.example.com", "*.registry.example.com"],
            "backend": "dockerconfig",
            "files": [str(auth)],
        }
    )
    rules.append({"backend": "anonymous"})
    config = root / "provider.json"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "timeout": "20s",
                "rules": rules,
            }
        )
    )
    config.chmod(0o600)
    return config
