"""The backends, one module each, looked up by the ``backend`` name a rule carries.

The table holds module paths, not modules: a backend's module (and its SDK) is imported only
when a rule selects it.
"""

from __future__ import annotations

import importlib

from provider.backends.base import Answer, Backend, Credential, Lookup
from provider.errors import BackendUnavailableError

__all__ = ["AVAILABLE", "PLANNED", "Answer", "Backend", "Credential", "Lookup", "load_backend"]

# backend name -> "module:Class"
AVAILABLE = {
    "dockerconfig": "provider.backends.dockerconfig:DockerConfigBackend",
    "anonymous": "provider.backends.anonymous:AnonymousBackend",
    "ecr": "provider.backends.ecr:EcrBackend",
}
# Named in configs (and the embedded default) but not built yet.
PLANNED = {
    "gar": "Google Artifact Registry / GCR",
    "acr": "Azure Container Registry",
}


def load_backend(name: str) -> Backend:
    """An instance of the backend called ``name``; ``BackendUnavailableError`` if this build lacks it."""
    target = AVAILABLE.get(name)
    if target is None:
        what = PLANNED.get(name, "unknown")
        raise BackendUnavailableError(
            f"backend {name!r} ({what}) is not available in this build; "
            "serve these images with a 'dockerconfig' or 'anonymous' rule in the config for now"
        )
    module_name, _, class_name = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), class_name)()
    return backend
