"""The upstream GKE plugin's command line, for the ``auth-provider-gcp`` drop-in.

GKE's kubelet config runs ``auth-provider-gcp get-credentials --v=3`` (older nodes add
``--authFlow=gcr``). Its klog flags change nothing here and are dropped; ``--authFlow`` /
``-a`` is accepted for ``gcr`` (tokens of the node's or the pod's identity), while the
``dockercfg`` and ``dockercfg-url`` flows (a docker config in instance metadata) are not
served. Anything else is left for our own parser, which rejects what it does not know.
Standard library only: this runs on every pull of the drop-in.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["upstream_args"]

AUTH_FLOW_FLAGS = ("--authFlow", "-a")
SUPPORTED_FLOWS = ("gcr",)
# klog flags upstream accepts, with whether each takes a value (``--name value``).
KLOG_FLAGS = {
    "--vmodule": True,
    "--log_dir": True,
    "--log_file": True,
    "--log_file_max_size": True,
    "--stderrthreshold": True,
    "--logtostderr": False,
    "--alsologtostderr": False,
    "--add_dir_header": False,
    "--skip_headers": False,
    "--skip_log_headers": False,
    "--one_output": False,
}


def upstream_args(argv: Sequence[str]) -> list[str]:
    """``argv`` without the upstream-only flags we accept and ignore; ``ValueError`` (a usage
    message) for an auth flow this drop-in does not serve."""
    words = list(argv)
    kept: list[str] = []
    while words:
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if name in AUTH_FLOW_FLAGS:
            if not equals:
                if not words:
                    raise ValueError(f"argument {name}: expected one argument")
                value = words.pop(0)
            if value not in SUPPORTED_FLOWS:
                raise ValueError(
                    f"argument {name}: auth flow {value!r} is not served by this drop-in "
                    f"(only {', '.join(SUPPORTED_FLOWS)}; serve a docker config with a 'dockerconfig' rule)"
                )
            continue
        if name in KLOG_FLAGS:
            if KLOG_FLAGS[name] and not equals and words:
                words.pop(0)
            continue
        kept.append(word)
    return kept
