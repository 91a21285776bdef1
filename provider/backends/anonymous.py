"""The ``anonymous`` backend: public images, pulled without credentials."""

from __future__ import annotations

from provider.backends.base import Answer, Lookup

# Nothing about a public image's access changes quickly; an hour spares the kubelet execs.
DEFAULT_CACHE_SECONDS = 3600.0


class AnonymousBackend:
    """Answers every image with empty auth, which makes the kubelet pull anonymously."""

    def get_credentials(self, lookup: Lookup) -> Answer:
        return Answer(credential=None, cache_seconds=DEFAULT_CACHE_SECONDS)

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        return None  # answering costs nothing
