"""Errors the plugin reports, each with one actionable line for the operator.

Every message is safe to print: no password, token or service account token is ever put
into one. Third-party exceptions are mapped at the boundary (``raise X(...) from exc``),
and only the CLI (``provider.__main__``) turns them into stderr and an exit code.

    ProviderError                      anything that makes the plugin exit 1
    ├── RequestError                   stdin is not a request we can answer
    ├── ConfigError                    our config file is missing, unreadable or invalid
    ├── BackendUnavailableError        a rule names a backend this build does not have
    ├── CredentialSourceError          a credential source failed
    │   ├── DockerConfigFileError      a docker/podman auth file is unreadable or invalid
    │   ├── CredentialHelperError      a docker-credential-* helper is missing, failed or hung
    │   └── CloudCredentialError       a cloud identity or token API refused, failed or was unreachable
    │       └── NoIdentityError        this node has no identity in that cloud at all (not on it)
    ├── ResponseError                  we were about to print a response the kubelet would reject
    └── DeadlineExceededError          the whole call ran past its deadline
"""

from __future__ import annotations


class ProviderError(Exception):
    """A failure the operator can act on; ``str(error)`` is one line, free of secrets."""


class RequestError(ProviderError):
    """The CredentialProviderRequest on stdin is malformed or of an unknown version."""


class ConfigError(ProviderError):
    """Our own configuration (not the kubelet's) cannot be used."""


class BackendUnavailableError(ProviderError):
    """A rule selected a backend that this build does not provide (yet)."""


class CredentialSourceError(ProviderError):
    """A backend's source of credentials failed."""


class DockerConfigFileError(CredentialSourceError):
    """A docker ``config.json`` or containers ``auth.json`` cannot be read or parsed."""


class CredentialHelperError(CredentialSourceError):
    """A docker credential helper is missing, exited non-zero, timed out or answered garbage."""


class CloudCredentialError(CredentialSourceError):
    """A cloud backend could not get a registry token: no identity, a refused or throttled call,
    an unreachable endpoint, or an image host that is not the cloud's registry."""


class NoIdentityError(CloudCredentialError):
    """This node has no identity in the backend's cloud (it runs elsewhere, or none is set up):
    found out quickly, so a rule with ``onNoIdentity: next`` can hand over to the next rule."""


class ResponseError(ProviderError):
    """Our response would break the kubelet's rules; raised instead of printing it."""


class DeadlineExceededError(ProviderError):
    """The call did not finish within its deadline (the kubelet kills plugins at 60 s)."""
