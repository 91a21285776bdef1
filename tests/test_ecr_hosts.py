"""ECR host parsing: every partition and form, and the hostile look-alikes that must match nothing.

A look-alike that parsed would get a real ECR token, which the kubelet then hands to the
runtime for that host: these tables are the backend's first line of defence.
"""

from __future__ import annotations

import pytest

from provider.aws.hosts import (
    ECR_PUBLIC_HOSTS,
    PARTITIONS,
    RegistryHost,
    parse_host,
    parse_role_arn,
    partition_of_region,
    partition_public,
)
from provider.defaults import ECR_GLOBS
from provider.matching import urls_match

A = "123456789012"

ECR_HOSTS = [
    # commercial
    (f"{A}.dkr.ecr.us-east-1.amazonaws.com", RegistryHost("aws", "us-east-1", A)),
    (f"{A}.dkr.ecr.ap-southeast-7.amazonaws.com", RegistryHost("aws", "ap-southeast-7", A)),
    (f"{A}.dkr.ecr.mx-central-1.amazonaws.com", RegistryHost("aws", "mx-central-1", A)),
    (f"{A}.dkr.ecr-fips.us-east-2.amazonaws.com", RegistryHost("aws", "us-east-2", A, fips=True)),
    (f"{A}.dkr-ecr.eu-west-1.on.aws", RegistryHost("aws", "eu-west-1", A, dualstack=True)),
    (f"{A}.dkr-ecr-fips.us-west-2.on.aws", RegistryHost("aws", "us-west-2", A, fips=True, dualstack=True)),
    (f"{A}.dkr.ecr.us-east-1.amazonaws.com:443", RegistryHost("aws", "us-east-1", A)),
    # GovCloud
    (f"{A}.dkr.ecr.us-gov-west-1.amazonaws.com", RegistryHost("aws-us-gov", "us-gov-west-1", A)),
    (
        f"{A}.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
        RegistryHost("aws-us-gov", "us-gov-east-1", A, fips=True),
    ),
    (f"{A}.dkr-ecr.us-gov-west-1.on.aws", RegistryHost("aws-us-gov", "us-gov-west-1", A, dualstack=True)),
    # China
    (f"{A}.dkr.ecr.cn-north-1.amazonaws.com.cn", RegistryHost("aws-cn", "cn-north-1", A)),
    (
        f"{A}.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
        RegistryHost("aws-cn", "cn-northwest-1", A, dualstack=True),
    ),
    # European Sovereign Cloud
    (f"{A}.dkr.ecr.eusc-de-east-1.amazonaws.eu", RegistryHost("aws-eusc", "eusc-de-east-1", A)),
    # isolated partitions
    (f"{A}.dkr.ecr.us-iso-east-1.c2s.ic.gov", RegistryHost("aws-iso", "us-iso-east-1", A)),
    (f"{A}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", RegistryHost("aws-iso-b", "us-isob-east-1", A)),
    (f"{A}.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", RegistryHost("aws-iso-e", "eu-isoe-west-1", A)),
    (f"{A}.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", RegistryHost("aws-iso-f", "us-isof-south-1", A)),
    # VPC interface endpoint names: no account in them
    (
        "vpce-0a1b2c3d4e5f60718-abcdefgh.dkr.ecr.us-east-1.vpce.amazonaws.com",
        RegistryHost("aws", "us-east-1", ""),
    ),
    ("vpce-0a1b2c3d-us-east-1a.dkr.ecr.us-east-1.vpce.amazonaws.com", RegistryHost("aws", "us-east-1", "")),
    ("vpce-0a1b2c3d.dkr.ecr.cn-north-1.vpce.amazonaws.com.cn", RegistryHost("aws-cn", "cn-north-1", "")),
    # ECR Public, through us-east-1
    ("public.ecr.aws", RegistryHost("aws", "us-east-1", "", public=True)),
    ("ecr-public.aws.com", RegistryHost("aws", "us-east-1", "", public=True)),
]

LOOK_ALIKES = [
    f"{A}.dkr.ecr.us-east-1.amazonaws.com.evil.io",  # a suffix after the real one
    f"{A}.dkr.ecr.us-east-1.amazonaws.com.cn.evil.io",
    f"{A}.dkr.ecr.us-east-1.amazonaws.comm",
    f"{A}.dkr.ecr.us-east-1.amazonaws.co",
    f"{A}.dkr.ecr.us-east-1.amazonaws.com.",  # a trailing dot is another name to the kubelet
    f"{A}.dkr.ecr.us-east-1.amazonaws.com\n",
    f"evil.io/{A}.dkr.ecr.us-east-1.amazonaws.com",
    f"evil-{A}.dkr.ecr.us-east-1.amazonaws.com",
    f"x.{A}.dkr.ecr.us-east-1.amazonaws.com",
    f"{A}.dkr.ecr.us-east-1.amazonaws.com:5000",  # ECR serves 443 only
    f"{A}.dkr.ecr.us-east-1.amazonaws.com:",
    f"{A}.dkr.ecr.us-east-1.evilamazonaws.com",
    f"{A}.dkrxecr.us-east-1.amazonaws.com",
    f"{A}.dkr.ecr.us-east-1-amazonaws.com",
    f"{A}.dkr.ecr.us.east.1.amazonaws.com",
    f"{A}.dkr.ecr..amazonaws.com",
    f"{A}.dkr.ecr.amazonaws.com",
    f"{A}.dkr-ecr.us-east-1.amazonaws.com",  # dual-stack names live under on.aws
    f"{A}.dkr.ecr.us-east-1.on.aws",
    f"{A}.dkr.ecr-fips.us-east-1.on.aws",
    f"{A}.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
    "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # 11 digits
    "1234567890123.dkr.ecr.us-east-1.amazonaws.com",  # 13 digits
    "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
    "١٢٣٤٥٦٧٨٩٠١٢.dkr.ecr.us-east-1.amazonaws.com",  # Arabic-Indic digits
    f"{A}.dkr.ecr.us-east-1.amazonaws.com.cn",  # a commercial region under the China suffix
    f"{A}.dkr.ecr.cn-north-1.amazonaws.com",  # and the other way round
    f"{A}.dkr.ecr.us-gov-west-1.amazonaws.com.cn",
    f"{A}.dkr.ecr.us-iso-east-1.sc2s.sgov.gov",
    f"{A}.dkr.ecr.us-east-1.c2s.ic.gov",
    f"{A}.dkr.ecr.eu-west-1.amazonaws.eu",
    "vpce-0a1b2c3d.dkr.ecr.us-east-1.vpce.amazonaws.com.evil.io",
    "vpce-.dkr.ecr.us-east-1.vpce.amazonaws.com",
    "vpce-0a1b2c3d.dkr.ecr.us-east-1.amazonaws.com",
    "public.ecr.aws.evil.io",
    "public.ecr.aws:5000",
    "evilpublic.ecr.aws",
    "x.public.ecr.aws",
    "ecr-public.aws.com.evil.io",
    "docker.io",
    "",
]


@pytest.mark.parametrize(("host", "expected"), ECR_HOSTS, ids=[h for h, _ in ECR_HOSTS])
def test_ecr_hosts_parse(host: str, expected: RegistryHost) -> None:
    assert parse_host(host) == expected


@pytest.mark.parametrize("host", LOOK_ALIKES, ids=repr)
def test_look_alikes_are_not_ecr(host: str) -> None:
    assert parse_host(host) is None


# VPC endpoint names need a rule of their own; ``:443`` is another host to the kubelet's globs.
DEFAULT_ROUTED = [host for host, _ in ECR_HOSTS if not host.startswith("vpce-") and not host.endswith(":443")]


@pytest.mark.parametrize("host", DEFAULT_ROUTED)
def test_embedded_default_routes_every_private_and_public_form_to_ecr(host: str) -> None:
    assert any(urls_match(glob, f"{host}/app") for glob in ECR_GLOBS)


def test_every_partition_has_a_region_pattern_that_only_it_matches() -> None:
    samples = {
        "aws": "eu-central-2",
        "aws-us-gov": "us-gov-east-1",
        "aws-cn": "cn-northwest-1",
        "aws-eusc": "eusc-de-east-1",
        "aws-iso": "us-iso-west-1",
        "aws-iso-b": "us-isob-east-1",
        "aws-iso-e": "eu-isoe-west-1",
        "aws-iso-f": "us-isof-east-1",
    }
    assert sorted(samples) == sorted(p.name for p in PARTITIONS)
    for partition, region in samples.items():
        assert partition_of_region(region) == partition
    for not_a_region in ("us-east", "useast1", "us-east-1a", "US-EAST-1", "us-east-1\n", "", "us--1"):
        assert partition_of_region(not_a_region) is None


def test_only_the_commercial_partition_has_ecr_public() -> None:
    assert [p.name for p in PARTITIONS if partition_public(p.name)] == ["aws"]
    assert set(ECR_PUBLIC_HOSTS) == {"public.ecr.aws", "ecr-public.aws.com"}


@pytest.mark.parametrize(
    ("arn", "partition"),
    [
        ("arn:aws:iam::123456789012:role/puller", "aws"),
        ("arn:aws:iam::123456789012:role/team/a/puller+x=y,z.w@q_r-s", "aws"),
        ("arn:aws-cn:iam::123456789012:role/puller", "aws-cn"),
        ("arn:aws-us-gov:iam::123456789012:role/puller", "aws-us-gov"),
        ("arn:aws-iso-b:iam::123456789012:role/puller", "aws-iso-b"),
        ("arn:aws:iam::123456789012:user/someone", None),
        ("arn:aws:iam::12345678901:role/puller", None),
        ("arn:aws:iam::123456789012:role/", None),
        ("arn:aws:sts::123456789012:assumed-role/puller/s", None),
        ("puller", None),
        ("arn:aws:iam::123456789012:role/puller\n", None),
    ],
)
def test_role_arns(arn: str, partition: str | None) -> None:
    assert parse_role_arn(arn) == partition
