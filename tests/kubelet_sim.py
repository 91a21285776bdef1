"""A kubelet simulator for image credential provider exec plugins.

It follows /work/shared/reference/KUBELET.md (the kubelet's ``pkg/credentialprovider/plugin`` and
``keyring.go`` at Kubernetes 1.36) and is written independently of the ``provider`` package, so that it can
catch that package's mistakes.  It never imports ``provider``.

What it covers:

* loading a ``CredentialProviderConfig`` from a file, a directory (``*.json``/``*.yaml``/``*.yml`` merged in
  lexical order) or a Python mapping, decoded strictly and validated with the kubelet's messages;
* the kubelet's start-up checks (bin dir, every plugin binary executable);
* per image pull: matching ``matchImages``, the service account token mode, the per-provider in-memory cache,
  running the plugin (no shell, env = base env + provider env, one JSON request and a newline on stdin, hard
  timeout killing only the direct child), the strict reading of the response, and the keyring that turns every
  provider's ``auth`` map into the ordered credential list handed to the container runtime;
* small Go ports it needs: ``time.ParseDuration``/``Duration.String``, ``net/url.Parse``, ``net.SplitHostPort``,
  ``path/filepath.Match`` and docker reference normalization.

Everything the kubelet would log is kept in ``KubeletSimulator.log``; every plugin run in
``KubeletSimulator.execs``; the per-provider story of every pull in ``PullResult.providers``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

V1 = "credentialprovider.kubelet.k8s.io/v1"
V1BETA1 = "credentialprovider.kubelet.k8s.io/v1beta1"
V1ALPHA1 = "credentialprovider.kubelet.k8s.io/v1alpha1"
#: Plugin API versions a provider may use (request and response).
API_VERSIONS: tuple[str, ...] = (V1, V1ALPHA1, V1BETA1)  # sorted, as the kubelet lists them
CONFIG_GROUP = "kubelet.config.k8s.io"
#: apiVersions a CredentialProviderConfig file may have.
CONFIG_API_VERSIONS: tuple[str, ...] = (
    f"{CONFIG_GROUP}/v1",
    f"{CONFIG_GROUP}/v1beta1",
    f"{CONFIG_GROUP}/v1alpha1",
)
CONFIG_KIND = "CredentialProviderConfig"
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"
#: The kubelet's key for ``cacheKeyType: Global`` (angle brackets: cannot collide with a registry or image).
GLOBAL_CACHE_KEY = "<global>"
CACHE_KEY_TYPES = ("Image", "Registry", "Global")
CACHE_TYPES = ("ServiceAccount", "Token")  # sorted, as the kubelet lists them
DEFAULT_REGISTRY_HOST = "index.docker.io"
PLUGIN_TIMEOUT_SECONDS = 60.0


# ---------------------------------------------------------------------------------------------------------------
# Go quoting helpers
# ---------------------------------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """``strconv.Quote`` (``%q``), close enough for error messages."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif 0xDC80 <= cp <= 0xDCFF:  # a raw byte kept by surrogateescape
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif ch.isprintable() and cp != 0x7F:
            out.append(ch)
        elif cp < 0x80:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def _time_quote(s: str | bytes) -> str:
    """The ``quote`` of Go's ``time`` package: non-ASCII and control bytes as ``\\xNN``."""
    raw = s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")
    out = ['"']
    for b in raw:
        if b >= 0x80 or b < 0x20:
            out.append(f"\\x{b:02x}")
        else:
            c = chr(b)
            if c in '"\\':
                out.append("\\")
            out.append(c)
    out.append('"')
    return "".join(out)


def _go_quote_char(c: str) -> str:
    """``quoteChar`` of encoding/json's syntax errors."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    return "'" + go_quote(c)[1:-1] + "'"


# ---------------------------------------------------------------------------------------------------------------
# time.ParseDuration / Duration.String
# ---------------------------------------------------------------------------------------------------------------

_MAX_U63 = 1 << 63
_NS = 1
_US = 1_000
_MS = 1_000_000
_S = 1_000_000_000
_UNIT_MAP: dict[bytes, int] = {
    b"ns": _NS,
    b"us": _US,
    "\u00b5s".encode(): _US,  # micro sign
    "\u03bcs".encode(): _US,  # Greek mu
    b"ms": _MS,
    b"s": _S,
    b"m": 60 * _S,
    b"h": 3600 * _S,
}


class GoDurationError(ValueError):
    """``time.ParseDuration`` failed; the message is Go's."""


def _leading_int(s: bytes) -> tuple[int, bytes, bool]:
    x = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c < 0x30 or c > 0x39:
            break
        if x > _MAX_U63 // 10:
            return 0, s, False
        x = x * 10 + c - 0x30
        if x > _MAX_U63:
            return 0, s, False
        i += 1
    return x, s[i:], True


def _leading_fraction(s: bytes) -> tuple[int, float, bytes]:
    x = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s):
        c = s[i]
        if c < 0x30 or c > 0x39:
            break
        i += 1
        if overflow:
            continue
        if x > (_MAX_U63 - 1) // 10:
            overflow = True
            continue
        y = x * 10 + c - 0x30
        if y > _MAX_U63:
            overflow = True
            continue
        x = y
        scale *= 10
    return x, scale, s[i:]


def parse_go_duration(text: str) -> int:  # noqa: PLR0912 - Go's shape, branch for branch
    """Go's ``time.ParseDuration``: the duration in nanoseconds, or :class:`GoDurationError`."""
    invalid = GoDurationError("time: invalid duration " + _time_quote(text))
    s = text.encode("utf-8", "surrogateescape")
    neg = False
    if s and s[0] in b"-+":
        neg = s[0] == 0x2D
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid
    d = 0
    while s:
        if not (s[0] == 0x2E or 0x30 <= s[0] <= 0x39):
            raise invalid
        before = len(s)
        v, s, ok = _leading_int(s)
        if not ok:
            raise invalid
        pre = before != len(s)
        post = False
        f, scale = 0, 1.0
        if s and s[0] == 0x2E:
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == 0x2E or 0x30 <= s[i] <= 0x39):
            i += 1
        if i == 0:
            raise GoDurationError("time: missing unit in duration " + _time_quote(text))
        u, s = s[:i], s[i:]
        unit = _UNIT_MAP.get(u)
        if unit is None:
            raise GoDurationError(
                "time: unknown unit " + _time_quote(u) + " in duration " + _time_quote(text)
            )
        if v > _MAX_U63 // unit:
            raise invalid
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _MAX_U63:
                raise invalid
        d += v
        if d > _MAX_U63:
            raise invalid
    if neg:
        return -d
    if d > _MAX_U63 - 1:
        raise invalid
    return d


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits: list[str] = []
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        v //= 10
    return ("." + "".join(reversed(digits)) if printed else ""), v


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` for a duration in nanoseconds (``12h0m0s``, ``1.5s``, ``0s``)."""
    if not -_MAX_U63 <= ns < _MAX_U63:
        raise ValueError(f"{ns} does not fit in a time.Duration")
    neg = ns < 0
    u = -ns if neg else ns
    if u < _S:
        if u == 0:
            return "0s"
        if u < _US:
            prec, unit = 0, "ns"
        elif u < _MS:
            prec, unit = 3, "\u00b5s"
        else:
            prec, unit = 6, "ms"
        frac, u = _fmt_frac(u, prec)
        text = f"{u}{frac}{unit}"
    else:
        frac, u = _fmt_frac(u, 9)
        text = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            text = f"{u % 60}m{text}"
            u //= 60
            if u > 0:
                text = f"{u}h{text}"
    return "-" + text if neg else text


# ---------------------------------------------------------------------------------------------------------------
# net/url.Parse (Go 1.26: bracketed hosts must be IPv6, colons in http(s) hosts strict), net.SplitHostPort
# ---------------------------------------------------------------------------------------------------------------


def _netip_error(whole: str, msg: str, at: str = "") -> str:
    """Go's parseAddrError.Error()."""
    text = "ParseAddr(" + go_quote(whole) + "): " + msg
    return text + " (at " + go_quote(at) + ")" if at else text


def _netip_v4_fields(whole: str, s: str) -> str:
    """Go's parseIPv4Fields over ``s`` (a tail of ``whole``): "" when it parses."""
    val = pos = dig_len = 0
    for i in range(len(s)):
        c = s[i]
        if c in "0123456789":
            if dig_len == 1 and val == 0:
                return _netip_error(whole, "IPv4 field has octet with leading zero")
            val = val * 10 + ord(c) - ord("0")
            dig_len += 1
            if val > 255:
                return _netip_error(whole, "IPv4 field has value >255")
        elif c == ".":
            if i == 0 or i == len(s) - 1 or s[i - 1] == ".":
                return _netip_error(whole, "IPv4 field must have at least one digit", s[i:])
            if pos == 3:
                return _netip_error(whole, "IPv4 address too long")
            pos, val, dig_len = pos + 1, 0, 0
        else:
            return _netip_error(whole, "unexpected character", s[i:])
    return _netip_error(whole, "IPv4 address too short") if pos < 3 else ""


def _netip_v6(whole: str) -> str:  # noqa: PLR0911, PLR0912 - Go's parseIPv6, return for return
    s, zone = whole, ""
    cut = s.find("%")
    if cut != -1:
        s, zone = s[:cut], s[cut + 1 :]
        if zone == "":
            return _netip_error(whole, "zone must be a non-empty string")
    ellipsis = -1
    if len(s) >= 2 and s[0] == ":" and s[1] == ":":
        ellipsis, s = 0, s[2:]
        if len(s) == 0:
            return ""
    i = 0
    while i < 16:
        off, acc = 0, 0
        while off < len(s):
            digit = "0123456789abcdef".find(s[off].lower()) if s[off].isascii() else -1
            if digit < 0:
                break
            acc = acc * 16 + digit
            if off > 3:
                return _netip_error(whole, "each group must have 4 or less digits", s)
            if acc > 65535:
                return _netip_error(whole, "IPv6 field has value >=2^16", s)
            off += 1
        if off == 0:
            return _netip_error(whole, "each colon-separated field must have at least one digit", s)
        if off < len(s) and s[off] == ".":
            if ellipsis < 0 and i != 12:
                return _netip_error(
                    whole, "embedded IPv4 address must replace the final 2 fields of the address", s
                )
            if i + 4 > 16:
                return _netip_error(
                    whole, "too many hex fields to fit an embedded IPv4 at the end of the address", s
                )
            problem = _netip_v4_fields(whole, s)
            if problem:
                return problem
            s, i = "", i + 4
            break
        i += 2
        s = s[off:]
        if len(s) == 0:
            break
        if s[0] != ":":
            return _netip_error(whole, "unexpected character, want colon", s)
        if len(s) == 1:
            return _netip_error(whole, "colon must be followed by more characters", s)
        s = s[1:]
        if s[0] == ":":
            if ellipsis >= 0:
                return _netip_error(whole, "multiple :: in address", s)
            ellipsis, s = i, s[1:]
            if len(s) == 0:
                break
    if len(s) != 0:
        return _netip_error(whole, "trailing garbage after address", s)
    if i < 16:
        return _netip_error(whole, "address string too short") if ellipsis < 0 else ""
    return _netip_error(whole, "the :: must expand to at least one field of zeros") if ellipsis >= 0 else ""


def netip_parse_addr(s: str) -> tuple[str, bool]:
    """Go's netip.ParseAddr: (its error text or "", whether it is IPv4)."""
    for c in s:
        if c == ".":
            return _netip_v4_fields(s, s), True
        if c == ":":
            return _netip_v6(s), False
        if c == "%":
            return _netip_error(s, "missing IPv6 address"), False
    return _netip_error(s, "unable to parse IP"), False


class _Why(Exception):
    """The inner error of a url.Parse failure."""


class GoURLError(ValueError):
    """``url.Parse`` failed; ``str()`` is Go's ``*url.Error`` text: ``parse "<url>": <why>``."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"parse {go_quote(url)}: {why}")
        self.url = url
        self.why = why


@dataclass(frozen=True)
class GoURL:
    """The parts of a Go ``url.URL`` the kubelet looks at (``host`` and ``path`` unescaped)."""

    scheme: str = ""
    opaque: str = ""
    user: str | None = None
    host: str = ""
    path: str = ""
    raw_query: str = ""
    fragment: str = ""


def _ishex(c: str) -> bool:
    return c in "0123456789abcdefABCDEF" and c != ""


def _should_escape_host(c: str) -> bool:
    """``shouldEscape(c, encodeHost)`` for an ASCII character."""
    if c.isascii() and c.isalnum():
        return False
    if c in "!$&'()*+,;=:[]<>\"":
        return False
    return c not in "-_.~"


def _unescape(s: str, mode: str) -> str:
    """Go's ``unescape``; mode is one of path, host, zone, user, fragment."""
    n = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            n += 1
            if i + 2 >= len(s) or not _ishex(s[i + 1]) or not _ishex(s[i + 2]):
                raise _Why("invalid URL escape " + go_quote(s[i : i + 3]))
            if mode == "host" and int(s[i + 1], 16) < 8 and s[i : i + 3] != "%25":
                raise _Why("invalid URL escape " + go_quote(s[i : i + 3]))
            if mode == "zone":
                v = int(s[i + 1 : i + 3], 16)
                if s[i : i + 3] != "%25" and v != 0x20 and _should_escape_host(chr(v)):
                    raise _Why("invalid URL escape " + go_quote(s[i : i + 3]))
            i += 3
            continue
        if mode in ("host", "zone") and ord(c) < 0x80 and _should_escape_host(c):
            raise _Why("invalid character " + go_quote(c) + " in host name")
        i += 1
    if n == 0:
        return s
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "%":
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
        else:
            out += s[i].encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _valid_optional_port(port: str) -> bool:
    if port == "":
        return True
    if port[0] != ":":
        return False
    return all("0" <= b <= "9" for b in port[1:])


def _valid_userinfo(s: str) -> bool:
    return all((c.isascii() and c.isalnum()) or c in "-._:~!$&'()*+,;=%@" for c in s)


def _parse_host(scheme: str, host: str, strict_colons: bool) -> str:
    open_bracket = host.rfind("[")
    if open_bracket > 0:
        raise _Why("invalid IP-literal")
    if open_bracket == 0:
        close = host.rfind("]")
        if close < 0:
            raise _Why("missing ']' in host")
        colon_port = host[close + 1 :]
        if not _valid_optional_port(colon_port):
            raise _Why(f"invalid port {go_quote(colon_port)} after host")
        colon_port = _unescape(colon_port, "host")
        hostname = host[1:close]
        zone = hostname.find("%25")
        if zone >= 0:
            unescaped = _unescape(hostname[:zone], "host") + _unescape(hostname[zone:], "zone")
        else:
            unescaped = _unescape(hostname, "host")
        problem, is_v4 = netip_parse_addr(unescaped)
        if problem:
            raise _Why("invalid host: " + problem)
        if is_v4:
            raise _Why("invalid IP-literal")
        return "[" + unescaped + "]" + colon_port
    i = host.find(":")
    if i != -1:
        last = host.rfind(":")
        if last != i and (scheme not in ("http", "https") or not strict_colons):
            i = last
        colon_port = host[i:]
        if not _valid_optional_port(colon_port):
            raise _Why(f"invalid port {go_quote(colon_port)} after host")
    return _unescape(host, "host")


def _get_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise _Why("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def _parse(raw: str, strict_colons: bool) -> GoURL:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _Why("net/url: invalid control character in URL")
    if raw == "*":
        return GoURL(path="*")
    scheme, rest = _get_scheme(raw)
    scheme = scheme.lower()
    query = ""
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest, _, query = rest.partition("?")
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme=scheme, opaque=rest, raw_query=query)
        if ":" in rest.partition("/")[0]:
            raise _Why("first path segment in URL cannot contain colon")
    user: str | None = None
    host = ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, rest = rest[2:], ""
        slash = authority.find("/")
        if slash >= 0:
            authority, rest = authority[:slash], authority[slash:]
        at = authority.rfind("@")
        host = _parse_host(scheme, authority if at < 0 else authority[at + 1 :], strict_colons)
        if at >= 0:
            userinfo = authority[:at]
            if not _valid_userinfo(userinfo):
                raise _Why("net/url: invalid userinfo")
            name, colon, password = userinfo.partition(":")
            user = _unescape(name, "user") + (colon + _unescape(password, "user") if colon else "")
    return GoURL(scheme=scheme, user=user, host=host, path=_unescape(rest, "path"), raw_query=query)


def go_url_parse(raw: str, *, strict_colons: bool = True) -> GoURL:
    """Go's ``url.Parse``.  ``strict_colons=False`` is ``GODEBUG=urlstrictcolons=0`` (Go < 1.26 behaviour)."""
    u, sep, frag = raw.partition("#")
    try:
        url = _parse(u, strict_colons)
    except _Why as e:
        raise GoURLError(u, str(e)) from None
    if not sep or frag == "":
        return url
    try:
        fragment = _unescape(frag, "fragment")
    except _Why as e:
        raise GoURLError(raw, str(e)) from None
    return GoURL(url.scheme, url.opaque, url.user, url.host, url.path, url.raw_query, fragment)


def go_split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``; ``ValueError`` with Go's reason."""
    i = hostport.rfind(":")
    if i < 0:
        raise ValueError("missing port in address")
    j = k = 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(hostport):
            raise ValueError("missing port in address")
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise ValueError("too many colons in address")
            raise ValueError("missing port in address")
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in hostport[j:]:
        raise ValueError("unexpected '[' in address")
    if "]" in hostport[k:]:
        raise ValueError("unexpected ']' in address")
    return host, hostport[i + 1 :]


# ---------------------------------------------------------------------------------------------------------------
# path/filepath.Match (Unix)
# ---------------------------------------------------------------------------------------------------------------


class BadPattern(ValueError):
    """``filepath.ErrBadPattern``."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str) -> tuple[int, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern
    r, nchunk = ord(chunk[0]), chunk[1:]
    if not nchunk:
        raise BadPattern
    return r, nchunk


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:  # noqa: PLR0912 - Go's shape
    """Go's matchChunk; raises :class:`BadPattern`."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = -1
            if not failed:
                r, s = ord(s[0]), s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk and chunk[0] == "^":
                negated = True
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def _try_chunk(chunk: str, s: str) -> tuple[str, bool, bool]:
    try:
        rest, ok = _match_chunk(chunk, s)
    except BadPattern:
        return "", False, True
    return rest, ok, False


def go_filepath_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on Linux; raises :class:`BadPattern` like Go returns ``ErrBadPattern``."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok, err = _try_chunk(chunk, name)
        if ok and (len(t) == 0 or len(pattern) > 0):
            name = t
            continue
        if err:
            raise BadPattern
        if star:
            advanced = False
            i = 0
            while i < len(name) and name[i] != "/":
                t, ok, err = _try_chunk(chunk, name[i + 1 :])
                if ok:
                    if len(pattern) == 0 and len(t) > 0:
                        i += 1
                        continue
                    name = t
                    advanced = True
                    break
                if err:
                    raise BadPattern
                i += 1
            if advanced:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return len(name) == 0


# ---------------------------------------------------------------------------------------------------------------
# Matching (credentialprovider.URLsMatchStr) and the keyring (BasicDockerKeyring)
# ---------------------------------------------------------------------------------------------------------------


def _split_url(u: GoURL) -> tuple[list[str], str]:
    try:
        host, port = go_split_host_port(u.host)
    except ValueError:
        host, port = u.host, ""
    return host.split("."), port


def urls_match(glob: str, target: str) -> bool:
    """``URLsMatchStr(glob, target)``: used for ``matchImages`` and for ``auth`` keys; errors are "no match".

    Same port string; same number of host labels; each label by ``filepath.Match`` (so ``*`` stays within a label,
    case-sensitive); the glob's path a raw string prefix of the target's path.
    """
    try:
        g = go_url_parse("https://" + glob)
        t = go_url_parse("https://" + target)
    except GoURLError:
        return False
    g_parts, g_port = _split_url(g)
    t_parts, t_port = _split_url(t)
    if g_port != t_port or len(g_parts) != len(t_parts) or not t.path.startswith(g.path):
        return False
    try:
        return all(go_filepath_match(gp, tp) for gp, tp in zip(g_parts, t_parts, strict=True))
    except BadPattern:
        return False


def is_default_registry_match(image: str) -> bool:
    """The keyring's ``isDefaultRegistryMatch``: whether ``index.docker.io`` credentials may serve ``image``."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash:
        return True
    if first in ("docker.io", DEFAULT_REGISTRY_HOST):
        return True
    return not any(c in first for c in ".:")


def parse_registry(image: str) -> str:
    """The kubelet's ``parseRegistry``: everything before the first ``/`` (``host[:port]``)."""
    return image.split("/", maxsplit=1)[0]


@dataclass(frozen=True)
class AuthConfig:
    """One ``auth`` entry of a response: what the runtime gets."""

    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class KeyringMatch:
    """A credential the keyring hands out, with the normalized key and the provider it came from."""

    key: str
    provider: str
    username: str
    password: str


class Keyring:
    """The kubelet's ``BasicDockerKeyring`` (one is built per lookup from every provider's answer)."""

    def __init__(self) -> None:
        self._index: list[str] = []
        self._creds: dict[str, list[KeyringMatch]] = {}
        self.log: list[str] = []

    def add(self, auth: Mapping[str, AuthConfig], provider: str = "") -> None:
        for loc, ident in auth.items():
            value = loc if loc.startswith(("https://", "http://")) else "https://" + loc
            try:
                parsed = go_url_parse(value)
            except GoURLError as e:
                self.log.append(f"Entry {go_quote(loc)} in dockercfg invalid ({e}), ignoring")
                continue
            path = parsed.path
            if path.startswith(("/v2/", "/v1/")):
                path = path[3:]
            key = parsed.host + path if path and path != "/" else parsed.host
            self._creds.setdefault(key, []).append(
                KeyringMatch(key, provider, ident.username, ident.password)
            )
            self._index.append(key)
        self._index = sorted(set(self._index), reverse=True)

    @property
    def keys(self) -> list[str]:
        """The normalized keys, in lookup order (reverse lexical)."""
        return list(self._index)

    def lookup(self, image: str) -> list[KeyringMatch]:
        found: list[KeyringMatch] = []
        for key in self._index:
            if urls_match(key, image):
                found.extend(self._creds[key])
        if found:
            return found
        if is_default_registry_match(image) and DEFAULT_REGISTRY_HOST in self._creds:
            return list(self._creds[DEFAULT_REGISTRY_HOST])
        return []


# ---------------------------------------------------------------------------------------------------------------
# Docker reference normalization (what the kubelet passes as `image`)
# ---------------------------------------------------------------------------------------------------------------


class ImageReferenceError(ValueError):
    """The image reference does not parse (the kubelet would not even try to pull)."""


_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_NAME = r"(?:" + _DOMAIN + r"/)?" + _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


def _split_docker_domain(name: str) -> tuple[str, str]:
    maybe_domain, slash, maybe_rest = name.partition("/")
    if not slash:
        return "docker.io", "library/" + name
    # localhost, something with a dot or a colon, or with capitals (Docker Hub namespaces are lowercase)
    if (
        maybe_domain == "localhost"
        or any(c in maybe_domain for c in ".:")
        or maybe_domain.lower() != maybe_domain
    ):
        domain, rest = maybe_domain, maybe_rest
    else:
        domain, rest = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    return domain, rest


def split_image(ref: str) -> tuple[str, str, str]:
    """``ParseImageName``: (normalized repository, tag, digest) of a reference such as ``nginx:1.2``."""
    if _IDENTIFIER_RE.fullmatch(ref):
        raise ImageReferenceError(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    domain, rest = _split_docker_domain(ref)
    remote = rest.split(":", 1)[0]
    if remote.lower() != remote:
        raise ImageReferenceError(f"invalid reference format: repository name ({remote}) must be lowercase")
    m = _REFERENCE_RE.fullmatch(domain + "/" + rest)
    if m is None:
        raise ImageReferenceError(f"invalid reference format: {go_quote(ref)}")
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    if len(name) > 255:
        raise ImageReferenceError(
            "invalid reference format: repository name must not be more than 255 characters"
        )
    if digest:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm not in _DIGEST_HEX:
            raise ImageReferenceError("unsupported digest algorithm")
        if len(hexpart) != _DIGEST_HEX[algorithm] or not re.fullmatch(r"[a-f0-9]+", hexpart):
            raise ImageReferenceError("invalid checksum digest format")
    return name, tag, digest


def normalize_image(ref: str) -> str:
    """The repository the kubelet sends: ``nginx:1.2`` → ``docker.io/library/nginx``, no tag, no digest."""
    return split_image(ref)[0]


# ---------------------------------------------------------------------------------------------------------------
# Strict JSON / YAML decoding (k8s serializer with EnableStrict: case-sensitive, unknown & duplicate fields fail)
# ---------------------------------------------------------------------------------------------------------------


class _Obj(list[tuple[str, Any]]):
    """A JSON object as the ordered list of its members (duplicates kept)."""


class _FatalDecode(Exception):
    """A non-strict decoding error (wrong type, bad duration): decoding stops."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "type" or "duration"


class _StrictErrors:
    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.duplicate: list[str] = []
        self.all: list[str] = []

    def add_unknown(self, path: str) -> None:
        self.unknown.append(path)
        self.all.append(f"unknown field {go_quote(path)}")

    def add_duplicate(self, path: str) -> None:
        self.duplicate.append(path)
        self.all.append(f"duplicate field {go_quote(path)}")


def _json_type(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list) and not isinstance(v, _Obj):
        return "array"
    return "object"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Spec:
    gotype = "?"

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        return None

    def type_error(self, v: object, path: str) -> _FatalDecode:
        where = f"Go struct field {path}" if path else "Go value"
        return _FatalDecode(
            f"json: cannot unmarshal {_json_type(v)} into {where} of type {self.gotype}", "type"
        )


class _Str(_Spec):
    gotype = "string"

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None:
            return ""
        if isinstance(v, str):
            return v
        raise self.type_error(v, path)

    def zero(self) -> Any:
        return ""


class _BoolPtr(_Spec):
    gotype = "bool"

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None or isinstance(v, bool):
            return v
        raise self.type_error(v, path)


class _DurationPtr(_Spec):
    """``*metav1.Duration``: null → nil; a string → ``time.ParseDuration``; anything else fails."""

    gotype = "string"

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None:
            return None
        if not isinstance(v, str):
            raise _FatalDecode(f"json: cannot unmarshal {_json_type(v)} into Go value of type string", "type")
        try:
            return parse_go_duration(v)
        except GoDurationError as e:
            raise _FatalDecode(str(e), "duration") from None


class _List(_Spec):
    def __init__(self, item: _Spec) -> None:
        self.item = item
        self.gotype = "[]" + item.gotype

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None:
            return None
        if not isinstance(v, list) or isinstance(v, _Obj):
            raise self.type_error(v, path)
        return [self.item.decode(x, f"{path}[{i}]", st) for i, x in enumerate(v)]


class _Map(_Spec):
    def __init__(self, item: _Spec) -> None:
        self.item = item
        self.gotype = "map[string]" + item.gotype

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None:
            return None
        if not isinstance(v, _Obj):
            raise self.type_error(v, path)
        out: dict[str, Any] = {}
        for key, value in v:
            sub = f"{path}[{key}]"
            if key in out:
                st.add_duplicate(sub)
            out[key] = self.item.decode(value, sub, st)
        return out


class _Struct(_Spec):
    def __init__(self, gotype: str, fields: Mapping[str, _Spec], *, pointer: bool) -> None:
        self.gotype = gotype
        self.fields = dict(fields)
        self.pointer = pointer

    def zero(self) -> Any:
        return None if self.pointer else {name: spec.zero() for name, spec in self.fields.items()}

    def decode(self, v: object, path: str, st: _StrictErrors) -> Any:
        if v is None:
            return self.zero()
        if not isinstance(v, _Obj):
            raise self.type_error(v, path)
        out: dict[str, Any] = {name: spec.zero() for name, spec in self.fields.items()}
        seen: set[str] = set()
        for key, value in v:
            sub = _join(path, key)
            spec = self.fields.get(key)
            if spec is None:
                st.add_unknown(sub)
                continue
            if key in seen:
                st.add_duplicate(sub)
            seen.add(key)
            out[key] = spec.decode(value, sub, st)
        return out


def _struct(gotype: str, pointer: bool = False, **fields: _Spec) -> _Struct:
    return _Struct(gotype, fields, pointer=pointer)


_AUTH_CONFIG = _struct("AuthConfig", username=_Str(), password=_Str())
_RESPONSE = _struct(
    "CredentialProviderResponse",
    kind=_Str(),
    apiVersion=_Str(),
    cacheKeyType=_Str(),
    cacheDuration=_DurationPtr(),
    auth=_Map(_AUTH_CONFIG),
)
_ENV_VAR = _struct("ExecEnvVar", name=_Str(), value=_Str())
_TOKEN_ATTRIBUTES = _struct(
    "ServiceAccountTokenAttributes",
    pointer=True,
    serviceAccountTokenAudience=_Str(),
    cacheType=_Str(),
    requireServiceAccount=_BoolPtr(),
    requiredServiceAccountAnnotationKeys=_List(_Str()),
    optionalServiceAccountAnnotationKeys=_List(_Str()),
)
_PROVIDER_FIELDS: dict[str, _Spec] = {
    "name": _Str(),
    "matchImages": _List(_Str()),
    "defaultCacheDuration": _DurationPtr(),
    "apiVersion": _Str(),
    "args": _List(_Str()),
    "env": _List(_ENV_VAR),
}
_PROVIDER_V1 = _Struct(
    "CredentialProvider", {**_PROVIDER_FIELDS, "tokenAttributes": _TOKEN_ATTRIBUTES}, pointer=False
)
_PROVIDER_OLD = _Struct("CredentialProvider", _PROVIDER_FIELDS, pointer=False)
_CONFIG_SPECS = {
    f"{CONFIG_GROUP}/v1": _struct(
        "CredentialProviderConfig", kind=_Str(), apiVersion=_Str(), providers=_List(_PROVIDER_V1)
    ),
    f"{CONFIG_GROUP}/v1beta1": _struct(
        "CredentialProviderConfig", kind=_Str(), apiVersion=_Str(), providers=_List(_PROVIDER_OLD)
    ),
    f"{CONFIG_GROUP}/v1alpha1": _struct(
        "CredentialProviderConfig", kind=_Str(), apiVersion=_Str(), providers=_List(_PROVIDER_OLD)
    ),
}


class _Unreadable(ValueError):
    """stdout (or a config file) is not one JSON object whose apiVersion and kind can be read."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character {_go_quote_char(name[0])} looking for beginning of value")


def _go_json_syntax_error(text: str, e: json.JSONDecodeError) -> str:
    """An encoding/json-like message for a syntax error Python found."""
    if not text.strip(" \t\r\n"):
        return "unexpected end of JSON input"
    if e.msg.startswith("Extra data"):
        return f"invalid character {_go_quote_char(text[e.pos])} after top-level value"
    if e.pos >= len(text):
        return "unexpected end of JSON input"
    c = text[e.pos]
    if c == "\ufeff":
        return "invalid character '\u00ef' looking for beginning of value"
    return f"invalid character {_go_quote_char(c)} looking for beginning of value"


def _parse_json(data: bytes) -> object:
    """Exactly one JSON document as encoding/json reads it; ``ValueError`` with a Go-like message."""
    text = data.decode(
        "utf-8", "replace"
    )  # Go keeps going on invalid UTF-8 (U+FFFD); a BOM stays a character
    try:
        return json.loads(text, object_pairs_hook=_Obj, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _Unreadable(_go_json_syntax_error(text, e)) from None
    except RecursionError:
        raise _Unreadable("exceeded max depth") from None


_SPECIAL_FOLDS = {"\u212a": "K", "\u017f": "S"}  # Kelvin sign, long s


def _fold(name: str) -> str:
    """encoding/json's case folding for field names (ASCII, plus the Kelvin sign and the long s)."""
    return "".join(c.upper() if c.isascii() else _SPECIAL_FOLDS.get(c, c) for c in name)


def _interpret(doc: object) -> tuple[str, str]:
    """``json.DefaultMetaFactory.Interpret``: (apiVersion, kind), case-insensitive, last one wins."""
    if doc is None:
        return "", ""
    if not isinstance(doc, _Obj):
        raise _Unreadable(
            f"json: cannot unmarshal {_json_type(doc)} into Go value of type struct {{ APIVersion; Kind }}"
        )
    found = {"APIVERSION": "", "KIND": ""}
    for key, value in doc:
        folded = _fold(key)
        if folded not in found or value is None:
            continue
        if not isinstance(value, str):
            raise _Unreadable(
                f"json: cannot unmarshal {_json_type(value)} into Go struct field .{key} of type string"
            )
        found[folded] = value
    api_version = found["APIVERSION"]
    if api_version.count("/") > 1:
        raise _Unreadable(f"unexpected GroupVersion string: {api_version}")
    return api_version, found["KIND"]


# ---------------------------------------------------------------------------------------------------------------
# Config types, decoding, validation
# ---------------------------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The kubelet would exit at start-up; ``str()`` is (close to) what it prints."""


class ConfigDecodeError(ConfigError):
    """A config file does not decode (syntax, kind/apiVersion, types, unknown or duplicate fields)."""

    def __init__(self, message: str, *, unknown: Iterable[str] = (), duplicate: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.unknown_fields = list(unknown)
        self.duplicate_fields = list(duplicate)


class ConfigValidationError(ConfigError):
    """``validateCredentialProviderConfig`` failed; ``errors`` are the individual field errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("failed to validate credential provider config: " + _aggregate(errors))
        self.errors = errors


class PluginBinaryError(ConfigError):
    """The bin dir or a plugin binary is missing or not executable."""


@dataclass(frozen=True)
class ExecEnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class TokenAttributes:
    service_account_token_audience: str = ""
    cache_type: str = ""
    require_service_account: bool | None = None
    required_service_account_annotation_keys: tuple[str, ...] = ()
    optional_service_account_annotation_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class CredentialProvider:
    name: str
    match_images: tuple[str, ...] = ()
    default_cache_duration: int | None = None  # nanoseconds; None = absent
    api_version: str = ""
    args: tuple[str, ...] = ()
    env: tuple[ExecEnvVar, ...] = ()
    token_attributes: TokenAttributes | None = None


@dataclass(frozen=True)
class CredentialProviderConfig:
    providers: tuple[CredentialProvider, ...] = ()
    sources: tuple[str, ...] = ()  # the files it came from, in merge order


def _tuple(v: list[str] | None) -> tuple[str, ...]:
    return tuple(v or ())


def _provider_from(d: Mapping[str, Any]) -> CredentialProvider:
    ta = d.get("tokenAttributes")
    token_attributes = None
    if ta is not None:
        token_attributes = TokenAttributes(
            service_account_token_audience=ta["serviceAccountTokenAudience"],
            cache_type=ta["cacheType"],
            require_service_account=ta["requireServiceAccount"],
            required_service_account_annotation_keys=_tuple(ta["requiredServiceAccountAnnotationKeys"]),
            optional_service_account_annotation_keys=_tuple(ta["optionalServiceAccountAnnotationKeys"]),
        )
    return CredentialProvider(
        name=d["name"],
        match_images=_tuple(d["matchImages"]),
        default_cache_duration=d["defaultCacheDuration"],
        api_version=d["apiVersion"],
        args=_tuple(d["args"]),
        env=tuple(ExecEnvVar(e["name"], e["value"]) for e in d["env"] or ()),
        token_attributes=token_attributes,
    )


def _yaml_key(k: object) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    return str(k)


class _StrictYAMLLoader(yaml.SafeLoader):
    """YAML as goyaml.v2 reads it for sigs.k8s.io/yaml: y/n are booleans, timestamps stay strings."""

    duplicates: list[str]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        own = {id(k) for k, _ in node.value}
        self.flatten_mapping(node)  # "<<" merges come first and may be overridden
        seen: set[str] = set()
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _yaml_key(self.construct_object(key_node, deep=True))
            if id(key_node) in own:
                if key in seen:
                    self.duplicates.append(
                        f"line {key_node.start_mark.line + 1}: key {go_quote(key)} already set in map"
                    )
                seen.add(key)
            values.pop(key, None)
            values[key] = self.construct_object(value_node, deep=True)
        return _Obj(values.items())  # type: ignore[return-value]  # last one wins, as YAMLToJSON


_StrictYAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictYAMLLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
_YAML_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and loader.construct_scalar(node) in _YAML_TRUE


def _construct_map(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, "expected a mapping node", node.start_mark)
    return loader.construct_mapping(node)


_StrictYAMLLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_StrictYAMLLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _parse_yaml(data: bytes, source: str) -> tuple[object, list[str]]:
    loader = _StrictYAMLLoader(data)
    loader.duplicates = []
    try:
        node = loader.get_node() if loader.check_node() else None  # first document only, as goyaml.v2
        doc = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigDecodeError(
            f"error decoding config {go_quote(source)}: error converting YAML to JSON: yaml: {e}"
        ) from None
    finally:
        loader.dispose()
    return doc, loader.duplicates


def _to_tree(v: object) -> object:
    """A Python value (e.g. a config built as a dict) as a decoded JSON document."""
    if isinstance(v, Mapping):
        return _Obj((_yaml_key(k), _to_tree(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return [_to_tree(x) for x in v]
    return v


def _is_json(data: bytes) -> bool:
    """utilyaml.IsJSONBuffer: first non-space character is ``{``."""
    return data.decode("utf-8", "replace").lstrip().startswith("{")


def decode_config(
    data: bytes | str | Mapping[str, Any], *, source: str = "<config>"
) -> CredentialProviderConfig:
    """Decode one config document strictly, as the kubelet's ``decode`` does; raises :class:`ConfigDecodeError`.

    ``data`` is JSON or YAML text, or an already parsed mapping.  The result is not validated.
    """
    yaml_duplicates: list[str] = []
    doc: object
    if isinstance(data, Mapping):
        doc = _to_tree(data)
        text_for_errors = repr(dict(data))
    else:
        raw = data.encode() if isinstance(data, str) else data
        text_for_errors = raw.decode("utf-8", "replace")
        if _is_json(raw):
            try:
                doc = _parse_json(raw)
            except ValueError as e:
                raise ConfigDecodeError(f"error decoding config {go_quote(source)}: {e}") from None
        else:
            doc, yaml_duplicates = _parse_yaml(raw, source)
    try:
        api_version, kind = _interpret(doc)
    except ValueError as e:
        raise ConfigDecodeError(f"error decoding config {go_quote(source)}: {e}") from None
    if not kind:
        raise ConfigDecodeError(
            f"error decoding config {go_quote(source)}: Object 'Kind' is missing in '{text_for_errors}'"
        )
    if not api_version:
        raise ConfigDecodeError(
            f"error decoding config {go_quote(source)}: Object 'apiVersion' is missing in '{text_for_errors}'"
        )
    spec = _CONFIG_SPECS.get(api_version) if kind == CONFIG_KIND else None
    if spec is None:
        if api_version == f"{CONFIG_GROUP}/v1beta1" and kind == "KubeletConfiguration":
            raise ConfigDecodeError(
                f"error decoding config {go_quote(source)}: failed to decode {go_quote(kind)} (wrong Kind)"
            )
        raise ConfigDecodeError(
            f"error decoding config {go_quote(source)}: no kind {go_quote(kind)} is registered for version "
            f'{go_quote(api_version)} in scheme "pkg/credentialprovider/plugin/plugin.go"'
        )
    st = _StrictErrors()
    try:
        decoded = spec.decode(doc, "", st)
    except _FatalDecode as e:
        raise ConfigDecodeError(f"error decoding config {go_quote(source)}: {e}") from None
    strict = [f"yaml: unmarshal errors:\n  {d}" for d in yaml_duplicates] + st.all
    if strict:
        raise ConfigDecodeError(
            f"error decoding config {go_quote(source)}: strict decoding error: {', '.join(strict)}",
            unknown=st.unknown,
            duplicate=st.duplicate + yaml_duplicates,
        )
    providers = tuple(_provider_from(p) for p in decoded["providers"] or ())
    return CredentialProviderConfig(providers=providers, sources=(source,))


def _go_ext(name: str) -> str:
    i = name.rfind(".")
    return name[i:] if i >= 0 else ""


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> CredentialProviderConfig:  # noqa: PLR0912
    """``readCredentialProviderConfig``: a file, a directory (merged), or a mapping; not validated.

    A provider name seen twice (in one file or across files) is an error here, before validation.
    """
    if isinstance(source, Mapping):
        configs = [decode_config(source, source="<dict>")]
    else:
        path = os.fspath(source)
        if path == "":
            raise ConfigError("credential provider config path is empty")
        try:
            is_dir = Path(path).is_dir()
            os.stat(path)
        except OSError as e:
            raise ConfigError(
                f"unable to access path {go_quote(path)}: stat {path}: {_errno_text(e)}"
            ) from None
        files: list[str] = []
        if is_dir:
            with os.scandir(path) as it:
                for entry in it:
                    if not entry.is_dir(follow_symlinks=False) and _go_ext(entry.name) in (
                        ".json",
                        ".yaml",
                        ".yml",
                    ):
                        files.append(os.path.join(path, entry.name))
            files.sort(key=lambda f: f.encode("utf-8", "surrogateescape"))
            if not files:
                raise ConfigError(f"no configuration files found in directory {go_quote(path)}")
        else:
            files = [path]
        configs = []
        for f in files:
            try:
                data = Path(f).read_bytes()
            except OSError as e:
                op = "read" if Path(f).is_dir() else "open"
                raise ConfigError(f"unable to read file {go_quote(f)}: {op} {f}: {_errno_text(e)}") from None
            configs.append(decode_config(data, source=f))
    names: set[str] = set()
    merged: list[CredentialProvider] = []
    for config in configs:
        for provider in config.providers:
            if provider.name in names:
                raise ConfigError(
                    f"duplicate provider name {go_quote(provider.name)} found in configuration file(s)"
                )
            names.add(provider.name)
            merged.append(provider)
    return CredentialProviderConfig(tuple(merged), tuple(s for c in configs for s in c.sources))


def _errno_text(e: OSError) -> str:
    """os.PathError's error text: Go lower-cases the C library's message."""
    message = os.strerror(e.errno) if e.errno else str(e)
    return message[0].lower() + message[1:]


def _aggregate(messages: list[str]) -> str:
    """utilerrors.Aggregate.Error(): one message as is, several deduplicated inside ``[...]``."""
    if len(messages) == 1:
        return messages[0]
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(_QNAME_FMT)
_QNAME_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
_DNS1123_SUB_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUB_RE = re.compile(_DNS1123_SUB_FMT)
_DNS1123_SUB_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return (
        msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"
    )


def _is_qualified_name(value: str) -> list[str]:
    """``validation.IsQualifiedName``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode("utf-8", "surrogateescape")) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not _DNS1123_SUB_RE.fullmatch(prefix):
                errs.append("prefix part " + _regex_error(_DNS1123_SUB_MSG, _DNS1123_SUB_FMT, "example.com"))
    else:
        return [
            "a valid label key "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode("utf-8", "surrogateescape")) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def _go_string_slice(values: Iterable[str]) -> str:
    """A ``[]string`` bad value as field.Error prints it: encoding/json, HTML characters escaped."""
    out = []
    for v in values:
        body = json.dumps(v, ensure_ascii=False)
        for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
            body = body.replace(char, escape)
        out.append(body)
    return "[" + ",".join(out) + "]"


def validate_config(  # noqa: PLR0912 - one branch per kubelet check, in the kubelet's order
    config: CredentialProviderConfig, *, service_account_tokens: bool = True
) -> list[str]:
    """``validateCredentialProviderConfig``: the field errors, in the kubelet's words (empty = valid).

    ``service_account_tokens`` is the ``KubeletServiceAccountTokenForCredentialProviders`` feature gate.
    """
    errs: list[str] = []
    if not config.providers:
        errs.append("providers: Required value: at least 1 item in plugins is required")
    seen: set[str] = set()
    for p in config.providers:
        if "/" in p.name:
            errs.append(
                f"providers.name: Invalid value: {go_quote(p.name)}: provider name cannot contain '/'"
            )
        if " " in p.name:
            errs.append(
                f"providers.name: Invalid value: {go_quote(p.name)}: provider name cannot contain spaces"
            )
        if p.name == ".":
            errs.append(f"providers.name: Invalid value: {go_quote(p.name)}: provider name cannot be '.'")
        if p.name == "..":
            errs.append(f"providers.name: Invalid value: {go_quote(p.name)}: provider name cannot be '..'")
        if p.name in seen:
            errs.append(f"providers.name: Duplicate value: {go_quote(p.name)}")
        seen.add(p.name)
        if p.api_version == "":
            errs.append("providers.apiVersion: Required value")
        elif p.api_version not in API_VERSIONS:
            supported = ", ".join(go_quote(v) for v in API_VERSIONS)
            errs.append(
                f"providers.apiVersion: Unsupported value: {go_quote(p.api_version)}: supported values: {supported}"
            )
        if not p.match_images:
            errs.append("providers.matchImages: Required value: at least 1 item in matchImages is required")
        for m in p.match_images:
            try:
                go_url_parse("https://" + m)
            except GoURLError as e:
                errs.append(
                    f"providers.matchImages: Invalid value: {go_quote(m)}: match image is invalid: {e}"
                )
        if p.default_cache_duration is None:
            errs.append("providers.defaultCacheDuration: Required value")
        elif p.default_cache_duration < 0:
            errs.append(
                f"providers.defaultCacheDuration: Invalid value: {go_quote(format_go_duration(p.default_cache_duration))}: "
                "must be greater than or equal to 0"
            )
        ta = p.token_attributes
        if ta is None:
            continue
        path = "providers.tokenAttributes"
        if not service_account_tokens:
            errs.append(
                f"{path}: Forbidden: tokenAttributes is not supported when "
                "KubeletServiceAccountTokenForCredentialProviders feature gate is disabled"
            )
        if not ta.service_account_token_audience:
            errs.append(f"{path}.serviceAccountTokenAudience: Required value")
        if ta.require_service_account is None:
            errs.append(f"{path}.requireServiceAccount: Required value")
        if p.api_version != V1:
            errs.append(f"{path}: Forbidden: tokenAttributes is only supported for {V1} API version")
        if ta.require_service_account is False and ta.required_service_account_annotation_keys:
            errs.append(
                f"{path}.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false "
                "when requiredServiceAccountAnnotationKeys is set"
            )
        for sub, keys in (
            ("requiredServiceAccountAnnotationKeys", ta.required_service_account_annotation_keys),
            ("optionalServiceAccountAnnotationKeys", ta.optional_service_account_annotation_keys),
        ):
            seen_keys: set[str] = set()
            for k in keys:
                errs.extend(
                    f"{path}.{sub}: Invalid value: {go_quote(k)}: {msg}"
                    for msg in _is_qualified_name(k.lower())
                )
                if k in seen_keys:
                    errs.append(f"{path}.{sub}: Duplicate value: {go_quote(k)}")
                seen_keys.add(k)
        both = sorted(
            set(ta.required_service_account_annotation_keys)
            & set(ta.optional_service_account_annotation_keys)
        )
        if both:
            errs.append(
                f"{path}: Invalid value: {_go_string_slice(both)}: annotation keys cannot be both required and optional"
            )
        if not ta.cache_type:
            errs.append(
                f"{path}.cacheType: Required value: cacheType is required to be set when tokenAttributes is "
                f"specified. Supported values are: {', '.join(CACHE_TYPES)}"
            )
        elif ta.cache_type not in CACHE_TYPES:
            supported = ", ".join(go_quote(v) for v in CACHE_TYPES)
            errs.append(
                f"{path}.cacheType: Unsupported value: {go_quote(ta.cache_type)}: supported values: {supported}"
            )
    return errs


# ---------------------------------------------------------------------------------------------------------------
# The request and the response
# ---------------------------------------------------------------------------------------------------------------


def _go_json_dumps(obj: object) -> str:
    """encoding/json's Encoder output (compact, HTML-escaped, U+2028/2029 escaped)."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        s = s.replace(raw, esc)
    return s


def encode_request(
    api_version: str, image: str, token: str = "", annotations: Mapping[str, str] | None = None
) -> bytes:
    """The bytes the kubelet writes to the plugin's stdin: one JSON document and a newline.

    ``serviceAccountToken``/``serviceAccountAnnotations`` exist only in v1 and are left out when empty.
    """
    req: dict[str, object] = {"kind": REQUEST_KIND, "apiVersion": api_version, "image": image}
    if api_version == V1:
        if token:
            req["serviceAccountToken"] = token
        if annotations:
            req["serviceAccountAnnotations"] = dict(sorted(annotations.items()))
    return (_go_json_dumps(req) + "\n").encode("utf-8", "replace")


class Reason(str, enum.Enum):
    """Why the kubelet took nothing from a provider for this pull."""

    EXEC_FAILED = "exec-failed"  # could not start, non-zero exit, killed by a signal
    TIMEOUT = "timeout"  # the 1 minute deadline passed
    UNREADABLE = (
        "unreadable"  # stdout is not exactly one JSON object (log line, BOM, YAML, 2 documents, empty ...)
    )
    API_VERSION_MISMATCH = "api-version-mismatch"
    WRONG_KIND = "wrong-kind"  # kind missing or not CredentialProviderResponse
    UNKNOWN_FIELD = "unknown-field"  # anywhere, field names are case-sensitive
    DUPLICATE_FIELD = "duplicate-field"
    WRONG_TYPE = "wrong-type"  # e.g. cacheDuration as a number, auth as a list
    BAD_DURATION = "bad-duration"  # cacheDuration a string time.ParseDuration refuses
    TOKEN_ECHOED = "token-echoed"  # a password equals the service account token (cacheType not Token)
    INVALID_CACHE_KEY_TYPE = "invalid-cache-key-type"  # missing or not exactly Image|Registry|Global
    # the plugin is not run at all:
    SERVICE_ACCOUNT_REQUIRED = "service-account-required"
    REQUIRED_ANNOTATION_MISSING = "required-annotation-missing"
    TOKEN_REQUEST_FAILED = "token-request-failed"


#: The reasons that all surface as the kubelet's one generic decoding error.
DECODE_REASONS = frozenset(
    {Reason.WRONG_KIND, Reason.UNKNOWN_FIELD, Reason.DUPLICATE_FIELD, Reason.WRONG_TYPE, Reason.BAD_DURATION}
)
_GENERIC_DECODE_ERROR = "error decoding credential provider plugin response from stdout"


@dataclass(frozen=True)
class Rejection:
    """The kubelet discarded a provider's answer (or never asked)."""

    reason: Reason
    detail: str  # what exactly is wrong (the kubelet itself hides decoding details)
    kubelet_error: str  # the error text the kubelet logs


class ResponseRejected(Exception):
    """Raised by :func:`decode_response` / :func:`check_response`."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason.value}: {rejection.detail}")
        self.rejection = rejection

    @property
    def reason(self) -> Reason:
        return self.rejection.reason


@dataclass(frozen=True)
class CredentialProviderResponse:
    api_version: str
    kind: str
    cache_key_type: str
    cache_duration: int | None  # nanoseconds; None = absent or null
    auth: dict[str, AuthConfig] | None  # None = absent or null


def _reject(reason: Reason, detail: str, kubelet_error: str | None = None) -> ResponseRejected:
    return ResponseRejected(Rejection(reason, detail, kubelet_error if kubelet_error is not None else detail))


def decode_response(stdout: bytes, api_version: str) -> CredentialProviderResponse:
    """Read a plugin's stdout exactly as the kubelet does; :class:`ResponseRejected` when it would not use it."""
    try:
        doc = _parse_json(stdout)
        got_version, kind = _interpret(doc)
    except ValueError as e:
        raise _reject(Reason.UNREADABLE, str(e), f"error reading GVK from response: {e}") from None
    if got_version != api_version:
        msg = (
            "apiVersion from credential plugin response did not match expected apiVersion:"
            f"{api_version}, actual apiVersion:{got_version}"
        )
        raise _reject(Reason.API_VERSION_MISMATCH, msg)
    if kind != RESPONSE_KIND:
        detail = "Object 'Kind' is missing" if not kind else f"kind {go_quote(kind)} is not {RESPONSE_KIND}"
        raise _reject(Reason.WRONG_KIND, detail, _GENERIC_DECODE_ERROR)
    st = _StrictErrors()
    try:
        decoded = _RESPONSE.decode(doc, "", st)
    except _FatalDecode as e:
        reason = Reason.BAD_DURATION if e.kind == "duration" else Reason.WRONG_TYPE
        raise _reject(reason, str(e), _GENERIC_DECODE_ERROR) from None
    if st.all:
        first = st.all[0]
        reason = Reason.UNKNOWN_FIELD if first.startswith("unknown") else Reason.DUPLICATE_FIELD
        raise _reject(reason, "strict decoding error: " + ", ".join(st.all), _GENERIC_DECODE_ERROR)
    auth = decoded["auth"]
    return CredentialProviderResponse(
        api_version=decoded["apiVersion"],
        kind=decoded["kind"],
        cache_key_type=decoded["cacheKeyType"],
        cache_duration=decoded["cacheDuration"],
        auth=None if auth is None else {k: AuthConfig(v["username"], v["password"]) for k, v in auth.items()},
    )


def check_response(
    response: CredentialProviderResponse, image: str, *, token: str = "", cache_type: str = ""
) -> str:
    """The checks ``provide`` makes after decoding; returns the base cache key (image, registry or global)."""
    if token and cache_type != "Token":
        for entry in (response.auth or {}).values():
            if entry.password == token:
                raise _reject(
                    Reason.TOKEN_ECHOED,
                    "Credential provider plugin returned the service account token as the password for image "
                    f"{go_quote(image)}, which is not allowed when service account cache type is not set to 'Token'",
                )
    if response.cache_key_type == "Image":
        return image
    if response.cache_key_type == "Registry":
        return parse_registry(image)
    if response.cache_key_type == "Global":
        return GLOBAL_CACHE_KEY
    raise _reject(
        Reason.INVALID_CACHE_KEY_TYPE,
        f"credential provider plugin did not return a valid cacheKeyType: {go_quote(response.cache_key_type)}",
    )


def judge_response(
    stdout: bytes | str,
    *,
    api_version: str = V1,
    image: str = "registry.example.com/app",
    token: str = "",
    cache_type: str = "",
) -> Rejection | None:
    """Would the kubelet use this plugin output?  ``None`` if yes, else the :class:`Rejection` (exit code aside)."""
    try:
        response = decode_response(stdout.encode() if isinstance(stdout, str) else stdout, api_version)
        check_response(response, image, token=token, cache_type=cache_type)
    except ResponseRejected as e:
        return e.rejection
    return None


# ---------------------------------------------------------------------------------------------------------------
# Clock, service account, records
# ---------------------------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now_ns(self) -> int: ...


class RealClock:
    def now_ns(self) -> int:
        return time.time_ns()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ns: int = 1_700_000_000 * _S) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, by: str | float) -> None:
        """Move forward by a Go duration string (``"6h"``, ``"1ns"``) or a number of seconds."""
        self._now += parse_go_duration(by) if isinstance(by, str) else round(by * _S)


@dataclass(frozen=True)
class ServiceAccount:
    """The pod's service account as the kubelet sees it for token mode.

    ``token`` is what the TokenRequest returns: a string, or a callable called on every lookup (the kubelet asks
    for a token before its cache check); a callable that raises models a refused TokenRequest.
    """

    name: str
    namespace: str = "default"
    uid: str = "00000000-0000-0000-0000-000000000001"
    annotations: Mapping[str, str] = field(default_factory=dict)
    token: str | Callable[[], str] = "header.payload.signature"
    pod_name: str = "pod"
    pod_uid: str = "00000000-0000-0000-0000-0000000000aa"

    def request_token(self) -> str:
        return self.token() if callable(self.token) else self.token


@dataclass(frozen=True)
class ExecRecord:
    """One plugin run."""

    provider: str
    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]
    stdin: bytes
    stdout: bytes
    stderr: bytes
    exit_code: int | None  # None: could not start; negative: killed by that signal (Python's convention)
    duration: float  # seconds, wall clock
    timed_out: bool = False
    pipes_held_open: bool = False  # something (a grandchild) kept stdout/stderr open past the deadline
    start_error: str | None = None

    @property
    def request(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.stdin)
        return result


class ProviderStatus(str, enum.Enum):
    NOT_MATCHED = "not-matched"  # matchImages did not match: the plugin is not involved
    SKIPPED = "skipped"  # token mode and no usable service account: not run
    CACHE_HIT = "cache-hit"
    OK = "ok"  # ran, answer accepted
    REJECTED = "rejected"  # ran, answer (or run) discarded


@dataclass(frozen=True)
class ProviderResult:
    provider: str
    status: ProviderStatus
    auth: Mapping[str, AuthConfig] = field(default_factory=dict)  # what it adds to the keyring
    rejection: Rejection | None = None
    exec: ExecRecord | None = None
    response: CredentialProviderResponse | None = None
    cache_key: tuple[str, str] | None = (
        None  # (base key, service account key) it was stored under / read from
    )
    expires_at_ns: int | None = None  # when stored

    @property
    def reason(self) -> Reason | None:
        return self.rejection.reason if self.rejection else None


@dataclass(frozen=True)
class PullResult:
    image: str
    credentials: list[tuple[str, str]]  # what the runtime gets, in order; [] = anonymous pull
    matches: list[KeyringMatch]
    providers: list[ProviderResult]

    @property
    def anonymous(self) -> bool:
        """No credentials: the runtime pulls anonymously.  (With credentials, there is no anonymous fallback.)"""
        return not self.credentials

    def by_provider(self, name: str) -> ProviderResult:
        for r in self.providers:
            if r.provider == name:
                return r
        raise KeyError(name)


@dataclass
class _CacheEntry:
    auth: dict[str, AuthConfig]
    expires_at_ns: int


# ---------------------------------------------------------------------------------------------------------------
# Running a plugin
# ---------------------------------------------------------------------------------------------------------------


def _reader(fd: int, buf: bytearray) -> None:
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buf += chunk
    except OSError:
        return
    finally:
        os.close(fd)


def _writer(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:  # EPIPE: the plugin did not read stdin; Go ignores that too
        pass
    finally:
        os.close(fd)


def _signal_name(signum: int) -> str:
    try:
        name = signal.strsignal(signum) or f"signal {signum}"
    except ValueError:
        name = f"signal {signum}"
    return name[0].lower() + name[1:]


def _run(
    provider: str,
    argv: list[str],
    *,
    stdin: bytes,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float,
    pipe_grace: float,
) -> ExecRecord:
    start = time.monotonic()
    deadline = start + timeout
    try:
        proc = subprocess.Popen(  # argv is the configured plugin, no shell, like exec.Cmd
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            close_fds=True,
        )
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        return ExecRecord(
            provider,
            tuple(argv),
            cwd,
            dict(env),
            stdin,
            b"",
            b"",
            None,
            time.monotonic() - start,
            start_error=f"fork/exec {argv[0]}: {reason}",
        )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = bytearray(), bytearray()
    threads = [
        threading.Thread(target=_writer, args=(os.dup(proc.stdin.fileno()), stdin), daemon=True),
        threading.Thread(target=_reader, args=(os.dup(proc.stdout.fileno()), out), daemon=True),
        threading.Thread(target=_reader, args=(os.dup(proc.stderr.fileno()), err), daemon=True),
    ]
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL to the direct child only, as exec.CommandContext does
        proc.wait()
        timed_out = True
    # Go's cmd.Wait also waits for stdout/stderr to reach EOF (no WaitDelay): a grandchild holding them keeps
    # the kubelet waiting, and the deadline can pass meanwhile.
    for t in threads[1:]:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads[1:]):
        timed_out = True
    held = False
    for t in threads[1:]:
        t.join(pipe_grace)
        held = held or t.is_alive()
    return ExecRecord(
        provider=provider,
        argv=tuple(argv),
        cwd=cwd,
        env=dict(env),
        stdin=stdin,
        stdout=bytes(out),
        stderr=bytes(err),
        exit_code=proc.returncode,
        duration=time.monotonic() - start,
        timed_out=timed_out,
        pipes_held_open=held,
    )


# ---------------------------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------------------------


class _Provider:
    def __init__(self, config: CredentialProvider) -> None:
        self.config = config
        self.cache: dict[tuple[str, str], _CacheEntry] = {}


class KubeletSimulator:
    """A kubelet's credential provider machinery, from start-up checks to the credentials of one pull.

    ``config``: a path (file or directory), a mapping, or a :class:`CredentialProviderConfig`.
    ``timeout``: the plugin deadline (the kubelet's is a hard 60 s; tests may shorten it).
    ``pipe_grace``: after the deadline, how long to wait for a grandchild to release stdout/stderr before giving
    up (the real kubelet would keep waiting; the record then says ``pipes_held_open``).
    ``base_env``: the kubelet's own environment (default ``os.environ`` at each run).
    ``cwd``: the kubelet's working directory for plugins (default: this process's).
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | CredentialProviderConfig,
        bin_dir: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        timeout: float = PLUGIN_TIMEOUT_SECONDS,
        pipe_grace: float = 5.0,
        base_env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        service_account_tokens: bool = True,
    ) -> None:
        self.bin_dir = os.fspath(bin_dir)
        self.clock: Clock = clock if clock is not None else RealClock()
        self.timeout = timeout
        self.pipe_grace = pipe_grace
        self.base_env = base_env
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.execs: list[ExecRecord] = []
        self.log: list[str] = []
        self.results: list[PullResult] = []
        # RegisterCredentialProviderPlugins, in its order
        if not os.path.exists(self.bin_dir):
            raise PluginBinaryError(f"plugin binary directory {self.bin_dir} did not exist")
        loaded = config if isinstance(config, CredentialProviderConfig) else load_config(config)
        errors = validate_config(loaded, service_account_tokens=service_account_tokens)
        if errors:
            raise ConfigValidationError(errors)
        for p in loaded.providers:
            self._look_path(os.path.normpath(os.path.join(self.bin_dir, p.name)))
        self.config = loaded
        self._providers = [_Provider(p) for p in loaded.providers]

    @staticmethod
    def _look_path(path: str) -> None:
        """exec.LookPath on a path with a slash (on error Go returns "" as the path, hence the double space)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PluginBinaryError("plugin binary executable  did not exist") from None
        except OSError as e:
            raise PluginBinaryError(
                f"error inspecting binary executable : exec: {go_quote(path)}: {e.strerror}"
            ) from None
        if os.path.isdir(path) or not (st.st_mode & 0o111) or not os.access(path, os.X_OK):
            why = "is a directory" if os.path.isdir(path) else "permission denied"
            raise PluginBinaryError(f"error inspecting binary executable : exec: {go_quote(path)}: {why}")

    # -- public -------------------------------------------------------------------------------------------------

    def pull(self, image: str, service_account: ServiceAccount | None = None) -> list[tuple[str, str]]:
        """The credentials the runtime would get for ``image`` (in order); ``[]`` means an anonymous pull."""
        return self.lookup(image, service_account).credentials

    def lookup(self, image: str, service_account: ServiceAccount | None = None) -> PullResult:
        """Like :meth:`pull`, with the story of every provider.  ``image`` is normalized first."""
        repo = normalize_image(image)
        keyring = Keyring()
        providers: list[ProviderResult] = []
        for p in self._providers:
            res = self._provide(p, repo, service_account)
            providers.append(res)
            keyring.add(res.auth, p.config.name)
        self.log.extend(keyring.log)
        matches = keyring.lookup(repo)
        result = PullResult(repo, [(m.username, m.password) for m in matches], matches, providers)
        self.results.append(result)
        return result

    def provider_names(self) -> list[str]:
        return [p.config.name for p in self._providers]

    def cache_entries(self, provider: str) -> dict[tuple[str, str], tuple[dict[str, AuthConfig], int]]:
        """A provider's cache as stored: (base key, service account key) → (auth, expires at ns)."""
        for p in self._providers:
            if p.config.name == provider:
                return {k: (dict(e.auth), e.expires_at_ns) for k, e in p.cache.items()}
        raise KeyError(provider)

    def restart(self) -> None:
        """A kubelet restart: every cache is lost."""
        for p in self._providers:
            p.cache.clear()

    # -- one provider -------------------------------------------------------------------------------------------

    def _cache_get(self, p: _Provider, image: str, sa_key: str) -> tuple[tuple[str, str], _CacheEntry] | None:
        now = self.clock.now_ns()
        for base in (image, parse_registry(image), GLOBAL_CACHE_KEY):
            key = (base, sa_key)
            entry = p.cache.get(key)
            if entry is None:
                continue
            if now > entry.expires_at_ns:  # ExpirationStore: expired on Get → deleted, not found
                del p.cache[key]
                continue
            return key, entry
        return None

    def _skip(self, name: str, reason: Reason, detail: str) -> ProviderResult:
        self.log.append(detail)
        return ProviderResult(name, ProviderStatus.SKIPPED, rejection=Rejection(reason, detail, detail))

    def _provide(  # noqa: PLR0911, PLR0912 - pluginProvider.provide, step by step
        self, p: _Provider, image: str, sa: ServiceAccount | None
    ) -> ProviderResult:
        cfg = p.config
        if not any(urls_match(m, image) for m in cfg.match_images):
            return ProviderResult(cfg.name, ProviderStatus.NOT_MATCHED)
        token = ""
        annotations: dict[str, str] | None = None
        sa_key = ""
        ta = cfg.token_attributes
        if ta is not None:
            sa_name = sa.name if sa is not None else ""
            if not sa_name and ta.require_service_account:
                return self._skip(
                    cfg.name, Reason.SERVICE_ACCOUNT_REQUIRED, "Service account name is empty for pod"
                )
            if sa is not None and sa_name:
                annotations = {}
                for k in ta.required_service_account_annotation_keys:
                    if k not in sa.annotations:
                        return self._skip(
                            cfg.name,
                            Reason.REQUIRED_ANNOTATION_MISSING,
                            f"Failed to get service account data {sa.namespace}/{sa_name}: "
                            f"required annotation {k} not found",
                        )
                    annotations[k] = sa.annotations[k]
                for k in ta.optional_service_account_annotation_keys:
                    if k in sa.annotations:
                        annotations[k] = sa.annotations[k]
                try:
                    token = sa.request_token()
                except Exception as e:  # any failure of the TokenRequest
                    return self._skip(
                        cfg.name,
                        Reason.TOKEN_REQUEST_FAILED,
                        f"Error getting service account token {sa.namespace}/{sa_name}: {e}",
                    )
                parts: list[object] = [sa.namespace, sa_name, sa.uid, sorted(annotations.items())]
                if ta.cache_type == "Token":
                    token_hash = "sha256:" + hashlib.sha256(token.encode()).hexdigest() if token else ""
                    parts += ["token", token_hash]
                sa_key = json.dumps(parts)
        hit = self._cache_get(p, image, sa_key)
        if hit is not None:
            key, entry = hit
            return ProviderResult(
                cfg.name,
                ProviderStatus.CACHE_HIT,
                dict(entry.auth),
                cache_key=key,
                expires_at_ns=entry.expires_at_ns,
            )

        record = self._exec(cfg, image, token, annotations)
        try:
            response = self._read(record, image, cfg.api_version)
        except ResponseRejected as e:
            self.log.append(
                f"Failed getting credential from external registry credential provider: {e.rejection.kubelet_error}"
            )
            return ProviderResult(cfg.name, ProviderStatus.REJECTED, rejection=e.rejection, exec=record)
        try:
            base = check_response(response, image, token=token, cache_type=ta.cache_type if ta else "")
        except ResponseRejected as e:
            self.log.append(e.rejection.kubelet_error)
            return ProviderResult(
                cfg.name, ProviderStatus.REJECTED, rejection=e.rejection, exec=record, response=response
            )

        auth = dict(response.auth or {})
        duration = response.cache_duration
        if duration is None:
            duration = cfg.default_cache_duration or 0
            if duration == 0:
                return ProviderResult(cfg.name, ProviderStatus.OK, auth, exec=record, response=response)
        elif duration == 0:
            return ProviderResult(cfg.name, ProviderStatus.OK, auth, exec=record, response=response)
        key = (base, sa_key)
        expires = self.clock.now_ns() + duration
        p.cache[key] = _CacheEntry(dict(auth), expires)
        return ProviderResult(
            cfg.name,
            ProviderStatus.OK,
            auth,
            exec=record,
            response=response,
            cache_key=key,
            expires_at_ns=expires,
        )

    def _exec(
        self, cfg: CredentialProvider, image: str, token: str, annotations: Mapping[str, str] | None
    ) -> ExecRecord:
        env: dict[str, str] = dict(self.base_env if self.base_env is not None else os.environ)
        for var in cfg.env:  # "name=value" appended; the last one of a name wins (exec.Cmd dedupEnv)
            name, _, value = f"{var.name}={var.value}".partition("=")
            if name:
                env[name] = value
        record = _run(
            cfg.name,
            [os.path.normpath(os.path.join(self.bin_dir, cfg.name)), *cfg.args],
            stdin=encode_request(cfg.api_version, image, token, annotations),
            env=env,
            cwd=self.cwd,
            timeout=self.timeout,
            pipe_grace=self.pipe_grace,
        )
        self.execs.append(record)
        return record

    @staticmethod
    def _read(record: ExecRecord, image: str, api_version: str) -> CredentialProviderResponse:
        name = record.provider
        stderr = record.stderr.decode("utf-8", "replace")
        if record.timed_out:
            msg = f"error execing credential provider plugin {name} for image {image}: context deadline exceeded"
            raise _reject(Reason.TIMEOUT, msg, f"{msg}: {stderr}")
        if record.start_error is not None:
            msg = f"error execing credential provider plugin {name} for image {image}: {record.start_error}"
            raise _reject(Reason.EXEC_FAILED, msg, f"{msg}: {stderr}")
        if record.exit_code != 0:
            code = record.exit_code or 0
            status = f"exit status {code}" if code > 0 else f"signal: {_signal_name(-code)}"
            msg = f"error execing credential provider plugin {name} for image {image}: {status}"
            raise _reject(Reason.EXEC_FAILED, msg, f"{msg}: {stderr}")
        return decode_response(record.stdout, api_version)
