"""The ``gar`` backend: Google Artifact Registry and Container Registry, through Google
identities. Named in configs and routed by the embedded default; not built yet, so its rule
answers nothing (``onNoIdentity: next`` hands its images to the next rule)."""

from __future__ import annotations

from collections.abc import Mapping

from provider.backends.base import BackendSpec, CloudRule
from provider.backends.presence import IdentitySource, MetadataProbe, doctor_for

__all__ = ["GAR_GLOBS", "SPEC", "GarRule"]

GAR_GLOBS = ("gcr.io", "*.gcr.io", "*.pkg.dev", "container.cloud.google.com")
METADATA_HOST = "metadata.google.internal"


class GarRule(CloudRule, tag="gar", frozen=True):
    """Google Artifact Registry and Container Registry, through Google identities."""


def _metadata(environ: Mapping[str, str]) -> MetadataProbe:
    host = environ.get("GCE_METADATA_HOST") or environ.get("GCE_METADATA_IP") or METADATA_HOST
    return MetadataProbe(
        name="GCE metadata server",
        method="GET",
        url=f"http://{host}/computeMetadata/v1/instance/service-accounts/",
        headers={"Metadata-Flavor": "Google"},
        accept=lambda status, headers: headers.get("metadata-flavor") == "Google",
    )


IDENTITY = IdentitySource(
    env=(),
    files=lambda environ: [environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")],
    metadata=_metadata,
)

SPEC = BackendSpec(
    name="gar",
    title="Google Artifact Registry and GCR",
    rule=GarRule,
    backend=None,
    doctor=doctor_for(IDENTITY, "Google Cloud"),
    token_annotations=lambda rule: ("iam.gke.io/gcp-service-account", "iam.gke.io/enable-wi-image-pull"),
    uses_token=True,
    default_globs=GAR_GLOBS,
)
