"""The kubelet protocol's fixed names and limits, with no dependencies (the fast path uses them)."""

from __future__ import annotations

API_VERSIONS = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
)
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"

# A request is an image name plus at most a service account token and a few annotations: a
# few KiB. Anything near this size is not from a kubelet.
MAX_REQUEST_BYTES = 1024 * 1024

# The kubelet kills a plugin at 60 s; our own deadline stays below, leaving time to read our
# error. The default is what a call gets unless the config or --timeout says otherwise.
MAX_TIMEOUT_SECONDS = 55.0
DEFAULT_TIMEOUT_SECONDS = 30.0


def parse_timeout(value: str) -> float:
    """``--timeout``'s value in seconds; ``ValueError`` with the message for the operator."""
    from provider import goduration

    try:
        seconds = goduration.parse_seconds(value)
    except ValueError:
        raise ValueError(f"--timeout: expected a Go duration like '30s', got {value!r}") from None
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(
            f"--timeout: expected more than 0s and at most {MAX_TIMEOUT_SECONDS:g}s, got {value!r}"
        )
    return seconds
