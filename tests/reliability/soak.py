"""Soak: many execs of the zipapp over several registries, 16 at a time, repeated across
simulated kubelet restarts, all sharing one disk cache.

The registries: docker credential helper hosts (one helper script that counts its calls per
host), ECR through moto behind ``AwsFront``, GAR through the Google fake's metadata server,
and optionally ACR through the Azure fakes. Execs go to the zipapp directly, as a kubelet with
an empty in-memory cache would make them (each round is a kubelet restart, so nothing in the
kubelet keeps a credential: every pull reaches the plugin). Judged by: every exec answers with
that registry's credential, and each registry's token source is called exactly once over the
whole soak (the disk cache's single flight), counted at the servers and the helper."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.infra.azure import ACR_USERNAME, AzureWorld
from tests.infra.google import GoogleFake
from tests.infra.moto import AwsFront, MotoServer, moto_password
from tests.reliability.common import (
    AWS_SECRET,
    AWS_SESSION,
    HELPER_SECRET,
    SENTINELS,
    V1,
    Tally,
    base_env,
    loose_secret_files,
    run_plugin,
)

ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
GAR_HOST = "europe-docker.pkg.dev"


@dataclass
class Registry:
    """One registry of the soak: its host, how to tell its credential, how many token calls
    reached its source so far."""

    host: str
    password_ok: Callable[[str, str], bool]
    upstream_calls: Callable[[], int]


HELPER = """#!/bin/sh
read -r server
echo "$server" >> {calls}
printf '{{"ServerURL": "%s", "Username": "soak-user", "Secret": "{secret}-%s"}}' "$server" "$server"
"""


def _helper_registries(root: Path, count: int) -> tuple[list[Registry], Path, dict[str, object]]:
    bindir = root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    calls = root / "helper-calls"
    helper = bindir / "docker-credential-soak"
    helper.write_text(HELPER.format(calls=calls, secret=HELPER_SECRET))
    helper.chmod(0o700)
    hosts = [f"registry-{index}.soak.example" for index in range(count)]
    docker_config = root / "docker-config.json"
    docker_config.write_text(json.dumps({"credHelpers": dict.fromkeys(hosts, "soak")}))
    docker_config.chmod(0o600)

    def helper_registry(host: str) -> Registry:
        def password_ok(user: str, password: str) -> bool:
            return (user, password) == ("soak-user", f"{HELPER_SECRET}-{host}")

        def upstream_calls() -> int:
            return calls.read_text().split().count(host) if calls.exists() else 0

        return Registry(host, password_ok, upstream_calls)

    registries = [helper_registry(host) for host in hosts]
    rule: dict[str, object] = {"match": hosts, "backend": "dockerconfig", "files": [str(docker_config)]}
    return registries, bindir, rule


def setup(
    root: Path, moto: MotoServer, google: GoogleFake, azure: AzureWorld | None, helpers: int
) -> tuple[list[Registry], Path, dict[str, str], AwsFront]:
    """The registries, our config and the environment; the caller stops the returned front."""
    registries, bindir, helper_rule = _helper_registries(root, helpers)
    front = AwsFront(moto)
    registries.append(
        Registry(
            ECR_HOST,
            lambda user, password: (user, password) == ("AWS", moto_password(ACCOUNT)),
            lambda: len(front.calls_of("GetAuthorizationToken")),
        )
    )
    registries.append(
        Registry(
            GAR_HOST,
            lambda user, password: (user, password) == ("oauth2accesstoken", google.node_token),
            google.token_requests,
        )
    )
    rules: list[dict[str, object]] = [
        helper_rule,
        {"match": [ECR_HOST], "backend": "ecr"},
        {"match": [GAR_HOST], "backend": "gar"},
    ]
    env = base_env(
        {
            "PATH": f"{bindir}:/usr/bin:/bin",
            "AWS_ENDPOINT_URL_ECR": front.url,
            "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_SESSION_TOKEN": AWS_SESSION,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "GCE_METADATA_HOST": google.host,
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }
    )
    if azure is not None:
        world = azure
        registries.append(
            Registry(
                world.login_server,
                lambda user, password: user == ACR_USERNAME and bool(password),
                lambda: len(world.acr.exchanges()),
            )
        )
        rules.append(
            {"match": [world.login_server], "backend": "acr", "azureConfig": str(root / "no-azure.json")}
        )
        env.update(world.environ)
    config = root / "provider.json"
    config.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": rules}
        )
    )
    config.chmod(0o600)
    return registries, config, env, front


def run(
    root: Path,
    moto: MotoServer,
    *,
    execs: int = 200,
    concurrency: int = 16,
    rounds: int = 3,
    registry_count: int = 8,
    azure: AzureWorld | None = None,
    seed: int = 14,
) -> Tally:
    """``rounds`` kubelet restarts of ``execs`` pulls each, ``concurrency`` at a time, spread over
    ``registry_count``: ECR, GAR (and ACR when ``azure`` is given), the rest credential helper hosts."""
    tally = Tally("soak")
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with GoogleFake() as google:
        helpers = registry_count - 2 - (azure is not None)
        registries, config, env, front = setup(root, moto, google, azure, helpers)
        extra_secrets = [google.node_token, moto_password(ACCOUNT)]
        before = {registry.host: registry.upstream_calls() for registry in registries}
        try:
            for round_number in range(rounds):
                pulls = [registries[index % len(registries)] for index in range(execs)]
                rng.shuffle(pulls)

                def pull(registry: Registry, round_number: int = round_number) -> None:
                    request = json.dumps(
                        {
                            "kind": "CredentialProviderRequest",
                            "apiVersion": V1,
                            "image": f"{registry.host}/team/app",
                        }
                    ).encode()
                    result = run_plugin(["--config", str(config)], request, env)
                    tally.case(f"round {round_number}", result.seconds)
                    tally.scan("soak stderr", result.stderr)
                    for secret in extra_secrets:
                        if secret in result.stderr.decode(errors="replace"):
                            tally.secrets_found += 1
                            tally.fail("secret-leaked", "soak stderr: a token")
                    if result.code != 0:
                        tally.fail(
                            f"exit-{result.code}",
                            f"{registry.host}: {result.stderr.decode(errors='replace')}",
                        )
                        return
                    auth = json.loads(result.stdout).get("auth", {})
                    entry = auth.get(registry.host)
                    if entry is None or not registry.password_ok(
                        entry.get("username"), entry.get("password")
                    ):
                        tally.fail("wrong-credential", f"{registry.host}: answered for {sorted(auth)}")

                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    list(pool.map(pull, pulls))
            calls = Counter({r.host: r.upstream_calls() - before[r.host] for r in registries})
            for host, count in calls.items():
                if count != 1:
                    tally.fail("upstream-calls-not-one", f"{host}: {count} token calls")
            for path in loose_secret_files(root / "cache", [*SENTINELS, *extra_secrets]):
                tally.fail("secret-file-readable-by-others", path)
            tally.notes["soak"] = {
                "execs": execs * rounds,
                "rounds": rounds,
                "concurrency": concurrency,
                "registries": len(registries),
                "upstream_calls": sum(calls.values()),
            }
        finally:
            front.stop()
    return tally
