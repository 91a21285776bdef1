"""The ``acr-credential-provider`` command line, as AKS's kubelet config invokes the upstream
plugin: ``acr-credential-provider <azure.json> [--registry-mirror=src:dst,...]``.

Installed under that name, with no config named, the executable answers every image with the
``acr`` backend (the bundled ``acr-credential-provider.json``); the cloud config's path and the
mirrors reach the rule through ``REGISTRY_CREDENTIAL_PROVIDER_AZURE_CONFIG`` and
``REGISTRY_CREDENTIAL_PROVIDER_ACR_MIRRORS``. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

__all__ = ["ACR_DROP_IN_CONFIG_FILE", "ACR_DROP_IN_NAME", "translate"]

ACR_DROP_IN_NAME = "acr-credential-provider"
ACR_DROP_IN_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "acr-credential-provider.json")
AZURE_CONFIG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_AZURE_CONFIG"  # as provider.backends.acr reads them
MIRRORS_ENV = "REGISTRY_CREDENTIAL_PROVIDER_ACR_MIRRORS"
CONFIG_ENV = "REGISTRY_CREDENTIAL_PROVIDER_CONFIG"


def translate(words: Sequence[str], environ: MutableMapping[str, str]) -> list[str]:
    """Our command line for the upstream one in ``words``: the cloud config path (its one
    positional argument) and ``--registry-mirror`` go into ``environ``; ``--config`` names the
    bundled ACR config unless one is configured. Anything else is passed on unchanged (and our
    parser reports what it does not know)."""
    rest: list[str] = []
    mirrors: list[str] = []
    remaining = list(words)
    while remaining:
        word = remaining.pop(0)
        name, equals, value = word.partition("=")
        if name == "--registry-mirror":
            if not equals and remaining:
                value = remaining.pop(0)
            mirrors += [pair.strip() for pair in value.split(",") if pair.strip()]
        elif not word.startswith("-") and word != "get-credentials" and AZURE_CONFIG_ENV not in environ:
            environ[AZURE_CONFIG_ENV] = word
        else:
            rest.append(word)
    if mirrors:
        environ[MIRRORS_ENV] = ",".join(mirrors)
    if not environ.get(CONFIG_ENV) and "--config" not in [w.partition("=")[0] for w in rest]:
        rest += ["--config", ACR_DROP_IN_CONFIG_FILE]
    return rest
