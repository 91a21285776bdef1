"""A Prometheus textfile for node_exporter's textfile collector, updated by each kubelet-mode exec.

Off unless our config names the file (``metrics.textfile``). Every exec adds what it did to the
counters already in the file and rewrites it: under an exclusive ``flock`` on ``<file>.lock``
(so parallel execs never lose a count), into a temporary file beside it, then renamed over it
(so the collector never reads half a file). Standard library only: the disk cache's fast path
records its hits here too.

Labels are backend names, registry hosts, answer outcomes, cache paths and error kinds (our
error classes' names), never a message, an image path, a user name, a password or a token.

The series (all prefixed ``registry_credential_provider_``):

- ``answers_total{backend, outcome}``: answers to the kubelet; outcome ``credentials``,
  ``stale`` (a cached credential while its refresh fails), ``empty`` (pull anonymously) or
  ``error`` (the exec failed). ``backend`` is ``none`` when no rule answered.
- ``cache_hits_total{path}``: disk cache hits, ``fast`` (the fast path) or ``full``.
- ``upstream_calls_total{backend, registry}``: calls to a backend's credential source.
- ``upstream_failures_total{backend, registry, kind}``: those that failed, by error kind.
- ``credential_expiry_timestamp_seconds{backend, registry}``: the expiry of the freshest
  credential handed out (credentials that carry an expiry only).
- ``last_success_timestamp_seconds{backend, registry}``: the last answer with credentials.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from typing import NamedTuple, Optional

__all__ = ["PREFIX", "Update", "UpstreamCall", "failure_kind", "read_series", "record"]

PREFIX = "registry_credential_provider_"
ANSWERS = PREFIX + "answers_total"
CACHE_HITS = PREFIX + "cache_hits_total"
UPSTREAM_CALLS = PREFIX + "upstream_calls_total"
UPSTREAM_FAILURES = PREFIX + "upstream_failures_total"
CREDENTIAL_EXPIRY = PREFIX + "credential_expiry_timestamp_seconds"
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"

# name -> (type, help); the file lists the families in this order.
FAMILIES = {
    ANSWERS: ("counter", "Answers to the kubelet by backend and outcome (credentials, stale, empty, error)."),
    CACHE_HITS: ("counter", "Disk cache hits, by path (fast: the stdlib-only hit path; full)."),
    UPSTREAM_CALLS: ("counter", "Calls to a backend's credential source (token APIs, helpers, files)."),
    UPSTREAM_FAILURES: ("counter", "Failed calls to a backend's credential source, by error kind."),
    CREDENTIAL_EXPIRY: ("gauge", "Unix time the freshest credential handed out for a registry expires."),
    LAST_SUCCESS: ("gauge", "Unix time of the last answer with credentials for a registry."),
}
# A bound on what hostile or unusual image hosts can add: new series beyond it are dropped.
MAX_SERIES = 2000
MAX_FILE_BYTES = 4 * 1024 * 1024
LOCK_WAIT_SECONDS = 2.0

_LINE = re.compile(r"([a-z_]+)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)",?')

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]


class UpstreamCall(NamedTuple):
    """One call to a backend's credential source: ``kind`` None when it succeeded."""

    backend: str
    registry: str
    kind: Optional[str]


# Error class name -> kind label (a class not listed is ``other``).
_KINDS = {
    "CloudCredentialError": "cloud",
    "NoIdentityError": "no_identity",
    "CredentialHelperError": "helper",
    "DockerConfigFileError": "file",
    "CredentialSourceError": "source",
    "DeadlineExceededError": "deadline",
    "BackendUnavailableError": "unavailable",
    "RequestError": "request",
    "ConfigError": "config",
    "ResponseError": "response",
}


def failure_kind(exc: BaseException) -> str:
    """The kind label for ``exc``: its class's nearest listed ancestor, never its message."""
    for cls in type(exc).__mro__:
        kind = _KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return "other"


class Update:
    """What one exec adds to the file: counter increments and latest timestamps."""

    def __init__(self) -> None:
        self.increments: list[tuple[str, Labels, float]] = []
        self.latest: list[tuple[str, Labels, float]] = []

    def inc(self, name: str, by: float = 1.0, **labels: str) -> None:
        self.increments.append((name, tuple(sorted(labels.items())), by))

    def at_least(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge to ``value`` unless it already holds a later one."""
        self.latest.append((name, tuple(sorted(labels.items())), value))

    def apply(self, series: Series) -> None:
        for name, labels, by in self.increments:
            key = (name, labels)
            if key in series or len(series) < MAX_SERIES:
                series[key] = series.get(key, 0.0) + by
        for name, labels, value in self.latest:
            key = (name, labels)
            if key in series or len(series) < MAX_SERIES:
                series[key] = max(series.get(key, value), value)


def hit(backend: str, registry: str, expires_at: float | None, now: float, path: str) -> Update:
    """The update for an answer served from the disk cache by ``path`` (``fast`` or ``full``)."""
    update = Update()
    update.inc(ANSWERS, backend=backend, outcome="credentials")
    update.inc(CACHE_HITS, path=path)
    update.at_least(LAST_SUCCESS, now, backend=backend, registry=registry)
    if expires_at is not None:
        update.at_least(CREDENTIAL_EXPIRY, expires_at, backend=backend, registry=registry)
    return update


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> Series:
    """The series of a file this module wrote (other lines are ignored)."""
    series: Series = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match is None or match.group(1) not in FAMILIES:
            continue
        labels = tuple((k, _unescape(v)) for k, v in _LABEL.findall(match.group(2) or ""))
        try:
            series[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return series


def render(series: Series) -> str:
    lines: list[str] = []
    for name, (kind, help_text) in FAMILIES.items():
        entries = sorted((labels, value) for (family, labels), value in series.items() if family == name)
        if not entries:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in entries:
            text = ",".join(f'{key}="{_escape(label)}"' for key, label in labels)
            lines.append(f"{name}{{{text}}} {value:.17g}" if text else f"{name} {value:.17g}")
    return "\n".join(lines) + "\n"


def _read(path: str) -> str:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.read(descriptor, MAX_FILE_BYTES).decode("utf-8", "replace")
    finally:
        os.close(descriptor)


def read_series(path: str) -> Series:
    """The series in ``path`` (empty when it does not exist)."""
    return parse(_read(path))


def _lock(path: str) -> int:
    descriptor = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    give_up = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= give_up:
                os.close(descriptor)
                raise OSError(errno.EAGAIN, "its lock stayed taken") from None
            time.sleep(0.002)
        else:
            return descriptor


def record(path: str, update: Update) -> None:
    """Add ``update`` to the file at ``path``; raises ``OSError`` when it cannot be written."""
    lock = _lock(path)
    try:
        series = read_series(path)
        update.apply(series)
        directory, name = os.path.split(path)
        temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        try:  # noqa: SIM105 - contextlib is one more import on the fast path
            os.unlink(temporary)  # left by a killed process of the same pid
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(temporary, flags, 0o644)
        try:
            data = render(series).encode("utf-8")
            while data:
                data = data[os.write(descriptor, data) :]
            os.fchmod(descriptor, 0o644)  # the collector runs unprivileged; nothing here is secret
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    finally:
        os.close(lock)


def summary(series: Series, now: float) -> tuple[str, list[str]]:
    """One line about the counts in ``series``, and one per registry whose freshest credential
    has expired or expires within 30 minutes (for ``doctor``)."""

    def total(name: str, **match: str) -> int:
        return int(
            sum(
                value
                for (family, labels), value in series.items()
                if family == name and all((k, v) in labels for k, v in match.items())
            )
        )

    line = (
        f"{total(ANSWERS)} answers ({total(ANSWERS, outcome='error')} failed, "
        f"{total(ANSWERS, outcome='stale')} stale), {total(CACHE_HITS, path='fast')} fast-path and "
        f"{total(CACHE_HITS, path='full')} full-path cache hits, {total(UPSTREAM_CALLS)} upstream calls "
        f"({total(UPSTREAM_FAILURES)} failed)"
    )
    expiring = []
    for (family, labels), value in sorted(series.items()):
        if family == CREDENTIAL_EXPIRY and value - now < 1800:
            registry = dict(labels).get("registry", "?")
            when = f"expired {int(now - value)}s ago" if value <= now else f"expires in {int(value - now)}s"
            expiring.append(f"{registry}: its freshest credential {when}")
    return line, expiring
