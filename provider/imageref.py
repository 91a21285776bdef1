"""Image references the way the kubelet reads them before it asks a credential provider.

The kubelet parses a pod's ``image`` with the docker reference grammar
(``github.com/distribution/reference``, ``ParseNormalizedNamed``) and sends the repository
only: no tag, no digest, ``docker.io`` for Docker Hub and ``library/`` for its official
images. So ``nginx:1.27`` arrives as ``docker.io/library/nginx`` and
``reg:5000/a/b@sha256:...`` as ``reg:5000/a/b``. The operator commands use this to build
exactly the request the kubelet would.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["DOCKER_HUB", "ImageRef", "ImageRefError", "normalize", "registry_endpoint"]

DOCKER_HUB = "docker.io"
_LEGACY_DOCKER_HUB = "index.docker.io"
# Docker Hub's registry API does not live at docker.io itself.
_DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_OFFICIAL_PREFIX = "library/"
_NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_HEX_ID = re.compile(r"[a-f0-9]{64}")
# The digest algorithms the reference library accepts, and their hex lengths.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class ImageRefError(ValueError):
    """Not an image reference the kubelet would accept (it would not even try to pull)."""


class ImageRef(NamedTuple):
    """A parsed reference: ``repository`` is what the kubelet sends as ``image``."""

    repository: str
    tag: str
    digest: str

    @property
    def host(self) -> str:
        """``host[:port]`` (``docker.io`` for Docker Hub)."""
        return self.repository.partition("/")[0]

    @property
    def path(self) -> str:
        """The repository without its host: ``library/nginx``, ``team/app``."""
        return self.repository.partition("/")[2]

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"


def _split_domain(name: str) -> tuple[str, str]:
    """The registry and the rest, as ``splitDockerDomain`` decides them."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DOCKER_HUB, _OFFICIAL_PREFIX + name
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DOCKER_HUB, name
    if domain == _LEGACY_DOCKER_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def normalize(reference: str) -> ImageRef:
    """Parse ``reference`` (``nginx``, ``reg:5000/a/b:v1``, ``x.io/y@sha256:...``) as the kubelet does."""
    if not reference:
        raise ImageRefError("invalid reference format: empty image reference")
    if _HEX_ID.fullmatch(reference):
        raise ImageRefError(
            f"invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(reference)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise ImageRefError(f"invalid reference format: repository name ({remote}) must be lowercase")
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise ImageRefError(f"invalid reference format: {reference!r}")
    name, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(name) > _NAME_MAX:
        raise ImageRefError(
            f"invalid reference format: repository name must not be more than {_NAME_MAX} characters"
        )
    if digest:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm not in _DIGEST_LENGTHS:
            raise ImageRefError(f"unsupported digest algorithm {algorithm!r}")
        if len(hex_digest) != _DIGEST_LENGTHS[algorithm] or not re.fullmatch("[a-f0-9]+", hex_digest):
            raise ImageRefError("invalid checksum digest format")
    return ImageRef(repository=name, tag=tag, digest=digest)


def registry_endpoint(host: str) -> str:
    """Where a registry's API answers: Docker Hub's is ``registry-1.docker.io``."""
    return _DOCKER_HUB_ENDPOINT if host == DOCKER_HUB else host
