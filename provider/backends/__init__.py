"""The backends: one module each, listed once in ``BACKENDS``.

Each module exports ``SPEC`` (see ``provider.backends.base.BackendSpec``): its rule struct and
checks, its class, doctor probe, token-mode annotations, the hosts it claims in the embedded
default, and why it cannot run here. The config's rule union, the backend names, ``doctor``'s
probes, the embedded default and ``render``'s token annotations all derive from this table.

Adding a backend: write ``provider/backends/<name>.py`` with its ``SPEC``, add one line
below, and one subclass of the contract suite in ``tests/backend_contract.py``.

Importing a backend module is cheap (rule structs and host tables); its SDK is imported only
when a lookup needs it.
"""

from __future__ import annotations

from provider.backends import acr, anonymous, dockerconfig, ecr, files, gar, vault
from provider.backends.base import Answer, Backend, BackendSpec, Credential, Lookup, RuleBase
from provider.errors import BackendUnavailableError

__all__ = [
    "BACKENDS",
    "BY_NAME",
    "Answer",
    "Backend",
    "BackendSpec",
    "Credential",
    "Lookup",
    "RuleBase",
    "load_backend",
    "names",
]

# The embedded default config has a rule for each backend that claims hosts, in this order.
BACKENDS: tuple[BackendSpec, ...] = (
    dockerconfig.SPEC,
    anonymous.SPEC,
    ecr.SPEC,
    gar.SPEC,
    acr.SPEC,
    files.SPEC,
    vault.SPEC,
)
BY_NAME: dict[str, BackendSpec] = {spec.name: spec for spec in BACKENDS}


def names() -> tuple[str, ...]:
    """Every backend name a rule may carry."""
    return tuple(BY_NAME)


def built(name: str) -> bool:
    """Whether this build can answer with backend ``name``."""
    spec = BY_NAME.get(name)
    return spec is not None and spec.backend is not None


def load_backend(name: str) -> Backend:
    """An instance of the backend called ``name``; ``BackendUnavailableError`` if this build or
    this node cannot run it (the message says why)."""
    spec = BY_NAME.get(name)
    if spec is None:
        raise BackendUnavailableError(f"backend {name!r} is unknown (expected one of: {', '.join(BY_NAME)})")
    if spec.backend is None:
        raise BackendUnavailableError(
            f"backend {name!r} ({spec.title}) is not available in this build; "
            "serve these images with a 'dockerconfig' or 'anonymous' rule in the config for now"
        )
    return spec.backend()
