"""The kubelet's matching rules (KUBELET.md "Matching"), case by case.

Each row is (glob, image, expected) with the reason as its id; the expected values follow
``URLsMatchStr`` in the kubelet's keyring.go, Go's url.Parse, net.SplitHostPort and
filepath.Match.
"""

from __future__ import annotations

import pytest

from provider.matching import BadURLError, go_path_match, parse_schemeless, split_host_port, urls_match

CASES = [
    # host labels and `*`
    ("registry.example.com", "registry.example.com/app", True, "exact host"),
    ("*.example.com", "registry.example.com/app", True, "star is one label"),
    ("*.example.com", "a.registry.example.com/app", False, "star never spans two labels"),
    ("*.io", "a.b.io/x", False, "label counts differ"),
    ("*.*.io", "a.b.io/x", True, "two stars, two labels"),
    ("*", "localhost/x", True, "bare star matches a single-label host"),
    ("*", "registry.example.com/x", False, "bare star does not match a dotted host"),
    ("reg*.example.com", "registry.example.com/x", True, "star inside a label"),
    ("*istry.example.com", "registry.example.com/x", True, "leading star inside a label"),
    ("r*y.example.com", "registry.example.com/x", True, "star between characters"),
    ("r*z.example.com", "registry.example.com/x", False, "star but wrong tail"),
    ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", True, "ecr glob"),
    (
        "*.dkr.ecr.*.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app",
        False,
        "cn has one more label",
    ),
    # look-alikes
    ("registry.example.com", "registry.example.com.evil.io/x", False, "suffix look-alike"),
    ("registry.example.com", "evil-registry.example.com/x", False, "prefix look-alike"),
    ("*.example.com", "registry.example.com.evil.io/x", False, "glob suffix look-alike"),
    ("registry.example.com", "registryXexample.com/x", False, "dot is literal"),
    # case
    ("Registry.Example.com", "registry.example.com/x", False, "case-sensitive host"),
    ("registry.example.com/Team", "registry.example.com/team/x", False, "case-sensitive path"),
    # ports
    ("registry.example.com:5000", "registry.example.com:5000/x", True, "same port"),
    ("registry.example.com", "registry.example.com:5000/x", False, "glob without port, image with port"),
    ("registry.example.com:5000", "registry.example.com/x", False, "glob with port, image without"),
    ("registry.example.com:443", "registry.example.com/x", False, "no port is not :443"),
    ("registry.example.com:5000", "registry.example.com:50000/x", False, "port strings differ"),
    ("*.example.com:5000", "registry.example.com:5000/x", True, "glob host with port"),
    ("registry.example.com:*", "registry.example.com:5000/x", False, "no globs in ports (url.Parse rejects)"),
    # paths: raw string prefix, no globs
    ("registry.example.com/team", "registry.example.com/team/app", True, "path prefix"),
    (
        "registry.example.com/team",
        "registry.example.com/teamx/app",
        True,
        "path prefix is raw, not per segment",
    ),
    ("registry.example.com/team/", "registry.example.com/team/app", True, "trailing slash prefix"),
    (
        "registry.example.com/team/",
        "registry.example.com/team",
        False,
        "trailing slash longer than image path",
    ),
    ("registry.example.com/team/*", "registry.example.com/team/app", False, "no globs in paths"),
    ("registry.example.com/other", "registry.example.com/team/app", False, "different path"),
    ("registry.example.com", "registry.example.com", True, "image without a path"),
    ("registry.example.com/team", "registry.example.com", False, "glob path, image without path"),
    # IPs and single-label hosts
    ("127.0.0.1:5000", "127.0.0.1:5000/team/app", True, "ipv4 with port"),
    ("127.0.0.*:5000", "127.0.0.1:5000/team/app", True, "ipv4 label glob"),
    ("127.0.0.1", "127.0.0.1:5000/team/app", False, "ipv4 without port"),
    ("[::1]:5000", "[::1]:5000/team/app", True, "ipv6 literal with port"),
    ("[::1]:5000", "[::2]:5000/team/app", False, "other ipv6 literal"),
    ("[::1]", "[::1]/team/app", False, "ipv6 without port is read as a character class"),
    ("localhost:5000", "localhost:5000/x", True, "single label with port"),
    ("localhost", "localhost:5000/x", False, "single label, port differs"),
    # things the kubelet accepts in matchImages that never match as intended
    ("https://registry.example.com", "registry.example.com/x", False, "scheme in glob"),
    ("registry.example.com?x", "registry.example.com/x", True, "query is dropped by url.Parse"),
    ("registry.example.com#x", "registry.example.com/x", True, "fragment is dropped by url.Parse"),
    ("reg istry.example.com", "reg istry.example.com/x", False, "space is not a host character"),
    ("registry.example.com:abc", "registry.example.com:abc/x", False, "invalid port fails to parse"),
    ("user@registry.example.com", "registry.example.com/x", True, "userinfo is not part of the host"),
    ("docker.io", "docker.io/library/nginx", True, "docker hub"),
    ("index.docker.io", "docker.io/library/nginx", False, "index.docker.io is another host"),
]


@pytest.mark.parametrize(("glob", "image", "expected"), [c[:3] for c in CASES], ids=[c[3] for c in CASES])
def test_urls_match(glob: str, image: str, expected: bool) -> None:
    assert urls_match(glob, image) is expected


GO_PATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abe", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[::1]", "[::1]", False),
    ("[::1]", ":", True),
]


@pytest.mark.parametrize(
    ("pattern", "name", "expected"), GO_PATH_MATCH, ids=[f"{p} {n}" for p, n, _ in GO_PATH_MATCH]
)
def test_go_path_match_agrees_with_go(pattern: str, name: str, expected: bool) -> None:
    # Rows taken from Go's path/filepath match_test.go.
    assert go_path_match(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["[", "[^", "[^bc", "a[", "a\\", "[x-]", "[-x]", "[]a]"])
def test_bad_patterns_never_match(pattern: str) -> None:
    assert not urls_match(pattern + ".example.com", "a.example.com/x")


SPLIT = [
    ("host:5000", ("host", "5000")),
    ("host:", ("host", "")),
    ("[::1]:5000", ("::1", "5000")),
    ("host", None),
    ("[::1]", None),
    ("a:b:5000", None),
    ("[::1]x:5000", None),
    ("[::1]]:5000", None),
    ("", None),
]


@pytest.mark.parametrize(("hostport", "expected"), SPLIT, ids=[h or "empty" for h, _ in SPLIT])
def test_split_host_port_agrees_with_net_split_host_port(
    hostport: str, expected: tuple[str, str] | None
) -> None:
    assert split_host_port(hostport) == expected


def test_parse_schemeless_unescapes_path_and_keeps_port() -> None:
    url = parse_schemeless("registry.example.com:5000/te%61m/app")
    assert url.host == "registry.example.com:5000"
    assert url.path == "/team/app"


EXTRA_HOSTILE = [
    ("a:b:5000", "a:b:5000/x"),
    ("[127.0.0.1]:5000", "[127.0.0.1]:5000/x"),
    ("[zz]:5000", "[zz]:5000/x"),
    ("x[::1]:5000", "x[::1]:5000/x"),
    ("r.io:5000:6000", "r.io:5000:6000/x"),
]


@pytest.mark.parametrize(("glob", "image"), EXTRA_HOSTILE, ids=[g for g, _ in EXTRA_HOSTILE])
def test_malformed_hosts_never_match_even_themselves(glob: str, image: str) -> None:
    assert not urls_match(glob, image)


@pytest.mark.parametrize(
    ("glob", "image", "expected"), [c[:3] for c in CASES + [(g, i, False, "") for g, i in EXTRA_HOSTILE]]
)
def test_independent_kubelet_simulator_agrees(glob: str, image: str, expected: bool) -> None:
    """The simulator's Go ports (written separately) reach the same verdict on every row."""
    from tests import kubelet_sim

    assert kubelet_sim.urls_match(glob, image) is expected


def _random_pairs(count: int) -> list[tuple[str, str]]:
    """Seeded glob/image pairs built from the characters that matter to the parsers."""
    import random

    rng = random.Random(20261127)
    labels = ["r", "io", "*", "a*", "*b", "[::1]", "127", "0", "x y", "%41", "A", ""]
    ports = ["", ":5000", ":", ":50x", ":5000:1"]
    paths = ["", "/", "/team", "/teamx/app", "/te%61m", "/team?q", "/#f", "/a@b"]
    pairs = []
    for _ in range(count):
        glob = (
            ".".join(rng.choice(labels) for _ in range(rng.randint(1, 3)))
            + rng.choice(ports)
            + rng.choice(paths)
        )
        if rng.random() < 0.5:  # an image derived from the glob, so that many pairs match
            image = glob.replace("*", rng.choice(["", "x", "reg"])) + rng.choice(["", "/app", "x"])
        else:
            image = (
                ".".join(rng.choice(labels) for _ in range(rng.randint(1, 3)))
                + rng.choice(ports)
                + rng.choice(paths)
            )
        pairs.append((glob, image))
    return pairs


def test_agrees_with_the_simulator_on_random_inputs() -> None:
    from tests import kubelet_sim

    pairs = _random_pairs(3000)
    disagreements = [(g, i) for g, i in pairs if urls_match(g, i) != kubelet_sim.urls_match(g, i)]
    assert disagreements == []
    assert sum(urls_match(g, i) for g, i in pairs) > 30  # the sample does exercise matches


@pytest.mark.parametrize(
    ("glob", "image", "ours"),
    [
        ("shared.test/team-a", "shared.test/team-a", True),
        ("shared.test/team-a", "shared.test/team-a/app", True),
        ("shared.test/team-a", "shared.test/team-a-evil/app", False),
        ("shared.test/team-a/", "shared.test/team-a/app", True),
        ("shared.test", "shared.test/team-a-evil/app", True),
        ("*.shared.test/team", "x.shared.test/teamx", False),
    ],
    ids=str,
)
def test_our_rules_match_whole_path_segments(glob: str, image: str, ours: bool) -> None:
    from provider.config import ProviderConfig, decode_config
    from provider.fullpath import find_rule
    from provider.matching import rule_matches

    assert urls_match(glob, image)  # the kubelet's raw prefix matches every one of them
    assert rule_matches(glob, image) is ours
    config: ProviderConfig = decode_config(
        ('{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig",'
         f'"rules":[{{"match":["{glob}"],"backend":"anonymous"}}]}}').encode(),
        "config.json",
    )  # fmt: skip
    assert (find_rule(config, image) is not None) is ours


# --- IP literals: Go's netip.ParseAddr, word for word -----------------------------------------

# Texts from Go's own netip and url tests (netip.ParsePrefix and url.Parse quote them).
GO_PARSE_ADDR = [
    ("12345::", 'ParseAddr("12345::"): each group must have 4 or less digits (at "12345::")'),
    ("1::2::3", 'ParseAddr("1::2::3"): multiple :: in address (at ":3")'),
    ("1.2.3.256", 'ParseAddr("1.2.3.256"): IPv4 field has value >255'),
    ("1.2.3.4\x01", 'ParseAddr("1.2.3.4\\x01"): unexpected character (at "\\x01")'),
    ("nope", 'ParseAddr("nope"): unable to parse IP'),
    ("fe80::1%", 'ParseAddr("fe80::1%"): zone must be a non-empty string'),
    ("%eth0", 'ParseAddr("%eth0"): missing IPv6 address'),
    ("::ffff:01.2.3.4", 'ParseAddr("::ffff:01.2.3.4"): IPv4 field has octet with leading zero'),
    ("1:2", 'ParseAddr("1:2"): address string too short'),
    ("1:2:3:4:5:6:7::8", 'ParseAddr("1:2:3:4:5:6:7::8"): the :: must expand to at least one field of zeros'),
    ("1:", 'ParseAddr("1:"): colon must be followed by more characters (at ":")'),
    ("1:2:3:4:5:6:7:8:9", 'ParseAddr("1:2:3:4:5:6:7:8:9"): trailing garbage after address (at "9")'),
    ("::1.2.3.4.5", 'ParseAddr("::1.2.3.4.5"): IPv4 address too long'),
    ("1.2.3.4:5::", 'ParseAddr("1.2.3.4:5::"): unexpected character (at ":5::")'),
    (
        "1:2:3:4.5.6.7",
        'ParseAddr("1:2:3:4.5.6.7"): embedded IPv4 address must replace the final 2 fields of the address (at "4.5.6.7")',
    ),
    ("1g::", 'ParseAddr("1g::"): unexpected character, want colon (at "g::")'),
]


@pytest.mark.parametrize(("literal", "message"), GO_PARSE_ADDR, ids=[m for _, m in GO_PARSE_ADDR])
def test_bad_ip_literals_read_as_go_says_them(literal: str, message: str) -> None:
    from provider.goaddr import ParseAddrError, parse_addr
    from tests.kubelet_sim import netip_parse_addr

    with pytest.raises(ParseAddrError) as caught:
        parse_addr(literal)
    assert str(caught.value) == message
    assert netip_parse_addr(literal) == (
        message,
        "." in literal and ":" not in literal.split(".", maxsplit=1)[0],
    )


def test_the_url_error_names_the_ip_literal_as_go_does() -> None:
    with pytest.raises(BadURLError) as caught:
        parse_schemeless("[12345::]/app")
    assert (
        str(caught.value)
        == 'invalid host: ParseAddr("12345::"): each group must have 4 or less digits (at "12345::")'
    )


def test_ip_literal_parsing_agrees_with_the_simulator_on_random_strings() -> None:
    """The two ports of netip.ParseAddr (ours and the simulator's, written apart) agree on
    accept/reject and on every word, over strings built from the characters that matter."""
    import random

    from provider.goaddr import ParseAddrError, parse_addr
    from tests.kubelet_sim import netip_parse_addr

    rng = random.Random(20261130)
    alphabet = "0123456789abcdefABCDEFg:.%:::..z\x01é"
    valid = 0
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        sim_error, sim_v4 = netip_parse_addr(text)
        ours_error, version = "", 0
        try:
            version = parse_addr(text)
        except ParseAddrError as exc:
            ours_error = str(exc)
        assert ours_error == sim_error, text
        if not ours_error:
            valid += 1
            assert (version == 4) == sim_v4, text
    for text in ("::1", "fe80::1%eth0", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "10.0.0.1", "::"):
        assert netip_parse_addr(text)[0] == "", text
        parse_addr(text)
    assert valid > 0  # the random strings reach the accepting paths too
