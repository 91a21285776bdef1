"""Reasoning about kubelet image globs: which images one glob leaves to another, and the traps.

The kubelet's matching (``provider.matching``) decides one image at a time; ``validate``
needs to compare globs with each other: does a ``matchImages`` entry send the kubelet to us
for every image a rule of ours serves (``covers``), for some of them (``overlaps``), or for
none, and why not (``explain``, ``hint``). Host labels of images never hold glob characters, so a
literal label is checked with the kubelet's own ``filepath.Match`` and two patterns are
compared conservatively (``*`` covers anything, otherwise only an identical pattern).
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from provider.matching import (
    BadPatternError,
    BadURLError,
    go_path_match,
    host_labels_and_port,
    parse_schemeless,
)

__all__ = ["Glob", "GlobIndex", "covers", "explain", "hint", "never_matches", "overlaps", "parse", "traps"]

T = TypeVar("T")
_META = frozenset("*?[\\")
DOCKER_HUB_ALIASES = frozenset(
    {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "hub.docker.com"}
)


class Glob(NamedTuple):
    """A glob as the kubelet splits it: host labels, port string (``""`` for none) and path."""

    text: str
    labels: tuple[str, ...]
    port: str
    path: str

    @property
    def hostname(self) -> str:
        return ".".join(self.labels)


def parse(text: str) -> Glob | None:
    """The glob's parts, or None when the kubelet cannot parse it (it then never matches)."""
    try:
        url = parse_schemeless(text)
    except BadURLError:
        return None
    labels, port = host_labels_and_port(url.host)
    return Glob(text=text, labels=tuple(labels), port=port, path=url.path)


def _literal(label: str) -> bool:
    return not (_META & set(label))


def _match(pattern: str, label: str) -> bool:
    try:
        return go_path_match(pattern, label)
    except BadPatternError:
        return False


def _label_covers(outer: str, inner: str) -> bool:
    if _literal(inner):
        return _match(outer, inner)
    return outer == inner or set(outer) == {"*"}


def _labels_overlap(first: str, second: str) -> bool:
    if _literal(first) and _literal(second):
        return first == second
    if _literal(second):
        return _match(first, second)
    if _literal(first):
        return _match(second, first)
    return True  # two patterns: assume some label matches both


def covers(outer: Glob, inner: Glob) -> bool:
    """Whether every image ``inner`` matches is also matched by ``outer``."""
    return (
        outer.port == inner.port
        and len(outer.labels) == len(inner.labels)
        and inner.path.startswith(outer.path)
        and all(_label_covers(o, i) for o, i in zip(outer.labels, inner.labels))
    )


def overlaps(first: Glob, second: Glob) -> bool:
    """Whether some image could match both (conservative: when unsure, yes)."""
    return (
        first.port == second.port
        and len(first.labels) == len(second.labels)
        and (first.path.startswith(second.path) or second.path.startswith(first.path))
        and all(_labels_overlap(a, b) for a, b in zip(first.labels, second.labels))
    )


class GlobIndex(Generic[T]):
    """Globs (each with an item of the caller's), found by the shape of their host, so that
    comparing every glob of one list with every glob of another costs time in proportion to
    their lengths, not to their product.

    Two globs can only cover or overlap each other with the same port and the same number of
    host labels; two literal hosts only when they are equal. So globs with a literal host are
    kept by (port, labels, host), those with a pattern in their host by (port, labels), and a
    question looks only where an answer can be (a pattern host is compared with every glob
    of its shape). Answers keep the order in which globs were added.
    """

    def __init__(self) -> None:
        self._literal: dict[tuple[str, int, str], list[tuple[int, Glob, T]]] = {}
        self._literal_by_shape: dict[tuple[str, int], list[tuple[int, Glob, T]]] = {}
        self._patterns: dict[tuple[str, int], list[tuple[int, Glob, T]]] = {}
        self._count = 0

    def add(self, glob: Glob, item: T) -> None:
        entry = (self._count, glob, item)
        self._count += 1
        shape = (glob.port, len(glob.labels))
        if all(_literal(label) for label in glob.labels):
            self._literal.setdefault((*shape, glob.hostname), []).append(entry)
            self._literal_by_shape.setdefault(shape, []).append(entry)
        else:
            self._patterns.setdefault(shape, []).append(entry)

    def _near(self, glob: Glob, *, every_literal: bool) -> list[tuple[int, Glob, T]]:
        shape = (glob.port, len(glob.labels))
        found = list(self._patterns.get(shape, ()))
        if all(_literal(label) for label in glob.labels):
            found += self._literal.get((*shape, glob.hostname), ())
        elif every_literal:
            found += self._literal_by_shape.get(shape, ())
        return sorted(found, key=lambda entry: entry[0])

    def covering(self, inner: Glob) -> list[tuple[Glob, T]]:
        """The globs that cover ``inner`` (a literal host never covers a pattern)."""
        return [(g, item) for _, g, item in self._near(inner, every_literal=False) if covers(g, inner)]

    def covered_by(self, outer: Glob) -> list[tuple[Glob, T]]:
        """The globs ``outer`` covers."""
        return [(g, item) for _, g, item in self._near(outer, every_literal=True) if covers(outer, g)]

    def overlapping(self, glob: Glob) -> list[tuple[Glob, T]]:
        """The globs some image could match together with ``glob``."""
        return [(g, item) for _, g, item in self._near(glob, every_literal=True) if overlaps(g, glob)]


def _port(port: str) -> str:
    return f"port {port}" if port else "no port"


def explain(glob: Glob, target: Glob) -> str | None:
    """Why the images ``target`` matches are not (all) matched by ``glob``, when the two are
    close enough for a reason to help (same host but for the port, a ``*`` one label short...)."""
    labels_match = len(glob.labels) == len(target.labels) and all(
        _labels_overlap(a, b) for a, b in zip(glob.labels, target.labels)
    )
    if labels_match and glob.port != target.port:
        return (
            f"ports differ ({_port(glob.port)} vs {_port(target.port)}): the kubelet compares them as "
            "strings, and no port is not ':443'"
        )
    starred = any("*" in label for label in glob.labels + target.labels)
    if len(glob.labels) != len(target.labels) and starred and glob.labels[-1:] == target.labels[-1:]:
        return (
            f"'*' stands for exactly one host label: {glob.hostname!r} has {len(glob.labels)} labels, "
            f"{target.hostname!r} has {len(target.labels)}"
        )
    if labels_match and glob.port == target.port and not target.path.startswith(glob.path):
        if glob.path.startswith(target.path):
            return f"it covers only the path {glob.path!r}"
        return f"path {glob.path!r} is not a prefix of {target.path!r}"
    return None


def hint(candidates: list[Glob], target: Glob) -> str | None:
    """``nearest 'x': why`` for the candidate most like ``target`` that has a helpful reason."""

    def score(glob: Glob) -> tuple[int, int, int, int]:
        same_suffix = 0
        for a, b in zip(reversed(glob.labels), reversed(target.labels)):
            if a != b:
                break
            same_suffix += 1
        return (
            int(glob.hostname == target.hostname),
            same_suffix,
            int(glob.port == target.port),
            -len(glob.path),
        )

    for glob in sorted(candidates, key=score, reverse=True):
        reason = explain(glob, target)
        if reason is not None:
            return f"nearest {glob.text!r}: {reason}"
    return None


def raw_prefix_reach(text: str) -> str | None:
    """For a ``matchImages`` entry with a path: that the kubelet, matching paths as raw string
    prefixes, also sends it images of other repositories (our rules match whole segments)."""
    glob = parse(text)
    if glob is None or not glob.path or glob.path.endswith("/") or any(c in glob.path for c in "*?["):
        return None
    other = text.rstrip("/") + "-other/app"
    return (
        f"the kubelet matches paths as raw string prefixes, so it also runs the plugin for other "
        f"repositories such as {other!r}; our rules match whole path segments and do not serve them "
        "with this path's credentials"
    )


def traps(text: str) -> list[str]:
    """What is wrong with a glob the kubelet accepts but that cannot work as meant."""
    found: list[str] = []
    lowered = text.lower()
    if lowered.startswith(("https://", "http://")):
        bare = text.split("://", 1)[1]
        found.append(
            f"has a scheme: the kubelet adds 'https://' itself, so this never matches; write {bare!r}"
        )
        return found
    if "?" in text or "#" in text:
        found.append(
            "'?' and '#' end the URL for the kubelet: it reads only what comes before them, "
            "and '?' is no wildcard"
        )
    glob = parse(text)
    if glob is None:
        return found
    path_start = text.find("/")
    path_text = text[path_start:] if path_start >= 0 else ""
    if any(c in path_text for c in "*?["):
        prefix = path_text[: min(i for i in (path_text.find(c) for c in "*?[") if i >= 0)]
        found.append(
            "a path is a plain prefix, not a glob: the kubelet compares '*' literally, so this never "
            f"matches; write {text[:path_start] + prefix!r}"
        )
    last = glob.path.rsplit("/", 1)[-1]
    if ":" in last or "@" in last:
        found.append(
            "images reach the kubelet's matching without tag or digest, so a ':tag' or '@digest' "
            "here never matches"
        )
    if glob.port in ("443", "80"):
        found.append(
            f"port :{glob.port} only matches images written with ':{glob.port}'; "
            f"'{glob.hostname}/app' has no port and does not match"
        )
    if len(glob.labels) == 1 and not glob.port and glob.labels[0] != "localhost":
        if set(glob.labels[0]) == {"*"}:
            found.append(
                "'*' alone matches single-label hosts only (such as 'localhost'), not every image: "
                "the kubelet has no catch-all glob"
            )
        else:
            found.append(
                f"{glob.labels[0]!r} cannot be a registry: images without a '.' or ':' in their first "
                "part belong to Docker Hub and reach the kubelet as 'docker.io/...'"
            )
    if glob.hostname != glob.hostname.lower():
        found.append(
            "host matching is case-sensitive and image hosts are usually lower case: check the spelling"
        )
    if glob.hostname in DOCKER_HUB_ALIASES:
        found.append("Docker Hub images reach the kubelet as 'docker.io/...': use 'docker.io'")
    return found


def never_matches(text: str) -> bool:
    """Whether no image the kubelet sends can match ``text`` (a scheme, a glob or a tag in the
    path, a single-label host that images never have)."""
    glob = parse(text)
    if glob is None or text.lower().startswith(("https://", "http://")):
        return True
    path_start = text.find("/")
    if path_start >= 0 and any(c in text[path_start:] for c in "*?["):
        return True
    last = glob.path.rsplit("/", 1)[-1]
    if ":" in last or "@" in last:
        return True
    label = glob.labels[0]
    return len(glob.labels) == 1 and not glob.port and label != "localhost" and set(label) != {"*"}
