"""Hostile hosts: look-alikes of every cloud registry host never reach a cloud endpoint.

For each glob a cloud backend claims (``BACKENDS``' ``default_globs``, so a new backend joins),
a real-looking host is made and then bent: a suffix appended, a label misspelt, an account of
the wrong length, a port, a homoglyph (never another name the cloud itself could hand out). Each look-alike is asked for twice: under the fuzzing
config (the clouds' globs, then docker config files, then anonymous) and under a config whose
only rule is that cloud's backend for every image (built backends only), so the backend's own
host check is what stands. Every cloud endpoint, metadata address and proxy points at a
counting trap, and the trap must count nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.reliability.common import (
    V1,
    Tally,
    Trap,
    base_env,
    cloud_env,
    failure_problem,
    fuzz_config,
    run_plugin,
)

# What stands in for each '*' of a glob, by position, to make a real-looking host.
_FILL = {0: "123456789012", 1: "us-east-1"}


def real_host(glob: str) -> str:
    """A host the glob matches, with plausible labels for its wildcards."""
    labels = glob.split(".")
    stars = 0
    out = []
    for label in labels:
        if label == "*":
            out.append(_FILL.get(stars, "team"))
            stars += 1
        else:
            out.append(label)
    host = ".".join(out)
    return host.replace("123456789012.pkg.dev", "europe-docker.pkg.dev").replace(
        "123456789012.azurecr", "team.azurecr"
    )


def look_alikes(host: str) -> list[str]:
    """Hosts an attacker could register or type that resemble ``host`` without being it."""
    labels = host.split(".")
    first, rest = labels[0], ".".join(labels[1:])
    alikes = [
        f"{host}.evil.io",
        f"{host}-evil.io",
        f"{host}evil.io",
        f"{host}.",
        f"{host}:8443",
        f"{'.'.join(labels[:-1])}.co",
        host.replace("a", "\u0430", 1),  # a Cyrillic a
        host.replace(".", "-", 1),
    ]
    if rest:
        alikes.append(f"{first}.{rest.replace('.', '.evil.', 1)}")
    if first.isdigit():
        alikes += [f"{first[:-1]}.{rest}", f"{first}3.{rest}", f"evil.{rest}", f"{first}x.{rest}"]
    return [alike for alike in dict.fromkeys(alikes) if alike != host]


# Zones a cloud owns outright: every name under them is that cloud's registry (another
# customer's, maybe, but never an attacker's host), so a name there is no look-alike.
OWNED_ZONES = ("gcr.io", "pkg.dev", "azurecr.io", "azurecr.cn", "azurecr.us")


def _in_owned_zone(host: str) -> bool:
    return host.isascii() and any(host.endswith("." + zone) for zone in OWNED_ZONES)


def cases() -> list[tuple[str, str]]:
    """(backend name, look-alike host) for every cloud backend's globs."""
    from provider.backends import BACKENDS
    from provider.backends.base import CloudRule

    found: list[tuple[str, str]] = []
    for spec in BACKENDS:
        if spec.default_globs and issubclass(spec.rule, CloudRule):
            for glob in spec.default_globs:
                found += [
                    (spec.name, alike) for alike in look_alikes(real_host(glob)) if not _in_owned_zone(alike)
                ]
    return found


def _only_backend_config(root: Path, backend: str) -> Path:
    path = root / f"only-{backend}.json"
    document = {
        "apiVersion": "registry-credential-provider/v1alpha1",
        "kind": "ProviderConfig",
        "timeout": "20s",
        "rules": [{"backend": backend}],
    }
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def run(root: Path, limit: int | None = None, workers: int = 2) -> Tally:
    """Ask for every look-alike (the first ``limit``) under both configs; the trap counts."""
    from provider.backends import built

    tally = Tally("hostile hosts")
    root.mkdir(parents=True, exist_ok=True)
    all_cases = cases()[:limit] if limit else cases()
    with Trap() as trap:
        env = base_env(cloud_env(trap, root))
        config = fuzz_config(root)
        jobs: list[tuple[str, str, Path]] = []
        for backend, host in all_cases:
            jobs.append((backend, host, config))
            if built(backend):
                jobs.append((backend, host, _only_backend_config(root, backend)))

        def one(job: tuple[str, str, Path]) -> None:
            backend, host, config_path = job
            image = f"{host}/team/app:v1"
            request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": image})
            before = trap.count()
            result = run_plugin(["--config", str(config_path)], request.encode(), env)
            tally.case(backend, result.seconds)
            tally.scan(f"{backend} {host!r}", result.stdout, result.stderr)
            if result.code != 0:
                problem = failure_problem(result)
                if problem:
                    tally.fail(problem, f"{host!r}: {result.stderr.decode(errors='replace')}")
            after = trap.count()
            if after != before and workers == 1:
                tally.fail("reached-cloud", f"{backend} {host!r} under {config_path.name}")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, jobs))
        reached = trap.count()
        tally.notes["trap_requests"] = reached
        if reached:
            tally.fail("reached-cloud", f"{reached} requests reached the trap: {trap.requests[:3]}")
    return tally
