"""Go duration text, parsed and printed as Go's time package does."""

from __future__ import annotations

import pytest

from provider import goduration

PARSE = [
    ("0", 0),
    ("0s", 0),
    ("+5s", 5 * goduration.SECOND),
    ("-1.5h", -90 * goduration.MINUTE),
    ("1h30m", 90 * goduration.MINUTE),
    ("1.5s", 1500 * goduration.MILLISECOND),
    (".5s", 500 * goduration.MILLISECOND),
    ("1.s", goduration.SECOND),
    ("300ms", 300 * goduration.MILLISECOND),
    ("10us", 10 * goduration.MICROSECOND),
    ("10\u00b5s", 10 * goduration.MICROSECOND),
    ("10\u03bcs", 10 * goduration.MICROSECOND),
    ("7ns", 7),
    ("2h45m30.5s", (2 * 3600 + 45 * 60 + 30) * goduration.SECOND + 500 * goduration.MILLISECOND),
    ("12h", 12 * goduration.HOUR),
]


@pytest.mark.parametrize(("text", "nanoseconds"), PARSE, ids=[t for t, _ in PARSE])
def test_parse(text: str, nanoseconds: int) -> None:
    assert goduration.parse(text) == nanoseconds


@pytest.mark.parametrize(
    "text", ["", "1", ".", "s", "-", "1x", "1.2.3s", "--1s", "1 s", " 1s", "1h 2m", "1d", "9999999999h"]
)
def test_parse_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        goduration.parse(text)


FORMAT = [
    (0, "0s"),
    (1, "1ns"),
    (1100, "1.1\u00b5s"),
    (2200 * goduration.MICROSECOND, "2.2ms"),
    (goduration.SECOND, "1s"),
    (90 * goduration.SECOND, "1m30s"),
    (6 * goduration.HOUR, "6h0m0s"),
    (5 * goduration.MINUTE, "5m0s"),
    (goduration.HOUR + 1500 * goduration.MILLISECOND, "1h0m1.5s"),
    (-3 * goduration.MINUTE, "-3m0s"),
]


@pytest.mark.parametrize(("nanoseconds", "text"), FORMAT, ids=[t for _, t in FORMAT])
def test_format_matches_go_duration_string(nanoseconds: int, text: str) -> None:
    assert goduration.format(nanoseconds) == text
    assert goduration.parse(text) == nanoseconds


def test_format_seconds_rounds_down_and_never_goes_negative() -> None:
    assert goduration.format_seconds(59.9) == "59s"
    assert goduration.format_seconds(-4) == "0s"
    assert goduration.format_seconds(21600) == "6h0m0s"
