"""The kubelet's credential provider wire documents, for all three API versions.

The request is decoded leniently (the kubelet adds fields over time); the response is built
from structs that hold exactly the fields the kubelet's strict decoder accepts, and is always
rendered with the request's own apiVersion. Field names mirror
``k8s.io/kubelet/pkg/apis/credentialprovider/{v1,v1beta1,v1alpha1}``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from provider.errors import RequestError
from provider.protocol import API_VERSIONS, MAX_REQUEST_BYTES, REQUEST_KIND

__all__ = [
    "API_VERSIONS",
    "MAX_REQUEST_BYTES",
    "AuthConfig",
    "CacheKeyType",
    "CredentialProviderRequest",
    "CredentialProviderResponse",
    "decode_request",
    "decode_response",
    "encode_response",
    "request_bytes",
]


CacheKeyType = Literal["Image", "Registry", "Global"]


class CredentialProviderRequest(msgspec.Struct, rename="camel"):
    """What the kubelet sends: the image (normalized, no tag or digest) and, in token mode, the pod's
    service account token and the configured annotations of its ServiceAccount."""

    api_version: str = ""
    kind: str = ""
    image: str = ""
    service_account_token: str = ""
    service_account_annotations: dict[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        token = "<redacted>" if self.service_account_token else "''"
        return (
            f"CredentialProviderRequest(api_version={self.api_version!r}, image={self.image!r}, "
            f"service_account_token={token}, "
            f"service_account_annotations={self.service_account_annotations!r})"
        )


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One credential; the kubelet accepts these two fields and nothing else."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"AuthConfig(username={self.username!r}, password=<redacted>)"


class CredentialProviderResponse(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """What we print: ``cacheDuration`` is a Go duration string, ``auth`` maps kubelet-glob keys."""

    api_version: str
    kind: str
    cache_key_type: CacheKeyType
    cache_duration: str
    auth: dict[str, AuthConfig]


_request_decoder = msgspec.json.Decoder(CredentialProviderRequest)
_encoder = msgspec.json.Encoder()


def decode_request(data: bytes) -> CredentialProviderRequest:
    """Decode and check one request from the kubelet (or an operator); ``RequestError`` if unusable."""
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"request on stdin is larger than {MAX_REQUEST_BYTES} bytes; is this a kubelet?")
    if not data.strip():
        raise RequestError("no CredentialProviderRequest on stdin (expected one JSON document)")
    try:
        request = _request_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid CredentialProviderRequest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(f"stdin is not a JSON CredentialProviderRequest: {exc}") from None
    except UnicodeDecodeError:  # msgspec's error for invalid UTF-8 inside a JSON string
        raise RequestError("stdin is not a JSON CredentialProviderRequest: a string is not UTF-8") from None
    except RecursionError:  # msgspec's error for arrays or objects nested thousands deep
        raise RequestError("stdin is not a JSON CredentialProviderRequest: nested too deeply") from None
    if request.service_account_token:
        from provider.redact import register

        register(request.service_account_token)
    if request.kind != REQUEST_KIND:
        raise RequestError(f"unexpected kind {request.kind!r} on stdin, expected {REQUEST_KIND!r}")
    if request.api_version not in API_VERSIONS:
        raise RequestError(
            f"unsupported apiVersion {request.api_version!r}, expected one of: {', '.join(API_VERSIONS)}"
        )
    if not request.image:
        raise RequestError("the request has no image")
    if any(c.isspace() for c in request.image):
        raise RequestError(f"image {request.image!r} contains whitespace")
    return request


def encode_response(response: CredentialProviderResponse) -> bytes:
    """The response as one line of JSON, the way the kubelet reads it."""
    return _encoder.encode(response) + b"\n"


_response_decoder = msgspec.json.Decoder(CredentialProviderResponse)


def decode_response(data: bytes) -> CredentialProviderResponse:
    """A response we printed, read back strictly (for the operator commands)."""
    return _response_decoder.decode(data)


def request_bytes(
    api_version: str, image: str, token: str = "", annotations: dict[str, str] | None = None
) -> bytes:
    """A request as the kubelet writes it: the token and annotations only in token mode."""
    document: dict[str, object] = {"kind": REQUEST_KIND, "apiVersion": api_version, "image": image}
    if token:
        document["serviceAccountToken"] = token
        document["serviceAccountAnnotations"] = annotations or {}
    elif annotations:
        document["serviceAccountAnnotations"] = annotations
    return _encoder.encode(document) + b"\n"
