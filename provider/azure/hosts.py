"""Which image hosts are Azure Container Registry login servers, and the Azure clouds.

A host is an ACR login server only if it matches exactly: ``<name>.<suffix>``, a name with one
domain-name-label hash (``<name>-<hash>.<suffix>``), or a geo-replica endpoint
(``<name>.<region>.geo.<suffix>``), where ``<suffix>`` is a cloud's registry suffix or one the
rule adds. Look-alikes (``team.azurecr.io.evil.example``, ``a.b.azurecr.io``, an odd port)
match nothing, so no Entra token is ever asked for them. Standard library only, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["CLOUDS", "DEFAULT_CLOUD", "SCOPE", "Cloud", "cloud_named", "is_login_server", "is_suffix"]

# The Entra scope of ACR's data plane (the ARM audience breaks registries that disable it).
SCOPE = "https://containerregistry.azure.net/.default"


class Cloud(NamedTuple):
    """An Azure cloud: its registry suffix and its Entra authority host."""

    name: str
    suffix: str
    authority: str


CLOUDS: dict[str, Cloud] = {
    cloud.name.lower(): cloud
    for cloud in (
        Cloud("AzurePublicCloud", "azurecr.io", "login.microsoftonline.com"),
        Cloud("AzureChinaCloud", "azurecr.cn", "login.chinacloudapi.cn"),
        Cloud("AzureUSGovernmentCloud", "azurecr.us", "login.microsoftonline.us"),
    )
}
DEFAULT_CLOUD = CLOUDS["azurepubliccloud"]
KNOWN_SUFFIXES = tuple(cloud.suffix for cloud in CLOUDS.values())

# Registry names: letters and digits (Azure creates 5-50; shorter ones are still under
# Microsoft's domain, so they are taken rather than refused); a domain name label adds "-<hash>".
_NAME = r"[a-z0-9]{1,50}(?:-[a-z0-9]{1,16})?"
_REGION = r"[a-z0-9]{2,40}"
_SUFFIX = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def cloud_named(name: str) -> Cloud | None:
    """The cloud called ``name`` as azure.json spells it (case-insensitive), or None."""
    return CLOUDS.get(name.strip().lower())


def is_suffix(suffix: str) -> bool:
    """Whether ``suffix`` is a DNS name a registry suffix could be (``azurecr.example.gov``)."""
    return _SUFFIX.fullmatch(suffix) is not None


def is_login_server(host: str, extra_suffixes: Iterable[str] = ()) -> bool:
    """Whether ``host`` (``host[:port]`` as the kubelet parses it) is an ACR login server under a
    known suffix or one of ``extra_suffixes``. Only port 443, written or not, is allowed."""
    name, colon, port = host.lower().partition(":")
    if colon and port != "443":
        return False
    for suffix in (*KNOWN_SUFFIXES, *(s.lower() for s in extra_suffixes)):
        escaped = re.escape(suffix)
        if re.fullmatch(rf"{_NAME}\.(?:{_REGION}\.geo\.)?{escaped}", name):
            return True
    return False
