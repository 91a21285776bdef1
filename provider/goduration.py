"""Go's ``time.Duration`` text form, which the kubelet uses for every duration field.

``parse`` follows ``time.ParseDuration`` and ``format`` follows ``Duration.String``, both in
integer nanoseconds so a value round-trips exactly.
"""

from __future__ import annotations

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_MAX = (1 << 63) - 1

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # micro sign
    "\u03bcs": MICROSECOND,  # Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_COMPONENT_PATTERN = r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)"


def parse(text: str) -> int:
    """Return the duration ``text`` denotes, in nanoseconds; ``ValueError`` if Go would reject it."""
    import re  # not needed to format, which the disk cache's fast path does

    component = re.compile(_COMPONENT_PATTERN)
    rest = text
    sign = 1
    if rest[:1] in ("-", "+"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    while rest:
        match = component.match(rest)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}")
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if fraction:
            value += int(fraction) * scale // 10 ** len(fraction)
        total += value
        if total > _MAX + (sign < 0):
            raise ValueError(f"invalid duration {text!r}")
        rest = rest[match.end() :]
    return sign * total


def parse_seconds(text: str) -> float:
    """Like ``parse`` but in seconds, for code that sleeps or compares with ``time.time()``."""
    return parse(text) / SECOND


def _fraction(value: int, precision: int) -> tuple[str, int]:
    """``value``'s last ``precision`` digits as ``.ddd`` (trailing zeros dropped), and the rest."""
    digits = ""
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        value //= 10
    return ("." + digits if printed else ""), value


def format(nanoseconds: int) -> str:
    """Render a duration exactly as Go's ``Duration.String`` does (``6h0m0s``, ``1.5s``, ``0s``)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < SECOND:
        if value < MICROSECOND:
            unit, precision = "ns", 0
        elif value < MILLISECOND:
            unit, precision = "\u00b5s", 3
        else:
            unit, precision = "ms", 6
        fraction, whole = _fraction(value, precision)
        return f"{sign}{whole}{fraction}{unit}"
    fraction, seconds = _fraction(value, 9)
    text = f"{seconds % 60}{fraction}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def format_seconds(seconds: float) -> str:
    """``format`` for a number of seconds, rounded down to whole seconds (what we hand the kubelet)."""
    return format(max(0, int(seconds)) * SECOND)
