"""The kubelet's image matching, reproduced exactly.

The kubelet decides both which plugin runs for an image (``matchImages``) and which entries of
a plugin's ``auth`` map apply to it with one function, ``URLsMatchStr`` in
``pkg/credentialprovider/keyring.go``. It parses both strings with Go's ``url.Parse`` after
prefixing ``https://``, splits the host with ``net.SplitHostPort``, and requires: the same port
string, the same number of host labels, every label matching with Go's ``filepath.Match``, and
the glob's path being a raw string prefix of the image's path. Case matters. Any parse error
means "no match". We use this one module for our rules and to check the keys we answer with,
so the plugin can never disagree with the kubelet about what a key covers.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "SchemelessURL",
    "go_path_match",
    "parse_schemeless",
    "rule_matches",
    "split_host_port",
    "urls_match",
]

# Characters Go's url.Parse accepts in a host besides letters, digits and bytes >= 0x80
# (shouldEscape with encodeHost).
_HOST_EXTRA = frozenset("-_.~!$&'()*+,;=:[]<>\"%")
_HEX = frozenset("0123456789abcdefABCDEF")


class BadURLError(ValueError):
    """Go's url.Parse would reject the string (the kubelet then treats it as no match)."""


class BadPatternError(ValueError):
    """Go's filepath.Match would return ErrBadPattern (the kubelet then treats it as no match)."""


class SchemelessURL(NamedTuple):
    """``host`` is url.URL.Host (with any port), ``path`` is the unescaped url.URL.Path."""

    host: str
    path: str


def _unescape(text: str) -> str:
    """Decode ``%XX`` escapes (already checked by ``_check_escapes``) as Go's url.unescape does."""
    if "%" not in text:
        return text
    parts = text.split("%")
    decoded = bytearray(parts[0].encode("utf-8", "surrogateescape"))
    for part in parts[1:]:
        decoded.append(int(part[:2], 16))
        decoded += part[2:].encode("utf-8", "surrogateescape")
    return decoded.decode("utf-8", "surrogateescape")


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _check_escapes(text: str, *, host: bool) -> None:
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise BadURLError(f"invalid URL escape {text[i : i + 3]!r}")
            # In a host Go accepts only %25 (a zone separator) and escapes of bytes >= 0x80.
            if host and text[i : i + 3] != "%25" and int(text[i + 1], 16) < 8:
                raise BadURLError(f"invalid URL escape {text[i : i + 3]!r}")
            i += 3
            continue
        if host and ord(char) < 0x80 and not (char.isascii() and char.isalnum()) and char not in _HOST_EXTRA:
            raise BadURLError(f"invalid character {char!r} in host name")
        i += 1


def _parse_host(host: str) -> str:
    # Go >= 1.26 rules (the strictest a kubelet may run with): an IP literal must open the
    # host and hold an IPv6 address, and an https host's port starts at its first colon.
    bracket = host.rfind("[")
    if bracket > 0:
        raise BadURLError("invalid IP-literal")
    if bracket == 0:
        end = host.rfind("]")
        if end < 0:
            raise BadURLError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise BadURLError(f"invalid port {host[end + 1 :]!r} after host")
        _check_escapes(host, host=True)
        literal = _unescape(host[1:end])
        from provider.goaddr import ParseAddrError, parse_addr  # only IP-literal hosts pay for it

        try:
            version = parse_addr(literal)
        except ParseAddrError as exc:
            raise BadURLError(f"invalid host: {exc}") from None
        if version == 4:
            raise BadURLError("invalid IP-literal")
        return _unescape(host)
    colon = host.find(":")
    if colon != -1 and not _valid_optional_port(host[colon:]):
        raise BadURLError(f"invalid port {host[colon:]!r} after host")
    _check_escapes(host, host=True)
    return _unescape(host)


def parse_schemeless(text: str) -> SchemelessURL:
    """Parse ``text`` as the kubelet's ``ParseSchemelessURL`` does (``url.Parse("https://" + text)``)."""
    raw = "https://" + text
    raw, _, fragment = raw.partition("#")
    _check_escapes(fragment, host=False)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise BadURLError("invalid control character in URL")
    rest = raw[len("https:") :]
    # Go keeps a lone trailing "?" as ForceQuery; either way the query is not part of the path.
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    authority, slash, path = rest[2:].partition("/")
    path = slash + path
    userinfo, at, host = authority.rpartition("@")
    if at and any(not (c.isascii() and c.isalnum()) and c not in "-._:~!$&'()*+,;=%@" for c in userinfo):
        raise BadURLError("invalid userinfo")
    _check_escapes(path, host=False)
    return SchemelessURL(host=_parse_host(host), path=_unescape(path))


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """``net.SplitHostPort``: ``(host, port)``, or None where Go returns an error."""
    last_colon = hostport.rfind(":")
    if last_colon < 0:
        return None
    start, end_of_host = 0, 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 != last_colon:
            return None
        host = hostport[1:close]
        start, end_of_host = 1, close + 1
    else:
        host = hostport[:last_colon]
        if ":" in host:
            return None
    if "[" in hostport[start:] or "]" in hostport[end_of_host:]:
        return None
    return host, hostport[last_colon + 1 :]


def host_labels_and_port(hostport: str) -> tuple[list[str], str]:
    """The kubelet's ``SplitURL``: host labels split on ``.``, and the port string (maybe empty)."""
    split = split_host_port(hostport)
    host, port = split if split is not None else (hostport, "")
    return host.split("."), port


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern, star = pattern[1:], True
    in_range = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif char == "[":
            in_range = True
        elif char == "]":
            in_range = False
        elif char == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_escaped(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPatternError(chunk)
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPatternError(chunk)
    char, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPatternError(chunk)
    return char, rest


def _match_chunk(chunk: str, text: str) -> tuple[str, bool]:  # noqa: PLR0912 - mirrors Go's matchChunk
    failed = False
    while chunk:
        if not failed and not text:
            failed = True
        head = chunk[0]
        if head == "[":
            char = ""
            if not failed:
                char, text = text[0], text[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            matched, ranges = False, 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                low, chunk = _get_escaped(chunk)
                high = low
                if chunk[0] == "-":
                    high, chunk = _get_escaped(chunk[1:])
                if not failed and low <= char <= high:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif head == "?":
            if not failed:
                failed = text[0] == "/"
                text = text[1:]
            chunk = chunk[1:]
        else:
            if head == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPatternError("trailing backslash")
            if not failed:
                failed = chunk[0] != text[0]
                text = text[1:]
            chunk = chunk[1:]
    return ("", False) if failed else (text, True)


def go_path_match(pattern: str, name: str) -> bool:
    """Go's ``path/filepath.Match`` on Unix; raises ``BadPatternError`` where Go returns an error."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name
        rest, ok = _match_chunk(chunk, name)
        if ok and (not rest or pattern):
            name = rest
            continue
        if star:
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                rest, ok = _match_chunk(chunk, name[i + 1 :])
                if ok and not (not pattern and rest):
                    name, found = rest, True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def urls_match(glob: str, target: str) -> bool:
    """True when the kubelet's ``URLsMatchStr(glob, target)`` would report a match."""
    try:
        glob_url = parse_schemeless(glob)
        target_url = parse_schemeless(target)
    except BadURLError:
        return False
    glob_labels, glob_port = host_labels_and_port(glob_url.host)
    target_labels, target_port = host_labels_and_port(target_url.host)
    if glob_port != target_port or len(glob_labels) != len(target_labels):
        return False
    if not target_url.path.startswith(glob_url.path):
        return False
    try:
        return all(go_path_match(g, t) for g, t in zip(glob_labels, target_labels))
    except BadPatternError:
        return False


def rule_matches(glob: str, target: str) -> bool:
    """Our rules' matching: the kubelet's ``urls_match``, except that a path matches whole
    segments (``r.io/team-a`` covers ``r.io/team-a`` and ``r.io/team-a/app``, never
    ``r.io/team-a-evil/app``), as docker config keys do. Only ``matchImages`` and auth keys need
    the kubelet's raw string prefix."""
    if not urls_match(glob, target):
        return False
    path = parse_schemeless(glob).path
    if not path or path.endswith("/"):
        return True
    rest = parse_schemeless(target).path[len(path) :]
    return rest == "" or rest.startswith("/")
