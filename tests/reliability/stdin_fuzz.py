"""Fuzzing stdin: requests of every shape through the built zipapp, one exec per case.

Cases come from hypothesis (fixed seed): well-formed requests over every apiVersion/kind pair
and hostile hosts, the same with each field given a wrong type or an extra field, and then the
bytes bent: truncated, a BOM, control characters, invalid UTF-8, duplicate keys, deep nesting,
huge or empty. The judge: a failure is exit 1, nothing on stdout and one stderr line (never a
traceback); an answer (exit 0) is one the kubelet simulator accepts strictly for that request's
apiVersion, image and token; no sentinel secret on stderr, and the docker password on stdout
only for its own registry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.kubelet_sim import judge_response
from tests.reliability.common import (
    API_VERSIONS,
    DOCKER_PASSWORD,
    SA_TOKEN,
    Tally,
    Trap,
    base_env,
    cloud_env,
    failure_problem,
    fuzz_config,
    run_plugin,
)
from tests.reliability.hostile import look_alikes, real_host

KINDS = ("CredentialProviderRequest", "CredentialProviderResponse", "credentialproviderrequest", "", "Pod")
HOSTS = (
    "registry.example.com",
    "a.registry.example.com",
    "registry.example.com:5000",
    "docker.io",
    "quay.io",
    "127.0.0.1:5000",
    "[::1]:5000",
    "localhost",
)
WRONG: list[Any] = [None, 0, -1, 1.5, True, [], {}, ["x"], {"a": 1}, "", "x" * 300]


def _hostile_hosts() -> list[str]:
    from provider.backends import BACKENDS

    hosts: list[str] = []
    for spec in BACKENDS:
        for glob in spec.default_globs[:2]:
            hosts += look_alikes(real_host(glob))[:4]
    return hosts


def images() -> st.SearchStrategy[str]:
    host = st.sampled_from([*HOSTS, *_hostile_hosts()])
    path = st.lists(
        st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?", fullmatch=True), min_size=1, max_size=3
    )
    ref = st.builds(
        lambda h, p, t: f"{h}/{'/'.join(p)}{t}",
        host,
        path,
        st.sampled_from(["", ":v1", "@sha256:" + "a" * 64]),
    )
    return st.one_of(
        ref, ref, ref, st.text(max_size=40), st.sampled_from(["", " ", "nginx", "/x", "a//b", "UPPER/x"])
    )


def requests() -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries(
        {
            "kind": st.sampled_from(KINDS),
            "apiVersion": st.sampled_from([*API_VERSIONS, "credentialprovider.kubelet.k8s.io/v2", "v1", ""]),
            "image": images(),
        },
        optional={
            "serviceAccountToken": st.sampled_from([SA_TOKEN, "", "x"]),
            "serviceAccountAnnotations": st.dictionaries(
                st.sampled_from(["eks.amazonaws.com/ecr-role-arn", "a/b", "x"]),
                st.text(max_size=10),
                max_size=2,
            ),
        },
    )

    def bend(request: dict[str, Any], field: str, value: Any, extra: str | None) -> dict[str, Any]:
        bent = dict(request)
        if field in bent:
            bent[field] = value
        if extra:
            bent[extra] = value
        return bent

    wrong = st.builds(
        bend,
        base,
        st.sampled_from(["kind", "apiVersion", "image", "serviceAccountToken", "serviceAccountAnnotations"]),
        st.sampled_from(WRONG),
        st.sampled_from([None, None, "extra", "Image", "metadata"]),
    )
    return st.one_of(base, base, wrong)


def _dup_key(text: str, key: str, value: str) -> str:
    return text.replace("{", "{" + json.dumps(key) + ":" + json.dumps(value) + ",", 1)


def cases() -> st.SearchStrategy[bytes]:
    """One stdin, as bytes."""

    def encode(request: dict[str, Any], form: str, where: float, junk: bytes) -> bytes:  # noqa: PLR0911 - one return per form
        text = json.dumps(request, ensure_ascii=form != "ascii")
        data = text.encode()
        cut = int(len(data) * where)
        if form == "truncated":
            return data[:cut]
        if form == "bom":
            return b"\xef\xbb\xbf" + data
        if form == "control":
            return data[:cut] + junk + data[cut:]
        if form == "invalid-utf8":
            return data[:cut] + b"\xff\xfe\xc3" + data[cut:]
        if form == "duplicate":
            return _dup_key(text, "image", "registry.example.com/dup").encode()
        if form == "nested":
            return (b"[" * int(where * 100000) + b"]" * int(where * 100000))[: 1 << 20]
        if form == "nested-field":
            return json.dumps({**request, "extra": {}}).replace("{}", "[" * 5000 + "]" * 5000).encode()
        if form == "huge":
            return json.dumps({**request, "image": "r.io/" + "a" * int(where * 300000)}).encode()
        if form == "trailing":
            return data + b"\n" + data
        if form == "empty":
            return b""
        return data

    forms = st.sampled_from(
        ["plain"] * 6
        + ["ascii", "truncated", "bom", "control", "invalid-utf8", "duplicate", "nested", "nested-field"]
        + ["huge", "trailing", "empty"]
    )
    junk = st.binary(min_size=1, max_size=4).map(lambda b: bytes(x % 32 for x in b))
    bent = st.builds(encode, requests(), forms, st.floats(0, 1), junk)
    return st.one_of(bent, bent, bent, bent, st.binary(max_size=200))


def generate(count: int) -> list[bytes]:
    """``count`` cases from hypothesis, the same every run (fixed seeds)."""
    found: list[bytes] = []
    round_ = 0
    while len(found) < count:
        want = count - len(found)

        @seed(20260 + round_)
        @settings(
            max_examples=want,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
        @given(cases())
        def collect(case: bytes) -> None:
            found.append(case)

        collect()
        round_ += 1
    return found[:count]


def judge(data: bytes, result_code: int, stdout: bytes, stderr: bytes, tally: Tally) -> None:
    """Record what is wrong with one exec's answer to ``data``."""
    what = repr(data[:120])
    tally.scan(f"stderr for {what}", stderr)
    if result_code != 0:
        from tests.reliability.common import Exec

        problem = failure_problem(Exec(result_code, stdout, stderr, 0.0))
        if problem:
            tally.fail(problem, f"{what} -> {stderr.decode(errors='replace')[:200]}")
        return
    try:
        request = json.loads(data.decode("utf-8", "replace"))  # as Go reads invalid UTF-8
        api_version, image = request["apiVersion"], request["image"]
        token = request.get("serviceAccountToken", "") if api_version == API_VERSIONS[0] else ""
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        tally.fail("answered-unreadable-request", f"{what} ({type(exc).__name__})")
        return
    if not isinstance(token, str):
        token = ""
    rejection = judge_response(stdout, api_version=api_version, image=image, token=token)
    if rejection is not None:
        tally.fail(f"kubelet-rejects:{rejection.reason.value}", f"{what}: {rejection.detail}")
    if DOCKER_PASSWORD.encode() in stdout and not str(image).split("/")[0].endswith("registry.example.com"):
        tally.fail("secret-leaked", f"the docker password answered {what}")
        tally.secrets_found += 1


def run(root: Path, count: int, workers: int = 2) -> Tally:
    """Exec the zipapp once per case, ``workers`` at a time."""
    tally = Tally("stdin fuzz")
    root.mkdir(parents=True, exist_ok=True)
    inputs = generate(count)
    with Trap() as trap:
        env = base_env(cloud_env(trap, root))
        args = ["get-credentials", "--config", str(fuzz_config(root))]

        def one(data: bytes) -> None:
            result = run_plugin(args, data, env)
            tally.case("exec", result.seconds)
            judge(data, result.code, result.stdout, result.stderr, tally)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, inputs))
        tally.notes["cloud_trap_requests"] = trap.count()
    return tally
