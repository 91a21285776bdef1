"""Which image hosts are AWS ECR registries, in which partition and region.

One anchored pattern per partition and host form, as data. A host is an ECR registry only if
it matches one exactly: look-alikes (``...amazonaws.com.evil.io``, 11- or 13-digit accounts, a
region of another partition under a suffix) match nothing, so no ECR token is ever made for
them. Standard library only and no I/O: ``EcrBackend.cache_key`` runs this before every cache
lookup.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "ACCOUNT",
    "ECR_PUBLIC_HOSTS",
    "ECR_PUBLIC_REGION",
    "PARTITIONS",
    "Partition",
    "RegistryHost",
    "is_region",
    "parse_host",
    "parse_role_arn",
    "partition_of_region",
    "partition_public",
]


class Partition(NamedTuple):
    """An AWS partition: its region names, the suffixes of its ECR hosts, whether ECR Public's
    API serves it."""

    name: str
    region: str  # a pattern for its region names
    suffixes: tuple[str, ...]  # <account>.dkr.ecr[-fips].<region>.<suffix>
    dualstack_suffixes: tuple[str, ...]  # <account>.dkr-ecr[-fips].<region>.<suffix>
    vpce_suffixes: tuple[str, ...]  # vpce-<id>.dkr.ecr.<region>.vpce.<suffix>
    ecr_public: bool


_REGION_TAIL = r"[a-z]+-[0-9]{1,2}"
PARTITIONS = (
    # The commercial partition's pattern excludes every other partition's region prefixes, so a
    # region belongs to exactly one partition.
    Partition(
        "aws",
        rf"(?!us-gov-|us-iso|cn-|eu-isoe-|eusc-)[a-z]{{2}}(?:-[a-z]+)*-{_REGION_TAIL}",
        ("amazonaws.com",),
        ("on.aws",),
        ("amazonaws.com",),
        True,
    ),
    Partition(
        "aws-us-gov", rf"us-gov-{_REGION_TAIL}", ("amazonaws.com",), ("on.aws",), ("amazonaws.com",), False
    ),
    Partition(
        "aws-cn",
        rf"cn-{_REGION_TAIL}",
        ("amazonaws.com.cn",),
        ("on.amazonwebservices.com.cn",),
        ("amazonaws.com.cn",),
        False,
    ),
    Partition("aws-eusc", rf"eusc-[a-z]+-{_REGION_TAIL}", ("amazonaws.eu",), (), (), False),
    Partition("aws-iso", rf"us-iso-{_REGION_TAIL}", ("c2s.ic.gov",), (), (), False),
    Partition("aws-iso-b", rf"us-isob-{_REGION_TAIL}", ("sc2s.sgov.gov",), (), (), False),
    Partition("aws-iso-e", rf"eu-isoe-{_REGION_TAIL}", ("cloud.adc-e.uk",), (), (), False),
    Partition("aws-iso-f", rf"us-isof-{_REGION_TAIL}", ("csp.hci.ic.gov",), (), (), False),
)

# ECR Public's API exists in us-east-1 of the commercial partition only.
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")
ECR_PUBLIC_REGION = "us-east-1"
ACCOUNT = "[0-9]{12}"
# Role names: IAM's own character set, paths included.
_ROLE_ARN = re.compile(r"arn:(?P<partition>aws(?:-[a-z]+)*):iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")


class RegistryHost(NamedTuple):
    """What an ECR host says about its registry. ``account`` is empty for ECR Public and for
    VPC endpoint names, which do not carry it."""

    partition: str
    region: str
    account: str
    fips: bool = False
    dualstack: bool = False
    public: bool = False


def _forms() -> list[tuple[Partition, re.Pattern[str], bool]]:
    """(partition, full-match pattern, dual-stack) for every host form of every partition."""
    forms = []
    for partition in PARTITIONS:
        region = f"(?P<region>{partition.region})"
        for suffix in partition.suffixes:
            pattern = rf"(?P<account>{ACCOUNT})\.dkr\.ecr(?P<fips>-fips)?\.{region}\.{re.escape(suffix)}"
            forms.append((partition, re.compile(pattern, re.ASCII), False))
        for suffix in partition.dualstack_suffixes:
            pattern = rf"(?P<account>{ACCOUNT})\.dkr-ecr(?P<fips>-fips)?\.{region}\.{re.escape(suffix)}"
            forms.append((partition, re.compile(pattern, re.ASCII), True))
        for suffix in partition.vpce_suffixes:
            pattern = rf"vpce-[0-9a-z]+(?:-[0-9a-z]+)*\.dkr\.ecr\.{region}\.vpce\.{re.escape(suffix)}"
            forms.append((partition, re.compile(pattern, re.ASCII), False))
    return forms


_FORMS = _forms()
_REGIONS = [(partition.name, re.compile(partition.region, re.ASCII)) for partition in PARTITIONS]


def parse_host(host: str) -> RegistryHost | None:
    """The registry behind an image host (``host`` or ``host:443``), or None if it is not ECR."""
    name, colon, port = host.partition(":")
    if colon and port != "443":
        return None
    if name in ECR_PUBLIC_HOSTS:
        return RegistryHost("aws", ECR_PUBLIC_REGION, "", public=True)
    for partition, pattern, dualstack in _FORMS:
        found = pattern.fullmatch(name)
        if found is not None:
            groups = found.groupdict()
            return RegistryHost(
                partition.name,
                groups["region"],
                groups.get("account") or "",
                fips=bool(groups.get("fips")),
                dualstack=dualstack,
            )
    return None


def partition_of_region(region: str) -> str | None:
    """The partition a region name belongs to, or None if it is not a region name."""
    for name, pattern in _REGIONS:
        if pattern.fullmatch(region):
            return name
    return None


def is_region(region: str) -> bool:
    return partition_of_region(region) is not None


def parse_role_arn(arn: str) -> str | None:
    """The partition of an IAM role ARN, or None if ``arn`` is not one."""
    found = _ROLE_ARN.fullmatch(arn)
    return found.group("partition") if found else None


def partition_public(partition: str) -> bool:
    """Whether ECR Public's API serves callers of ``partition``."""
    return any(p.name == partition and p.ecr_public for p in PARTITIONS)
