"""The ``acr`` backend: Azure Container Registry, through Entra identities. Named in configs and
routed by the embedded default; not built yet, so its rule answers nothing (``onNoIdentity:
next`` hands its images to the next rule)."""

from __future__ import annotations

from collections.abc import Mapping

from provider.backends.base import BackendSpec, CloudRule
from provider.backends.presence import IdentitySource, MetadataProbe, doctor_for

__all__ = ["ACR_GLOBS", "SPEC", "AcrRule"]

ACR_GLOBS = (
    *(f"*.azurecr.{tld}" for tld in ("io", "cn", "us")),
    *(f"*.*.geo.azurecr.{tld}" for tld in ("io", "cn", "us")),
)


class AcrRule(CloudRule, tag="acr", frozen=True):
    """Azure Container Registry, through Entra identities."""


def _imds(environ: Mapping[str, str]) -> MetadataProbe:
    base = environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or "http://169.254.169.254"
    return MetadataProbe(
        name="Azure IMDS",
        method="GET",
        url=base.rstrip("/") + "/metadata/instance?api-version=2021-02-01",
        headers={"Metadata": "true"},
        accept=lambda status, headers: status == 200,
    )


IDENTITY = IdentitySource(
    env=("IDENTITY_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"),
    files=lambda environ: ["/etc/kubernetes/azure.json"],
    metadata=_imds,
)

SPEC = BackendSpec(
    name="acr",
    title="Azure Container Registry",
    rule=AcrRule,
    backend=None,
    doctor=doctor_for(IDENTITY, "Azure"),
    token_annotations=lambda rule: (
        "kubernetes.azure.com/acr-client-id",
        "kubernetes.azure.com/acr-tenant-id",
        "azure.workload.identity/client-id",
        "azure.workload.identity/tenant-id",
    ),
    uses_token=True,
    default_globs=ACR_GLOBS,
)
