"""The embedded configuration, used when no config file is given.

Known cloud registry hosts go to their cloud backends; every other image is looked up in the
node's docker config files. The globs use the kubelet's semantics (``*`` is one host label),
so each host shape is listed; the backends check the host precisely themselves.
"""

from __future__ import annotations

import os

from provider.config import API_VERSION, KIND, AcrRule, DockerConfigRule, EcrRule, GarRule, ProviderConfig

ECR_PRIVATE_SUFFIXES = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
)
ECR_DUALSTACK_SUFFIXES = ("on.aws", "on.amazonwebservices.com.cn")
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")

ECR_GLOBS = (
    *(f"*.dkr.{service}.*.{suffix}" for suffix in ECR_PRIVATE_SUFFIXES for service in ("ecr", "ecr-fips")),
    *(f"*.{kind}.*.{suffix}" for suffix in ECR_DUALSTACK_SUFFIXES for kind in ("dkr-ecr", "dkr-ecr-fips")),
    *ECR_PUBLIC_HOSTS,
)
GAR_GLOBS = ("gcr.io", "*.gcr.io", "*.pkg.dev", "container.cloud.google.com")
ACR_GLOBS = (
    *(f"*.azurecr.{tld}" for tld in ("io", "cn", "us")),
    *(f"*.*.geo.azurecr.{tld}" for tld in ("io", "cn", "us")),
)

DEFAULT_CONFIG = ProviderConfig(
    api_version=API_VERSION,
    kind=KIND,
    rules=[
        EcrRule(match=list(ECR_GLOBS)),
        GarRule(match=list(GAR_GLOBS)),
        AcrRule(match=list(ACR_GLOBS)),
        DockerConfigRule(),
    ],
)

# Installed as `ecr-credential-provider` (a copy or hard link: pex resolves symlinks), with no
# config named, the executable stands in for the upstream AWS plugin: every image it is sent
# goes to the ECR backend (upstream's env and annotation included), never to docker config files.
ECR_DROP_IN_NAME = "ecr-credential-provider"
ECR_DROP_IN_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "aws", "ecr-credential-provider.json")
