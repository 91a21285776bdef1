"""The embedded configuration, used when no config file is given.

Derived from the backends' table: each backend that claims hosts gets a rule for them, in the
table's order, with ``onNoIdentity: next``, so that on a node of another cloud (or none) its
images fall through to the last rule, the node's docker config files, which answers every other
image too. The globs use the kubelet's semantics (``*`` is one host label), so each host shape
is listed; the backends check the host precisely themselves.
"""

from __future__ import annotations

import os

from provider.backends import BACKENDS
from provider.backends.acr import ACR_GLOBS
from provider.backends.base import CloudRule, RuleBase
from provider.backends.dockerconfig import DockerConfigRule
from provider.backends.ecr import ECR_GLOBS
from provider.backends.gar import GAR_DROP_IN_NAME, GAR_GLOBS
from provider.config import API_VERSION, KIND, ProviderConfig

__all__ = [
    "ACR_GLOBS",
    "DEFAULT_CONFIG",
    "ECR_DROP_IN_CONFIG_FILE",
    "ECR_DROP_IN_NAME",
    "ECR_GLOBS",
    "GAR_DROP_IN_CONFIG_FILE",
    "GAR_DROP_IN_NAME",
    "GAR_GLOBS",
]


def _host_rule(rule_type: type[RuleBase], globs: tuple[str, ...]) -> RuleBase:
    if issubclass(rule_type, CloudRule):
        return rule_type(match=list(globs), on_no_identity="next")
    return rule_type(match=list(globs))


DEFAULT_CONFIG = ProviderConfig(
    api_version=API_VERSION,
    kind=KIND,
    rules=[
        *(_host_rule(spec.rule, spec.default_globs) for spec in BACKENDS if spec.default_globs),
        DockerConfigRule(),
    ],
)

# Installed as `ecr-credential-provider` (a copy or hard link: pex resolves symlinks), with no
# config named, the executable stands in for the upstream AWS plugin: every image it is sent
# goes to the ECR backend (upstream's env and annotation included), never to docker config files.
ECR_DROP_IN_NAME = "ecr-credential-provider"
ECR_DROP_IN_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "aws", "ecr-credential-provider.json")

# Installed as `auth-provider-gcp`, it stands in for the upstream GKE plugin the same way: every
# image goes to the gar backend (Google's hosts only, checked strictly).
GAR_DROP_IN_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "google", "auth-provider-gcp.json")
DROP_IN_CONFIG_FILES = {ECR_DROP_IN_NAME: ECR_DROP_IN_CONFIG_FILE, GAR_DROP_IN_NAME: GAR_DROP_IN_CONFIG_FILE}
