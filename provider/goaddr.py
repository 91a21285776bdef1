"""Go's ``net/netip.ParseAddr``, for its verdict and its exact error text.

Go's ``url.Parse`` checks a bracketed host with ``netip.ParseAddr`` and reports its error as
``invalid host: ParseAddr("..."): <why> (at "...")``; the kubelet prints that text when a
``matchImages`` entry holds a bad IP literal. Python's ``ipaddress`` accepts and rejects
slightly different strings (an empty zone, for one) and words its errors its own way, so the
parser is reproduced here, branch for branch. Standard library only.
"""

from __future__ import annotations

from provider.goquote import go_quote

__all__ = ["ParseAddrError", "parse_addr"]


class ParseAddrError(ValueError):
    """Go's ``parseAddrError``: ``str()`` is its ``Error()`` text."""

    def __init__(self, text: str, why: str, at: str = "") -> None:
        self.text, self.why, self.at = text, why, at
        where = f" (at {go_quote(at)})" if at else ""
        super().__init__(f"ParseAddr({go_quote(text)}): {why}{where}")


def parse_addr(text: str) -> int:
    """The IP version of ``text`` (4 or 6) as Go parses it; ``ParseAddrError`` when Go would not."""
    for char in text:
        if char == ".":
            _ipv4_fields(text, 0, len(text))
            return 4
        if char == ":":
            _ipv6(text)
            return 6
        if char == "%":
            raise ParseAddrError(text, "missing IPv6 address")
    raise ParseAddrError(text, "unable to parse IP")


def _ipv4_fields(text: str, start: int, end: int) -> None:
    """``parseIPv4Fields``: the four fields of ``text[start:end]``; errors name all of ``text``."""
    part = text[start:end]
    value = position = digits = 0
    for i, char in enumerate(part):
        if "0" <= char <= "9":
            if digits == 1 and value == 0:
                raise ParseAddrError(text, "IPv4 field has octet with leading zero")
            value = value * 10 + int(char)
            digits += 1
            if value > 255:
                raise ParseAddrError(text, "IPv4 field has value >255")
        elif char == ".":
            if i == 0 or i == len(part) - 1 or part[i - 1] == ".":
                raise ParseAddrError(text, "IPv4 field must have at least one digit", part[i:])
            if position == 3:
                raise ParseAddrError(text, "IPv4 address too long")
            position += 1
            value = digits = 0
        else:
            raise ParseAddrError(text, "unexpected character", part[i:])
    if position < 3:
        raise ParseAddrError(text, "IPv4 address too short")


_HEX = "0123456789abcdefABCDEF"


def _ipv6(text: str) -> None:  # noqa: PLR0912, PLR0915 - one branch per error of Go's parseIPv6
    rest, percent, zone = text.partition("%")
    if percent and not zone:
        raise ParseAddrError(text, "zone must be a non-empty string")
    ellipsis = -1
    if rest.startswith("::"):
        ellipsis = 0
        rest = rest[2:]
        if not rest:
            return
    i = 0
    while i < 16:
        off = 0
        value = 0
        while off < len(rest) and rest[off] in _HEX:
            value = (value << 4) + int(rest[off], 16)
            if off > 3:
                raise ParseAddrError(text, "each group must have 4 or less digits", rest)
            if value > 0xFFFF:
                raise ParseAddrError(text, "IPv6 field has value >=2^16", rest)
            off += 1
        if off == 0:
            raise ParseAddrError(text, "each colon-separated field must have at least one digit", rest)
        if off < len(rest) and rest[off] == ".":
            if ellipsis < 0 and i != 12:
                raise ParseAddrError(
                    text, "embedded IPv4 address must replace the final 2 fields of the address", rest
                )
            if i + 4 > 16:
                raise ParseAddrError(
                    text, "too many hex fields to fit an embedded IPv4 at the end of the address", rest
                )
            end = len(text) - (len(zone) + 1 if zone else 0)
            _ipv4_fields(text, end - len(rest), end)
            rest = ""
            i += 4
            break
        i += 2
        rest = rest[off:]
        if not rest:
            break
        if rest[0] != ":":
            raise ParseAddrError(text, "unexpected character, want colon", rest)
        if len(rest) == 1:
            raise ParseAddrError(text, "colon must be followed by more characters", rest)
        rest = rest[1:]
        if rest[0] == ":":
            if ellipsis >= 0:
                raise ParseAddrError(text, "multiple :: in address", rest)
            ellipsis = i
            rest = rest[1:]
            if not rest:
                break
    if rest:
        raise ParseAddrError(text, "trailing garbage after address", rest)
    if i < 16 and ellipsis < 0:
        raise ParseAddrError(text, "address string too short")
    if i >= 16 and ellipsis >= 0:
        raise ParseAddrError(text, "the :: must expand to at least one field of zeros")
