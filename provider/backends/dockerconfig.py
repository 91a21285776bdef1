"""The ``dockerconfig`` backend: credentials from files users already have.

For each file in order (a rule's ``files``, else ``default_files``): a ``credHelpers`` entry
for the host runs that helper; else the most specific ``auths`` entry with a username and
password answers; else a ``credsStore`` helper is asked. The first file with an answer wins.
Files are read on every call, so edits apply without a restart.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Optional

from provider import goduration
from provider.authfile import AuthFile, find_entry, has_path_keys, helper_for, parse_auth_file, server_url
from provider.backends.base import Answer, BackendSpec, Credential, Finding, Lookup, RuleBase
from provider.errors import DockerConfigFileError, ProviderError
from provider.fieldchecks import check_absolute_path, check_duration
from provider.filestamp import file_version
from provider.protocol import MAX_TIMEOUT_SECONDS
from provider.safefile import FileTooLargeError, UnsafeFileError, read_regular_file, trust_problem

__all__ = ["SPEC", "DockerConfigBackend", "DockerConfigRule", "default_files", "read_auth_file"]

MAX_FILE_BYTES = 4 * 1024 * 1024


class DockerConfigRule(RuleBase, tag="dockerconfig", frozen=True):
    """Credentials from docker ``config.json`` / containers ``auth.json`` files and their helpers.

    ``files``: the files to search, in order (absent: the node's usual files, see
    ``default_files``). ``helperTimeout``: the longest a ``docker-credential-*`` helper may run.
    ``helperCacheDuration``: how long a helper's answer is kept in the disk cache (``0s``: ask
    the helper every time).
    """

    files: Optional[list[str]] = None
    helper_timeout: str = "10s"
    helper_cache_duration: str = "5m"


def check_rule(path: str, rule: RuleBase) -> None:
    assert isinstance(rule, DockerConfigRule)
    check_duration(f"{path}.helperTimeout", rule.helper_timeout, maximum=MAX_TIMEOUT_SECONDS, positive=True)
    check_duration(f"{path}.helperCacheDuration", rule.helper_cache_duration)
    for position, file in enumerate(rule.files or ()):
        check_absolute_path(f"{path}.files[{position}]", file)


def default_files(environ: Mapping[str, str], root: str = "/") -> list[str]:
    """The node's usual credential files, in the order they are searched; the fixed ones under
    ``root``, the node's filesystem (tests point it at a directory of their own)."""
    files = []
    if environ.get("DOCKER_CONFIG"):
        files.append(os.path.join(environ["DOCKER_CONFIG"], "config.json"))
    files += [
        os.path.join(root, "var/lib/kubelet/config.json"),
        os.path.join(root, "root/.docker/config.json"),
    ]
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(environ["REGISTRY_AUTH_FILE"])
    files.append(os.path.join(root, "run/containers/0/auth.json"))
    return files


# What docker's own helpers are called (docker-credential-ecr-login, -gcloud, -osxkeychain,
# -pass): a name is a file name in PATH, never a path or an option.
HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def read_auth_file(path: str, *, skip_unreadable: Callable[[str], None] | None = None) -> AuthFile | None:
    """The parsed file, or None when it does not exist (a missing default file is normal).

    With ``skip_unreadable`` (the node's default files, which the rule did not choose), a file
    that exists but cannot be read (no permission, not a regular file) is reported there and
    treated as missing: as an unprivileged user, ``/root/.docker/config.json`` is unreadable.
    """
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return None
    except (OSError, UnsafeFileError) as exc:
        problem = f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}"
        if skip_unreadable is not None and not isinstance(exc, FileTooLargeError):
            skip_unreadable(f"{problem}; skipped (it is one of the node's default files)")
            return None
        raise DockerConfigFileError(problem) from None
    if not data.strip():
        return AuthFile()
    return parse_auth_file(data, path)


def check_helper(path: str, field: str, helper: str) -> str:
    """``helper`` when it is a plain helper name; else ``DockerConfigFileError`` naming the field."""
    if not HELPER_NAME.fullmatch(helper):
        raise DockerConfigFileError(
            f"{path}: {field} is {helper!r}, not a credential helper name "
            "(letters, digits, '.', '_' and '-'; docker-credential-<name> is looked up on PATH)"
        )
    return helper


class DockerConfigBackend:
    """Looks the image's host up in docker/containers auth files and their credential helpers."""

    @staticmethod
    def _rule_and_files(lookup: Lookup) -> tuple[DockerConfigRule, list[str]]:
        rule = lookup.rule
        assert isinstance(rule, DockerConfigRule)
        return rule, rule.files if rule.files is not None else default_files(lookup.environ)

    def __init__(self) -> None:
        self._files: dict[str, AuthFile | None] = {}

    def _read(self, path: str, lookup: Lookup) -> AuthFile | None:
        """Each file is parsed once per process (``cache_key`` and ``get_credentials`` both need it)."""
        if path not in self._files:
            rule = lookup.rule
            assert isinstance(rule, DockerConfigRule)
            skip = lookup.warn if rule.files is None else None
            self._files[path] = read_auth_file(path, skip_unreadable=skip)
        return self._files[path]

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        """Only helpers' answers are cached (reading a file is cheaper than the cache), so there
        is no key unless a file names a helper for this host. Any change to a file makes a new
        key, so edits apply at once."""
        rule, files = self._rule_and_files(lookup)
        if goduration.parse(rule.helper_cache_duration) <= 0:
            return None
        for path in files:  # in the order get_credentials reads them, stopping where it would
            auth_file = self._read(path, lookup)
            if auth_file is None:
                continue
            if helper_for(auth_file, lookup.host) or auth_file.creds_store:
                return tuple(":".join(str(part) for part in file_version(path)) for path in files)
            entry = find_entry(auth_file, lookup.host, lookup.path, path)
            if entry is not None and not entry.empty and not entry.identity_token_only:
                return None
        return None

    def get_credentials(self, lookup: Lookup) -> Answer:
        rule, files = self._rule_and_files(lookup)
        helper_timeout = goduration.parse_seconds(rule.helper_timeout)
        keep_seconds = goduration.parse_seconds(rule.helper_cache_duration)
        per_image = False
        for path in files:
            auth_file = self._read(path, lookup)
            if auth_file is None:
                continue
            per_image = per_image or has_path_keys(auth_file, lookup.host)
            credential, from_helper = self._from_file(auth_file, path, lookup, helper_timeout)
            if credential is not None:
                return Answer(
                    credential=credential,
                    per_image=per_image or bool(credential.path_scope),
                    cacheable=from_helper and keep_seconds > 0,
                    keep_seconds=keep_seconds if from_helper else None,
                    depends_on=tuple(files),
                )
        return Answer(credential=None, per_image=per_image)

    def _from_file(
        self, auth_file: AuthFile, path: str, lookup: Lookup, helper_timeout: float
    ) -> tuple[Credential | None, bool]:
        """The file's credential for the lookup, and whether a helper produced it."""
        helper = helper_for(auth_file, lookup.host)
        if helper:
            check_helper(path, f"credHelpers[{lookup.host!r}]", helper)
            self._warn_if_untrusted(path, lookup)
            return self._from_helper(helper, lookup, helper_timeout), True
        entry = find_entry(auth_file, lookup.host, lookup.path, path)
        if entry is not None and entry.identity_token_only:
            lookup.warn(
                f"{path}: auths[{entry.key!r}] holds only an identitytoken, which the kubelet cannot "
                "pass to the container runtime; skipped"
            )
        elif entry is not None and not entry.empty:
            return Credential(username=entry.username, password=entry.password, path_scope=entry.path), False
        if auth_file.creds_store:
            check_helper(path, "credsStore", auth_file.creds_store)
            self._warn_if_untrusted(path, lookup)
            return self._from_helper(auth_file.creds_store, lookup, helper_timeout), True
        return None, False

    @staticmethod
    def _warn_if_untrusted(path: str, lookup: Lookup) -> None:
        problem = trust_problem(path)
        if problem is not None:
            lookup.warn(f"{problem}, yet it chooses a program this plugin runs; make it root's, mode 0600")

    def _from_helper(self, helper: str, lookup: Lookup, helper_timeout: float) -> Credential | None:
        from provider.credhelper import run_helper  # subprocess is only paid when a helper runs

        found = run_helper(
            helper,
            server_url(lookup.host),
            timeout=lookup.deadline.bound(helper_timeout),
            environ=lookup.environ,
        )
        if found is None:
            return None
        if found.username == "<token>":
            lookup.warn(
                f"docker-credential-{helper} returned an identity token for {lookup.host}, which the "
                "kubelet cannot pass to the container runtime; skipped"
            )
            return None
        return Credential(username=found.username, password=found.secret)


def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    """Which of the rule's files exist and parse, and whether the helpers they name are on PATH."""
    assert isinstance(rule, DockerConfigRule)
    findings: list[Finding] = []
    files = rule.files if rule.files is not None else default_files(environ)
    present: list[str] = []
    helpers: set[str] = set()
    for path in files:
        skipped: list[str] = []
        try:
            parsed = read_auth_file(path, skip_unreadable=skipped.append if rule.files is None else None)
        except ProviderError as exc:
            findings.append(Finding("fail", str(exc)))
            continue
        findings.extend(Finding("warn", message) for message in skipped)
        if parsed is None:
            continue
        present.append(f"{path} ({len(parsed.auths)} auths)")
        named = [*parsed.cred_helpers.values(), *([parsed.creds_store] if parsed.creds_store else [])]
        for helper in named:
            if HELPER_NAME.fullmatch(helper):
                helpers.add(helper)
            else:
                findings.append(Finding("fail", f"{path}: {helper!r} is not a credential helper name"))
        problem = trust_problem(path) if named else None
        if problem is not None:
            findings.append(Finding("warn", f"{problem}, yet it names credential helpers this plugin runs"))
    if not present:
        findings.append(
            Finding(
                "warn", f"none of its files exists ({', '.join(files)}): its images are pulled anonymously"
            )
        )
    else:
        findings.append(Finding("ok", "; ".join(present)))
    path_env = environ.get("PATH", os.defpath)
    for helper in sorted(helpers):
        found = shutil.which(f"docker-credential-{helper}", path=path_env)
        if found:
            findings.append(Finding("ok", f"helper docker-credential-{helper}: {found}"))
        else:
            findings.append(
                Finding(
                    "fail",
                    f"helper docker-credential-{helper} is not on PATH ({path_env}): lookups using it fail",
                )
            )
    return findings


SPEC = BackendSpec(
    name="dockerconfig",
    title="docker config.json and containers auth.json files, with their credential helpers",
    rule=DockerConfigRule,
    backend=DockerConfigBackend,
    doctor=doctor,
    check_rule=check_rule,
)
