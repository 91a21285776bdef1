"""The ``files`` backend: a docker config file per namespace or service account.

An external agent (Vault Agent, the External Secrets Operator syncing to the host, the
Secrets Store CSI driver) keeps one docker ``config.json`` per namespace or per service account
in a directory on the node; a rule's ``paths`` are templates that name the file for the pod
pulling, e.g. ``/var/lib/registry-credential-provider/workloads/{namespace}/{serviceAccount}.json``.

The namespace and service account come from the service account token's ``kubernetes.io``
claims (read, not verified: the kubelet requested the token for the pod it pulls for). Both
are DNS names, and anything else is refused before it reaches a path, so a claim cannot
climb out of the directory. A request without a token, or a template whose file is missing,
gets no credentials (an anonymous pull), not an error. Only ``auths`` entries are read: a
``credHelpers`` or ``credsStore`` in these files is ignored, because whoever controls a
namespace's secret would otherwise choose a program for the node to run. Files are read on
every call, so a rotated file applies at the kubelet's next lookup.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from provider.authfile import find_entry, has_path_keys
from provider.backends.base import Answer, BackendSpec, Credential, Finding, Lookup, RuleBase
from provider.backends.dockerconfig import read_auth_file
from provider.errors import ConfigError
from provider.fieldchecks import check_absolute_path, is_dns_label, is_dns_subdomain

__all__ = ["PLACEHOLDERS", "SPEC", "FilesBackend", "FilesRule", "file_for"]

PLACEHOLDERS = ("namespace", "serviceAccount")
EXAMPLE = "/var/lib/registry-credential-provider/workloads/{namespace}/{serviceAccount}.json"


class FilesRule(RuleBase, tag="files", frozen=True):
    """Docker config files per namespace or service account, kept current by an external agent.

    ``paths``: templates of the files to read, in order; the first that exists and has an
    ``auths`` entry for the image answers. Placeholders: ``{namespace}`` (required, so that
    two namespaces never share a file) and ``{serviceAccount}``, at most one per path segment
    (e.g. ``/var/lib/registry-credential-provider/workloads/{namespace}/{serviceAccount}.json``,
    then ``.../{namespace}/default.json`` as the namespace's fallback).
    """

    paths: list[str]


def _fields(template: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder or None) pieces of ``template``; ValueError when malformed."""
    pieces = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (spec or conversion or field not in PLACEHOLDERS):
            raise ValueError(f"unknown placeholder {{{field}{'!' + conversion if conversion else ''}}}")
        pieces.append((literal, field))
    return pieces


def check_rule(path: str, rule: RuleBase) -> None:
    assert isinstance(rule, FilesRule)
    if not rule.paths:
        raise ConfigError(f"{path}.paths: expected at least one path template such as {EXAMPLE!r}")
    for position, template in enumerate(rule.paths):
        where = f"{path}.paths[{position}]"
        check_absolute_path(where, template)
        try:
            pieces = _fields(template)
        except ValueError as exc:
            raise ConfigError(
                f"{where}: {exc} in {template!r} (placeholders: {{namespace}}, {{serviceAccount}})"
            ) from None
        used = [field for _, field in pieces if field is not None]
        if "namespace" not in used:
            raise ConfigError(f"{where}: {template!r} has no {{namespace}}, so namespaces would share a file")
        segments = template.split("/")
        if any(segment in (".", "..") for segment in segments):
            raise ConfigError(f"{where}: {template!r} has a '.' or '..' segment")
        for segment in segments:
            if sum(segment.count("{" + name + "}") for name in PLACEHOLDERS) > 1:
                raise ConfigError(
                    f"{where}: {template!r} has two placeholders in one path segment, "
                    "so two service accounts could name the same file; separate them with '/'"
                )


def file_for(template: str, namespace: str, service_account: str) -> str | None:
    """The file ``template`` names for the service account, or None when a name is not a DNS
    name (it then names no file at all: nothing outside the template's directory is reachable)."""
    if not is_dns_label(namespace) or not is_dns_subdomain(service_account):
        return None
    return template.format(namespace=namespace, serviceAccount=service_account)


class FilesBackend:
    """Reads the image's host from the pod's own docker config file."""

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        """Never cached: reading a small file is cheaper than the cache, and it may change any time."""
        return None

    def get_credentials(self, lookup: Lookup) -> Answer:
        rule = lookup.rule
        assert isinstance(rule, FilesRule)
        from provider.identity import token_claims

        token = lookup.request.service_account_token
        claims = token_claims(token) if token else None
        if claims is None:
            lookup.warn(
                f"{lookup.host}: the files backend needs the pod's service account token "
                "(tokenAttributes in the kubelet's CredentialProviderConfig); pulling anonymously"
            )
            return Answer(credential=None)
        files = [file_for(template, claims.namespace, claims.name) for template in rule.paths]
        if None in files:
            lookup.warn(
                f"{lookup.host}: the token's namespace or service account is not a DNS name; "
                "pulling anonymously"
            )
            return Answer(credential=None)
        per_image = False
        read = [file for file in files if file is not None]
        for file in read:
            auth_file = read_auth_file(file)
            if auth_file is None:
                continue
            if auth_file.cred_helpers or auth_file.creds_store:
                lookup.warn(f"{file}: credHelpers and credsStore are ignored in per-workload files")
            per_image = per_image or has_path_keys(auth_file, lookup.host)
            entry = find_entry(auth_file, lookup.host, lookup.path, file)
            if entry is None or entry.empty:
                continue
            if entry.identity_token_only:
                lookup.warn(
                    f"{file}: auths[{entry.key!r}] holds only an identitytoken, which the kubelet cannot "
                    "pass to the container runtime; skipped"
                )
                continue
            credential = Credential(username=entry.username, password=entry.password, path_scope=entry.path)
            return Answer(
                credential=credential,
                per_image=per_image or bool(entry.path),
                depends_on=tuple(read),
            )
        return Answer(credential=None, per_image=per_image)


def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    """Whether the templates' directories exist (the files themselves are per pod)."""
    import os

    assert isinstance(rule, FilesRule)
    findings: list[Finding] = []
    for template in rule.paths:
        fixed = template.split("{", 1)[0]
        directory = (fixed if fixed.endswith("/") else os.path.dirname(fixed)).rstrip("/") or "/"
        if os.path.isdir(directory):
            findings.append(Finding("ok", f"{directory} exists (files: {template})"))
        else:
            findings.append(
                Finding("warn", f"{directory} does not exist: every pod's pull under {template} is anonymous")
            )
    return findings


SPEC = BackendSpec(
    name="files",
    title="docker config files per namespace or service account (token mode)",
    rule=FilesRule,
    backend=FilesBackend,
    doctor=doctor,
    check_rule=check_rule,
    uses_token=True,
)
