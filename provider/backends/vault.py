"""The ``vault`` backend: registry credentials from HashiCorp Vault's KV v2, per workload.

For a pod (the request carries its service account token): log in to Vault's ``kubernetes``
or ``jwt`` auth method with that token and a role (the first of the rule's ``roleAnnotations``
present on the ServiceAccount, else the rule's ``role``), then read the secret at
``secretPath`` (templated by the token's namespace and service account) from the KV v2 engine
at ``kvMount``: its ``usernameKey`` and ``passwordKey`` are the registry credential. Vault
verifies the token (signature, audience, bound namespace and service account); we only read
its claims to fill in the path, and a claim that is not a DNS name is refused.

For the node (no token): the rule's ``nodeAuth`` logs in with AppRole (role and secret id
from files) or uses a token from a file, and reads ``nodeSecretPath``.

A missing secret (404) means no credentials (an anonymous pull), as a missing file does for
the ``files`` backend; a refused login (403, a wrong role) or an unreachable Vault is an error.
Answers are kept in our disk cache, keyed by the secret's address (Vault, mount, path) and the
caller's identity, for ``secretCacheDuration`` and never longer than the login's token lease or
the secret's own lease: a service account Vault stops trusting loses its credentials within
the role's token TTL. hvac (and requests under it) is imported only inside a lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Optional

from provider import goduration
from provider.backends.base import Answer, BackendSpec, Credential, Finding, Lookup, RuleBase
from provider.errors import ConfigError, CredentialSourceError
from provider.fieldchecks import (
    check_absolute_path,
    check_annotation_key,
    check_duration,
    check_endpoint,
    is_dns_label,
    is_dns_subdomain,
)
from provider.protocol import MAX_TIMEOUT_SECONDS

if TYPE_CHECKING:
    import hvac

__all__ = ["SPEC", "VaultBackend", "VaultRule", "secret_path"]

PLACEHOLDERS = ("namespace", "serviceAccount")
MAX_FILE_BYTES = 64 * 1024


class VaultRule(RuleBase, tag="vault", frozen=True):
    """Credentials from HashiCorp Vault's KV v2, read with the pod's own Vault login.

    ``address``: Vault's URL (``https://vault.example.com:8200``; http only on loopback).
    ``caFile``: PEM file of the CAs that sign Vault's certificate (absent: the system's).
    ``authMethod``: how a pod logs in with its service account token, ``kubernetes`` or ``jwt``.
    ``authMount``: where that method is mounted (absent: its name). ``role``: the Vault role
    for pods. ``roleAnnotations``: ServiceAccount annotations naming a pod's role instead, first
    present wins (the kubelet must pass them: ``render`` lists them in ``tokenAttributes``).
    ``kvMount``: the KV v2 engine's mount. ``secretPath``: the secret's path in it, with
    ``{namespace}`` and ``{serviceAccount}`` from the token's claims.
    ``usernameKey`` / ``passwordKey``: the secret's keys holding the registry credential.
    ``secretCacheDuration``: how long a secret read is kept in our disk cache (capped by the
    Vault token's lease). ``timeout``: the longest one Vault request may take.
    ``nodeAuth``: for requests without a token, ``approle`` or ``token`` (absent: such pulls get
    no credentials). ``nodeAuthMount``: the AppRole mount (absent: ``approle``).
    ``nodeRoleIdFile`` / ``nodeSecretIdFile``: files holding AppRole's role id and secret id.
    ``nodeTokenFile``: a file holding a Vault token (for ``nodeAuth: token``, e.g. kept by
    Vault Agent). ``nodeSecretPath``: the node's secret in ``kvMount``.
    """

    address: str
    ca_file: Optional[str] = None
    auth_method: Literal["kubernetes", "jwt"] = "kubernetes"
    auth_mount: Optional[str] = None
    role: Optional[str] = None
    role_annotations: tuple[str, ...] = ()
    kv_mount: str = "secret"
    secret_path: str = "registry/{namespace}/{serviceAccount}"  # noqa: S105 - a path, not a secret
    username_key: str = "username"
    password_key: str = "password"  # noqa: S105 - a key name
    secret_cache_duration: str = "5m"  # noqa: S105 - a duration
    timeout: str = "10s"
    node_auth: Optional[Literal["approle", "token"]] = None
    node_auth_mount: str = "approle"
    node_role_id_file: Optional[str] = None
    node_secret_id_file: Optional[str] = None
    node_token_file: Optional[str] = None
    node_secret_path: Optional[str] = None


def _check_mount(path: str, value: str) -> None:
    parts = value.strip("/").split("/")
    if not value.strip("/") or any(part in ("", ".", "..") for part in parts) or "{" in value:
        raise ConfigError(f"{path}: expected a Vault mount path such as 'kubernetes', got {value!r}")


def _check_template(path: str, template: str, placeholders: tuple[str, ...]) -> None:
    """A KV path whose placeholders are among ``placeholders``, each a whole path segment (so
    two service accounts never name the same secret)."""
    segments = template.strip("/").split("/")
    whole = {"{" + name + "}" for name in placeholders}
    if not template.strip("/") or any(
        segment in ("", ".", "..") or (("{" in segment or "}" in segment) and segment not in whole)
        for segment in segments
    ):
        allowed = ", ".join(sorted(whole)) or "none"
        raise ConfigError(
            f"{path}: expected a KV path whose placeholders ({allowed}) are whole segments, got {template!r}"
        )


def check_rule(path: str, rule: RuleBase) -> None:
    assert isinstance(rule, VaultRule)
    check_endpoint(f"{path}.address", rule.address, "https://vault.example.com:8200")
    if rule.ca_file is not None:
        check_absolute_path(f"{path}.caFile", rule.ca_file)
    for name in ("auth_mount", "kv_mount", "node_auth_mount"):
        value = getattr(rule, name)
        if value is not None:
            _check_mount(f"{path}.{_camel(name)}", value)
    for position, key in enumerate(rule.role_annotations):
        check_annotation_key(f"{path}.roleAnnotations[{position}]", key, "vault.hashicorp.com/role")
    _check_template(f"{path}.secretPath", rule.secret_path, PLACEHOLDERS)
    if "{namespace}" not in rule.secret_path:
        raise ConfigError(
            f"{path}.secretPath: {rule.secret_path!r} has no {{namespace}}, "
            "so namespaces would share a secret"
        )
    check_duration(f"{path}.secretCacheDuration", rule.secret_cache_duration)
    check_duration(f"{path}.timeout", rule.timeout, maximum=MAX_TIMEOUT_SECONDS, positive=True)
    for name in ("username_key", "password_key"):
        if not getattr(rule, name):
            raise ConfigError(f"{path}.{_camel(name)}: expected a key of the secret, got ''")
    _check_node(path, rule)


def _check_node(path: str, rule: VaultRule) -> None:
    files = {
        "approle": ("node_role_id_file", "node_secret_id_file"),
        "token": ("node_token_file",),
    }
    for name in ("node_role_id_file", "node_secret_id_file", "node_token_file"):
        value = getattr(rule, name)
        if value is not None:
            check_absolute_path(f"{path}.{_camel(name)}", value)
        if value is not None and (rule.node_auth is None or name not in files[rule.node_auth]):
            raise ConfigError(f"{path}.{_camel(name)}: only used with the nodeAuth that needs it")
    if rule.node_auth is None:
        if rule.node_secret_path is not None:
            raise ConfigError(f"{path}.nodeSecretPath: only used with nodeAuth")
        return
    for name in files[rule.node_auth]:
        if getattr(rule, name) is None:
            raise ConfigError(f"{path}.{_camel(name)}: required with nodeAuth: {rule.node_auth}")
    if rule.node_secret_path is None:
        raise ConfigError(f"{path}.nodeSecretPath: required with nodeAuth")
    _check_template(f"{path}.nodeSecretPath", rule.node_secret_path, ())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def secret_path(template: str, namespace: str, service_account: str) -> str | None:
    """The KV path for the service account, or None when a claim is not a DNS name."""
    if not is_dns_label(namespace) or not is_dns_subdomain(service_account):
        return None
    return template.format(namespace=namespace, serviceAccount=service_account).strip("/")


class _Who:
    """Whose login a lookup uses: a pod's (role and token) or the node's."""

    def __init__(self, kind: Literal["pod", "node", "none"], role: str = "", path: str = "", why: str = ""):
        self.kind = kind
        self.role = role
        self.path = path
        self.why = why


def _who(lookup: Lookup, rule: VaultRule) -> _Who:
    """Cheap: no I/O."""
    from provider.identity import token_claims

    token = lookup.request.service_account_token
    if not token:
        if rule.node_auth is None or rule.node_secret_path is None:
            return _Who("none", why="the request has no service account token and the rule sets no nodeAuth")
        return _Who("node", role=rule.node_auth, path=rule.node_secret_path.strip("/"))
    claims = token_claims(token)
    if claims is None:
        return _Who("none", why="the service account token carries no kubernetes.io claims")
    path = secret_path(rule.secret_path, claims.namespace, claims.name)
    if path is None:
        return _Who("none", why="the token's namespace or service account is not a DNS name")
    annotations = lookup.request.service_account_annotations
    role = next((annotations[k].strip() for k in rule.role_annotations if annotations.get(k, "").strip()), "")
    role = role or rule.role or ""
    if not role:
        keys = ", ".join(rule.role_annotations) or "(none configured)"
        raise CredentialSourceError(
            f"{lookup.host}: no Vault role for service account {claims.namespace}/{claims.name}: "
            f"set the rule's 'role' or annotate the ServiceAccount with one of {keys}"
        )
    return _Who("pod", role=role, path=path)


def _read_file(path: str, what: str, warn: Callable[[str], None]) -> str:
    """A node secret file's text: only a regular file (a FIFO would block the call) up to a
    size; one that others could read or write is used with a warning, as our config is."""
    from provider.safefile import FileTooLargeError, UnsafeFileError, read_regular_file

    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise CredentialSourceError(f"cannot read the Vault {what} file {path}: {exc.strerror}") from None
    except FileTooLargeError:
        data = b""
    except UnsafeFileError as exc:
        raise CredentialSourceError(f"the Vault {what} file {path} is refused: {exc}") from None
    text = data.decode("utf-8", "replace").strip()
    if not text:
        raise CredentialSourceError(f"the Vault {what} file {path} is empty or too large")
    problem = _exposure(path)
    if problem is not None:
        warn(f"{problem}, and it holds the node's Vault {what}: make it root's, mode 0600")
    return text


def _exposure(path: str) -> str | None:
    """Why users other than root (and us) could read or replace the secret in ``path``."""
    import os
    import stat

    from provider.safefile import trust_problem

    problem = trust_problem(path)
    if problem is not None:
        return problem
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"{path} is readable by {'others' if mode & stat.S_IROTH else 'its group'}"
    return None


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:  # shorter "secrets" (a test's) would only garble the text
            text = text.replace(secret, "<redacted>")
    return " ".join(text.split())[:300]


class VaultBackend:
    """Logs in to Vault as the pod (or the node) and reads the registry credential from KV v2."""

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        rule = lookup.rule
        assert isinstance(rule, VaultRule)
        if goduration.parse(rule.secret_cache_duration) <= 0:
            return None
        try:
            who = _who(lookup, rule)
        except CredentialSourceError:
            return None  # the answer is an error: nothing to look up
        if who.kind == "none":
            return None
        mount = rule.auth_mount or rule.auth_method if who.kind == "pod" else rule.node_auth_mount
        return (rule.address, rule.ca_file or "", who.kind, mount, who.role, rule.kv_mount, who.path)

    def get_credentials(self, lookup: Lookup) -> Answer:
        rule = lookup.rule
        assert isinstance(rule, VaultRule)
        who = _who(lookup, rule)
        if who.kind == "none":
            lookup.warn(f"{lookup.host}: {who.why}; pulling anonymously")
            return Answer(credential=None)
        secrets = [lookup.request.service_account_token]
        steps: list[str] = []
        import hvac.exceptions
        import requests

        try:
            return self._fetch(lookup, rule, who, secrets, steps)
        except hvac.exceptions.VaultError as exc:
            raise CredentialSourceError(self._refused(lookup, rule, who, exc, secrets, steps)) from None
        except requests.exceptions.RequestException as exc:
            kind = type(exc).__name__
            step = f" to {steps[-1]}" if steps else ""
            raise CredentialSourceError(
                f"{lookup.host}: Vault at {rule.address} did not answer ({kind}){step}: "
                f"{_scrub(str(exc), secrets)}"
            ) from None
        except OSError as exc:  # requests' word for a caFile it cannot use
            raise CredentialSourceError(
                f"{lookup.host}: cannot reach Vault at {rule.address} over TLS: {_scrub(str(exc), secrets)}"
            ) from None

    @staticmethod
    def _client(rule: VaultRule, lookup: Lookup) -> hvac.Client:
        import hvac
        import requests

        from provider.wallclock import within

        limit = goduration.parse_seconds(rule.timeout)

        class DeadlineSession(requests.Session):
            """Every request's timeout is the rule's, cut to what is left of the lookup's deadline,
            for the whole answer: requests' own timeout is per read, so an answer that trickles
            in a byte at a time would never trip it."""

            def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
                seconds = lookup.deadline.bound(limit)
                kwargs["timeout"] = seconds
                return within(
                    seconds,
                    lambda: requests.Session.request(self, method, url, *args, **kwargs),
                    lambda: requests.exceptions.Timeout(f"no whole answer within {round(seconds, 1):g}s"),
                )

        session = DeadlineSession()
        # hvac takes ``verify`` from a session it is given, so the CA goes on the session.
        session.verify = rule.ca_file or True
        # token="" and an explicit verify: never VAULT_TOKEN, ~/.vault-token or VAULT_CACERT.
        return hvac.Client(url=rule.address, token="", verify=session.verify, session=session)

    def _fetch(
        self, lookup: Lookup, rule: VaultRule, who: _Who, secrets: list[str], steps: list[str]
    ) -> Answer:
        """The credential; ``steps`` gets each Vault request's description before it is made."""
        client = self._client(rule, lookup)
        where = f"{rule.kv_mount}/{who.path}"
        if who.kind == "pod":
            jwt = lookup.request.service_account_token
            mount = rule.auth_mount or rule.auth_method
            steps.append(f"the login as role {who.role!r} at auth/{mount}")
            if rule.auth_method == "kubernetes":
                login = client.auth.kubernetes.login(who.role, jwt, mount_point=mount)
            else:
                login = client.auth.jwt.jwt_login(who.role, jwt, path=mount)
        elif who.role == "approle":
            assert rule.node_role_id_file is not None
            assert rule.node_secret_id_file is not None
            role_id = _read_file(rule.node_role_id_file, "role id", lookup.warn)
            secret_id = _read_file(rule.node_secret_id_file, "secret id", lookup.warn)
            secrets += [role_id, secret_id]
            steps.append(f"the node's AppRole login at auth/{rule.node_auth_mount}")
            login = client.auth.approle.login(role_id, secret_id, mount_point=rule.node_auth_mount)
        else:
            assert rule.node_token_file is not None
            token = _read_file(rule.node_token_file, "token", lookup.warn)
            secrets.append(token)
            client.token = token
            login = None
            steps.append(f"the read of {where} with the node's token from {rule.node_token_file}")
        token_lease = 0.0
        if login is not None:
            auth = login.get("auth") if isinstance(login, dict) else None
            if not isinstance(auth, dict) or not isinstance(auth.get("client_token"), str):
                raise CredentialSourceError(f"{lookup.host}: Vault's login answer has no auth.client_token")
            secrets.append(auth["client_token"])
            token_lease = float(auth.get("lease_duration") or 0)
        import hvac.exceptions

        if login is not None:
            steps.append(f"the read of {where}")
        try:
            read = client.secrets.kv.v2.read_secret_version(
                who.path, mount_point=rule.kv_mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            lookup.warn(
                f"{lookup.host}: no secret {rule.kv_mount}/{who.path} in Vault (or its latest version is "
                "deleted); pulling anonymously"
            )
            return Answer(credential=None)
        username, password = self._credential(lookup, rule, who, read)
        keep = goduration.parse_seconds(rule.secret_cache_duration)
        leases = [keep, token_lease, float(read.get("lease_duration") or 0)]
        keep = min(seconds for seconds in leases if seconds > 0) if any(s > 0 for s in leases) else 0.0
        return Answer(
            credential=Credential(username=username, password=password),
            cache_seconds=keep or None,
            cacheable=keep > 0,
            keep_seconds=keep or None,
        )

    @staticmethod
    def _credential(lookup: Lookup, rule: VaultRule, who: _Who, read: Any) -> tuple[str, str]:
        data = read.get("data") if isinstance(read, dict) else None
        fields = data.get("data") if isinstance(data, dict) else None
        metadata = data.get("metadata") if isinstance(data, dict) else None
        version = metadata.get("version") if isinstance(metadata, dict) else None
        where = f"{rule.kv_mount}/{who.path}"
        if not isinstance(fields, dict) or not isinstance(version, int):
            raise CredentialSourceError(f"{lookup.host}: Vault's answer for {where} is not a KV v2 secret")
        username, password = fields.get(rule.username_key), fields.get(rule.password_key)
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise CredentialSourceError(
                f"{lookup.host}: secret {where} (version {version}) has no string "
                f"{rule.username_key!r} and {rule.password_key!r}"
            )
        return username, password

    @staticmethod
    def _refused(
        lookup: Lookup, rule: VaultRule, who: _Who, exc: Exception, secrets: list[str], steps: list[str]
    ) -> str:
        """The error for an HTTP error answer from Vault to the last of ``steps``."""
        import hvac.exceptions

        errors = getattr(exc, "errors", None)
        detail = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors or "")
        status = type(exc).__name__
        step = steps[-1] if steps else f"the read of {rule.kv_mount}/{who.path}"
        if who.kind == "node" and who.role == "token" and isinstance(exc, hvac.exceptions.Forbidden):
            step += " (revoked or expired?)"
        # Vault's own trouble (5xx, 429) is not a refusal of who we are.
        unwell = (
            hvac.exceptions.InternalServerError,
            hvac.exceptions.VaultDown,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
            hvac.exceptions.UnexpectedError,
        )
        verb = "failed" if isinstance(exc, unwell) else "refused"
        return (
            f"{lookup.host}: Vault at {rule.address} {verb} ({status}) {step}: "
            f"{_scrub(detail, secrets) or 'no detail'}"
        )


def doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    """Whether Vault answers its health endpoint (unauthenticated) and the node's files exist."""
    import os

    assert isinstance(rule, VaultRule)
    findings: list[Finding] = []
    for name in ("ca_file", "node_role_id_file", "node_secret_id_file", "node_token_file"):
        value = getattr(rule, name)
        if value is not None and not os.path.isfile(value):
            findings.append(Finding("fail", f"{_camel(name)} {value} does not exist"))
    try:
        import hvac
        import requests

        client = hvac.Client(
            url=rule.address, token="", verify=rule.ca_file or True, timeout=max(1, int(timeout))
        )
        status = client.sys.read_health_status(method="GET")
        code = getattr(status, "status_code", 200)
        findings.append(Finding("ok" if code == 200 else "warn", f"Vault at {rule.address}: health {code}"))
    except ImportError:
        findings.append(Finding("fail", "hvac, the Vault client, is not in this build"))
    except (requests.exceptions.RequestException, hvac.exceptions.VaultError) as exc:
        findings.append(Finding("fail", f"Vault at {rule.address} did not answer: {type(exc).__name__}"))
    except OSError as exc:  # requests' word for a caFile it cannot use
        findings.append(Finding("fail", f"Vault at {rule.address} not asked: {_scrub(str(exc), [])}"))
    return findings


def unavailable(environ: Mapping[str, str]) -> str | None:
    """Why Vault cannot be asked from this build: hvac is missing (a trimmed build)."""
    import importlib.util

    return None if importlib.util.find_spec("hvac") else "hvac, the Vault client, is not in this build"


SPEC = BackendSpec(
    name="vault",
    title="HashiCorp Vault KV v2, with the pod's Kubernetes/JWT login or the node's AppRole",
    rule=VaultRule,
    backend=VaultBackend,
    doctor=doctor,
    check_rule=check_rule,
    token_annotations=lambda rule: tuple(getattr(rule, "role_annotations", ())),
    uses_token=True,
    unavailable=unavailable,
)
