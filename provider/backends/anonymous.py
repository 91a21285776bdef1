"""The ``anonymous`` backend: public images, pulled without credentials."""

from __future__ import annotations

from collections.abc import Mapping

from provider.backends.base import Answer, BackendSpec, Finding, Lookup, RuleBase

__all__ = ["SPEC", "AnonymousBackend", "AnonymousRule"]

# Nothing about a public image's access changes quickly; an hour spares the kubelet execs.
DEFAULT_CACHE_SECONDS = 3600.0


class AnonymousRule(RuleBase, tag="anonymous", frozen=True):
    """Public images: answer with no credentials, so the kubelet pulls anonymously."""


class AnonymousBackend:
    """Answers every image with empty auth, which makes the kubelet pull anonymously."""

    def get_credentials(self, lookup: Lookup) -> Answer:
        return Answer(credential=None, cache_seconds=DEFAULT_CACHE_SECONDS)

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None:
        return None  # answering costs nothing


def _doctor(rule: RuleBase, environ: Mapping[str, str], timeout: float) -> list[Finding]:
    return [Finding("ok", "needs no identity")]


SPEC = BackendSpec(
    name="anonymous",
    title="public images, no credentials",
    rule=AnonymousRule,
    backend=AnonymousBackend,
    doctor=_doctor,
)
