"""``doctor``: is this node able to run the plugin? One line per check: ok, warn or fail.

The interpreter; the zipapp's extraction directory and the disk cache's directory (owners and
modes: code and credentials the kubelet runs as root must not be writable by others); our
config; for each configured backend, its identity source (the docker config files and their
helpers, AWS IMDS, the GCE metadata server, Azure IMDS, their environment variables); the
proxy environment; a clock skew hint from the servers' ``Date`` headers. Network probes run
in parallel under short timeouts, so the command never hangs; nothing secret is printed.
"""

from __future__ import annotations

import argparse
import email.utils
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping

import msgspec

from provider.backends.base import BackendSpec, CloudRule, Finding, RuleBase
from provider.commands import Streams
from provider.commands.common import EXIT_CODES, EXIT_USAGE, UsageError, load_provider_config, timeout_seconds
from provider.config import ProviderConfig
from provider.errors import ProviderError
from provider.output import Check, Status, add_output_argument, checks_table, emit_json, exit_code, worst
from provider.registryclient import redact_url

HELP = "check this node: interpreter, directories, config, each backend's identity source, proxy, clock"
EPILOG = EXIT_CODES.format(
    ok="no check failed (warnings may be printed)",
    failure="at least one check failed",
)
DEFAULT_TIMEOUT_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 2.0
DEFAULT_PEX_ROOT = "/var/lib/registry-credential-provider/pex"
SKEW_WARN_SECONDS = 30.0
METADATA_HOSTS = ("169.254.169.254", "metadata.google.internal")


class DoctorReport(msgspec.Struct, kw_only=True):
    ok: bool
    status: str
    checks: list[Check]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="also probe this registry's /v2/ over https (reachability, TLS, clock); repeatable",
    )
    parser.add_argument(
        "--ca-file", metavar="FILE", help="a CA certificate to trust for --registry", default=None
    )
    parser.add_argument(
        "--plain-http", action="store_true", default=False, help="talk plain http to --registry (not https)"
    )
    add_output_argument(parser)
    parser.epilog = EPILOG


def _date_skew(dates: list[tuple[str, str]]) -> list[tuple[str, float]]:
    skews = []
    now = time.time()
    for name, date in dates:
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            continue
        skews.append((name, now - server))
    return skews


def installed_form() -> str:
    """Which release form this is and why a node gets it (one line for ``doctor``)."""
    if getattr(sys, "frozen", False):  # PyInstaller's bootloader sets it: the self-contained form
        return (
            f"self-contained (brings its own CPython {sys.version.split()[0]}): "
            "for nodes with no CPython 3.9-3.13 on the kubelet's PATH"
        )
    return f"zipapp (CPython {sys.version.split()[0]} at {sys.executable}, from the kubelet's PATH)"


# --- the checks ---------------------------------------------------------------------------------


class _Doctor:
    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], deadline: float) -> None:
        self.args = args
        self.environ = environ
        self.deadline = deadline
        self.checks: list[Check] = []
        self.later: list[Callable[[], None]] = []
        self.dates: list[tuple[str, str]] = []  # (server, its Date header)

    def add(self, status: Status, check: str, detail: str) -> None:
        self.checks.append(Check(status=status, check=check, detail=detail))

    def interpreter(self) -> None:
        version = sys.version.split()[0]
        supported = (3, 9) <= sys.version_info[:2] < (3, 14)
        status: Status = "ok" if supported else "warn"
        extra = "" if supported else " (the zipapp is built and tested for CPython 3.9-3.13)"
        self.add(status, "python", f"{sys.implementation.name} {version} at {sys.executable}{extra}")
        self.add("ok", "form", installed_form())
        uid = os.geteuid()
        if uid == 0:
            self.add("ok", "user", "root, as the kubelet runs plugins")
        else:
            self.add(
                "warn",
                "user",
                f"uid {uid}: the kubelet runs plugins as root, "
                "so files and directories may look different to it",
            )

    def zipapp(self) -> None:
        root = self.environ.get("PEX_ROOT") or DEFAULT_PEX_ROOT
        pex = self.environ.get("PEX")
        where = (
            f"running from the zipapp {pex}" if pex else f"not running from the zipapp (prefix {sys.prefix})"
        )
        if not os.path.exists(root):
            status: Status = "warn" if pex else "ok"
            self.add(status, "zipapp dir", f"{root} does not exist; {where}")
            return
        problem = _unsafe_path(root)
        if problem:
            self.add(
                "fail",
                "zipapp dir",
                f"{root}: {problem}: others could change the code the kubelet runs as root",
            )
            return
        self.add("ok", "zipapp dir", f"{root}: {_describe(root)}; {where}")

    def config(self) -> ProviderConfig | None:
        try:
            path, config = load_provider_config(self.args.config, self.environ)
        except ProviderError as exc:
            self.add("fail", "config", str(exc))
            return None
        backends = ", ".join(dict.fromkeys(rule.backend for rule in config.rules))
        self.add("ok", "config", f"{path or 'embedded default'}: {len(config.rules)} rules ({backends})")
        return config

    def cache_dir(self, config: ProviderConfig) -> None:
        cache = getattr(config, "cache", None)
        if cache is None:
            self.add("ok", "cache dir", "no disk cache in this build")
            return
        if not getattr(cache, "enabled", True):
            self.add("ok", "cache dir", "disabled in the config (cache.enabled: false)")
            return
        try:
            from provider.cachekeys import cache_dir, dir_problem
        except ImportError:
            self.add("ok", "cache dir", "no disk cache in this build")
            return
        path = cache_dir(getattr(cache, "dir", None), self.environ)
        problem = dir_problem(path)
        if problem is None:
            self.add("ok", "cache dir", f"{path}: {_describe(path)}")
        elif problem == "does not exist":
            parent = os.path.dirname(path.rstrip("/")) or "/"
            if os.access(parent, os.W_OK):
                self.add(
                    "ok", "cache dir", f"{path} does not exist yet; it is created (mode 700) on first use"
                )
            else:
                self.add(
                    "warn",
                    "cache dir",
                    f"{path} does not exist and {parent} is not writable for us: no cache",
                )
        else:
            self.add("fail", "cache dir", f"{path} {problem}: credentials are not cached there")

    def metrics(self, config: ProviderConfig) -> None:
        """The metrics textfile read back: its age and what it counted."""
        path = config.metrics.textfile
        if path is None:
            self.add("ok", "metrics", "off (metrics.textfile is not set)")
            return
        from provider import metrics

        try:
            age = time.time() - os.stat(path).st_mtime
            series = metrics.read_series(path)
        except FileNotFoundError:
            self.add("warn", "metrics", f"{path} does not exist yet; the next kubelet-mode exec writes it")
            return
        except OSError as exc:
            self.add("fail", "metrics", f"{path} cannot be read: {exc.strerror or type(exc).__name__}")
            return
        line, expiring = metrics.summary(series, time.time())
        self.add("ok", "metrics", f"{path}, updated {int(age)}s ago: {line}")
        for registry in expiring:
            self.add("warn", "metrics", registry)

    def backends(self, config: ProviderConfig) -> None:
        """Each rule's backend probe (each cloud's once), run in parallel under the deadline."""
        from provider.backends import BY_NAME

        seen: set[str] = set()
        for index, rule in enumerate(config.rules):
            spec = BY_NAME[rule.backend]
            per_rule = rule.backend == "dockerconfig"  # each rule names its own files
            if not per_rule and rule.backend in seen:
                continue
            seen.add(rule.backend)
            name = f"rules[{index}] {rule.backend}" if per_rule else rule.backend
            self.later.append(self._backend(spec, rule, name))

    def _backend(self, spec: BackendSpec, rule: RuleBase, name: str) -> Callable[[], None]:
        found: list[Finding] = []
        # A probe's own timeout ends before the deadline, so it reports what it saw itself.
        timeout = max(0.1, min(PROBE_TIMEOUT_SECONDS, (self.deadline - time.monotonic()) * 0.8))
        thread = threading.Thread(
            target=lambda: found.extend(spec.doctor(rule, self.environ, timeout)), daemon=True
        )
        thread.start()

        def report() -> None:
            thread.join(max(0.0, self.deadline - time.monotonic()))
            if thread.is_alive():
                self.add("fail", name, "its probe did not finish in time")
                return
            if spec.backend is None:
                fallback = isinstance(rule, CloudRule) and rule.on_no_identity == "next"
                on_cloud = any(
                    finding.status == "ok" and not finding.detail.startswith("not on") for finding in found
                )
                status: Status = "warn" if on_cloud or not fallback else "ok"
                then = "go to the next matching rule" if fallback else "fail"
                self.add(
                    status,
                    name,
                    f"backend {spec.name!r} ({spec.title}) is not in this build: its images {then}",
                )
            for finding in found:
                self.add(finding.status, name, finding.detail)
                if finding.date is not None:
                    self.dates.append(finding.date)

        return report

    def proxy(self, config: ProviderConfig | None) -> None:
        shown = []
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"):
            value = self.environ.get(name) or self.environ.get(name.lower())
            if value:
                shown.append(f"{name}={redact_url(value) if name != 'NO_PROXY' else value}")
        if not shown:
            self.add("ok", "proxy", "no proxy variables set")
            return
        cloud = config is not None and any(isinstance(r, CloudRule) for r in config.rules)
        no_proxy = (self.environ.get("NO_PROXY") or self.environ.get("no_proxy") or "").split(",")
        missing = [host for host in METADATA_HOSTS if host not in {e.strip() for e in no_proxy}]
        proxied = self.environ.get("HTTP_PROXY") or self.environ.get("http_proxy")
        if cloud and proxied and missing:
            self.add(
                "warn",
                "proxy",
                f"{'; '.join(shown)}: add {', '.join(missing)} to NO_PROXY, "
                "metadata servers are not reachable "
                "through a proxy",
            )
        else:
            self.add("ok", "proxy", "; ".join(shown))

    def registries(self) -> None:
        for host in self.args.registry:
            probe_check = f"registry {host}"
            self.later.append(self._registry_probe(host, probe_check))

    def _registry_probe(self, host: str, check: str) -> Callable[[], None]:
        from provider.registryclient import Client, RegistryError

        result: dict[str, object] = {}

        def work() -> None:
            try:
                client = Client(
                    environ=self.environ,
                    remaining=lambda: min(PROBE_TIMEOUT_SECONDS, self.deadline - time.monotonic()),
                    ca_file=self.args.ca_file,
                )
                scheme = "http" if self.args.plain_http else "https"
                response = client.get(f"{scheme}://{host}/v2/")
                result["response"] = response
            except RegistryError as exc:
                result["error"] = f"{exc.kind}: {exc}"

        thread = threading.Thread(target=work, daemon=True)
        thread.start()

        def report() -> None:
            thread.join(max(0.0, self.deadline - time.monotonic()))
            response = result.get("response")
            if thread.is_alive():
                self.add("fail", check, "no answer in time")
            elif "error" in result:
                self.add("fail", check, str(result["error"]))
            elif response is not None:
                from provider.registryclient import Response

                assert isinstance(response, Response)
                status: Status = "ok" if response.status in (200, 401) else "warn"
                self.add(status, check, f"GET /v2/: {response.status}")
                date = response.header("Date")
                if date:
                    self.dates.append((f"registry {host}", date))

        return report

    def clock(self) -> None:
        skews = _date_skew(self.dates)
        if not skews:
            self.add("ok", "clock", "not compared: no server answered with a Date (try --registry HOST)")
            return
        name, skew = max(skews, key=lambda item: abs(item[1]))
        ahead = "ahead of" if skew > 0 else "behind"
        detail = f"{abs(skew):.0f}s {ahead} {name} (Date header; one-second resolution)"
        if abs(skew) > SKEW_WARN_SECONDS:
            self.add("warn", "clock", detail + ": tokens may look expired or not yet valid; check NTP")
        else:
            self.add("ok", "clock", detail)


def _unsafe_path(path: str) -> str | None:
    """Why ``path`` or a directory above it is writable by someone other than root or us."""
    current = os.path.abspath(path)
    uid = os.geteuid()
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            return f"{current} cannot be inspected ({exc.strerror})"
        if info.st_uid not in (0, uid):
            return f"{current} is owned by uid {info.st_uid}"
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if info.st_mode & 0o022 and not sticky:
            return f"{current} is writable by group or others (mode {info.st_mode & 0o777:o})"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _describe(path: str) -> str:
    info = os.stat(path)
    return f"owner uid {info.st_uid}, mode {info.st_mode & 0o777:o}"


def run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        seconds = timeout_seconds(args, DEFAULT_TIMEOUT_SECONDS)
    except UsageError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc} (see --help)\n")
        return EXIT_USAGE
    doctor = _Doctor(args, os.environ, time.monotonic() + seconds)
    doctor.interpreter()
    doctor.zipapp()
    config = doctor.config()
    if config is not None:
        doctor.cache_dir(config)
        doctor.metrics(config)
        doctor.backends(config)
    doctor.proxy(config)
    doctor.registries()
    for report in doctor.later:
        report()
    doctor.clock()
    status = worst(doctor.checks)
    if args.output == "json":
        emit_json(streams, DoctorReport(ok=status != "fail", status=status, checks=doctor.checks))
    else:
        from provider.output import use_colour

        counts = {level: sum(c.status == level for c in doctor.checks) for level in ("ok", "warn", "fail")}
        summary = f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail\n"
        streams.out(checks_table(doctor.checks, colour=use_colour(streams)) + summary)
    return exit_code(doctor.checks)
