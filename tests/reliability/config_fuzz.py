"""Fuzzing our config: every field wrong in every way, as YAML and as JSON, gives one
path-qualified error (or is accepted); hostile files (YAML bombs, deep nesting, symlink loops,
directories, unreadable files, invalid UTF-8) give one clean line through the zipapp.

The fields come from ``msgspec.inspect`` of ``ProviderConfig``, its ``cache`` and each backend's
rule struct (``BACKENDS``: a new backend joins), so no field is forgotten. Each case is timed:
the goal is under a second each (reported, never asserted in pytest)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import yaml

from tests.reliability.common import V1, Tally, base_env, failure_problem, run_plugin

WRONG_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "x",
    "-5m",
    "1h",
    "relative/path",
    "/abs/path",
    "a\x00b",
    "\u202e",
    "y" * 5000,
    [],
    ["x"],
    [None],
    [1],
    {},
    {"a": "b"},
    {"a": 1},
    [[[["deep"]]]],
]
# A valid value for required fields, so a base rule of each backend validates.
REQUIRED = {
    "paths": ["/var/lib/registry-credential-provider/{namespace}.json"],
    "address": "https://vault.example.com:8200",
}
MATCH = ["fuzz.example.com"]


def _base(rule: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": [rule]}


def _fields(struct: type) -> list[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return [field.encode_name for field in info.fields]


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, document with that field wrong) for every field and wrong value, plus an
    unknown field at each level."""
    from provider.backends import BACKENDS
    from provider.config import CacheConfig, ProviderConfig

    anonymous = {"backend": "anonymous", "match": MATCH}
    for name in _fields(ProviderConfig):
        for value in WRONG_VALUES:
            document = _base(anonymous)
            document[name] = value
            yield f"$.{name}", document
    for name in _fields(CacheConfig):
        for value in WRONG_VALUES:
            yield f"$.cache.{name}", {**_base(anonymous), "cache": {name: value}}
    yield "$.bogus", {**_base(anonymous), "bogus": 1}
    yield "$.cache.bogus", {**_base(anonymous), "cache": {"bogus": 1}}
    for spec in BACKENDS:
        info = msgspec.inspect.type_info(spec.rule)
        assert isinstance(info, msgspec.inspect.StructType)
        rule = {"backend": spec.name, "match": MATCH}
        rule.update({f.encode_name: REQUIRED[f.encode_name] for f in info.fields if f.required})
        for name in ["backend", *_fields(spec.rule)]:
            for value in WRONG_VALUES:
                yield f"$.rules[0].{name}", _base({**rule, name: value})
        yield f"$.rules[0].bogus ({spec.name})", _base({**rule, "bogus": 1})


def _one_error(message: str, source: str, field_path: str) -> str | None:
    """What is wrong with a config error's message, or None."""
    if "\n" in message:
        return "multi-line-error"
    if not message.startswith(f"{source}: $"):
        return "error-without-path"
    leaf = field_path.split(" ", maxsplit=1)[0].rsplit(".", 1)[-1]
    if leaf not in message and "rules[0]" not in message and "$:" not in message:
        return "error-names-another-field"
    return None


def check(tally: Tally, path: Path, field_path: str, form: str) -> None:
    from provider.config import load_config
    from provider.errors import ConfigError

    started = time.monotonic()
    try:
        load_config(str(path))
    except ConfigError as exc:
        problem = _one_error(str(exc), str(path), field_path)
        if problem:
            tally.fail(problem, f"{field_path} ({form}): {exc}")
    except Exception as exc:  # anything else escaping is the finding
        tally.fail(f"crash:{type(exc).__name__}", f"{field_path} ({form})")
    tally.case(form, time.monotonic() - started)


def run_fields(root: Path, limit: int | None = None) -> Tally:
    """Every field wrong in every way, written as JSON and as YAML (the first ``limit``)."""
    tally = Tally("config fuzz")
    root.mkdir(parents=True, exist_ok=True)
    for index, (field_path, document) in enumerate(documents()):
        if limit is not None and index >= limit:
            break
        as_json = root / "config.json"
        as_json.write_text(json.dumps(document))
        check(tally, as_json, field_path, "json")
        as_yaml = root / "config.yaml"
        as_yaml.write_text(yaml.safe_dump(document, allow_unicode=True))
        check(tally, as_yaml, field_path, "yaml")
    return tally


HEAD = "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def hostile_files(root: Path) -> Iterator[tuple[str, Path, tuple[str, ...]]]:
    """(name, config path, command prefix) for files that are no config at all."""
    root.mkdir(parents=True, exist_ok=True)
    bomb = billion_laughs()
    rule_bomb = bomb.replace("l0: &l0", "x0: &l0")
    contents: dict[str, str | bytes] = {
        "billion-laughs-at-top": HEAD + "rules: []\n" + bomb,
        "billion-laughs-in-rules": "anchors:\n"
        + "".join(f"  {line}\n" for line in rule_bomb.splitlines())
        + HEAD
        + "rules: *l8\n",
        "billion-laughs-in-match": HEAD
        + "x: &m ["
        + ",".join(['"a.io"'] * 9)
        + "]\n"
        + "rules:\n  - backend: anonymous\n    match: [*m, *m, *m, *m, *m, *m, *m, *m, *m]\n",
        "deep-yaml": HEAD + "rules: " + "[" * 50000 + "]" * 50000 + "\n",
        "deep-json": '{"rules": ' + "[" * 200000 + "]" * 200000 + "}",
        "deep-yaml-block": HEAD + "rules:\n" + "".join(" " * i + "- \n" for i in range(0, 4000, 1)),
        "invalid-utf8": HEAD.encode() + b"rules: [\xff\xfe]\n",
        "bom-json": b"\xef\xbb\xbf" + json.dumps(_base({"backend": "anonymous"})).encode(),
        "nul-bytes": HEAD.encode() + b"rules: []\x00\n",
        "empty": "",
        "just-null": "null\n",
        "a-list": "[1, 2]\n",
        "python-tag": HEAD + "rules: !!python/object/apply:os.system ['true']\n",
        "huge-key": HEAD + "rules: []\n" + "k" * 200000 + ": 1\n",
        "over-the-cap": HEAD + "rules: []\n#" + "x" * (300 * 1024) + "\n",
        "many-rules": HEAD + "rules:\n" + "  - {backend: anonymous, match: [a.io]}\n" * 5000,
    }
    for name, content in contents.items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        yield name, path, ()
    loop = root / "loop"
    if not loop.is_symlink():
        os.symlink(loop, loop)
    yield "symlink-loop", loop, ()
    a, b = root / "loop-a", root / "loop-b"
    if not a.is_symlink():
        os.symlink(b, a)
        os.symlink(a, b)
    yield "symlink-loop-2", a, ()
    directory = root / "a-directory"
    directory.mkdir(exist_ok=True)
    yield "directory", directory, ()
    yield "missing", root / "missing.yaml", ()
    unreadable = root / "unreadable.yaml"
    unreadable.write_text(HEAD + "rules: [{backend: anonymous}]\n")
    unreadable.chmod(0o600)
    # Root reads every file; without the capabilities that let it, another user's 0600 file is
    # unreadable to root too (and the zipapp's own files, root's, stay readable).
    nobody: tuple[str, ...] = ()
    if os.geteuid() == 0:
        os.chown(unreadable, 65534, 65534)
        drop = "-dac_override,-dac_read_search"
        nobody = ("setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}")
    yield "unreadable", unreadable, nobody


def run_files(root: Path, zipapp: Path) -> Tally:
    """Each hostile file as ``--config`` of a kubelet-mode exec: one clean line, within a second."""
    tally = Tally("config files")
    request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": "a.io/x"}).encode()
    cache = root / "cache"
    env = base_env({"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(cache)})
    for name, path, prefix in hostile_files(root / "files"):
        result = run_plugin(["--config", str(path)], request, env, zipapp=zipapp, prefix=prefix)
        tally.case(f"file:{name}", result.seconds)
        if result.code == 0 and name in ("bom-json", "many-rules"):
            continue  # a valid config behind a BOM, 5000 rules: an answer is right
        problem = failure_problem(result)
        if problem:
            tally.fail(problem, f"{name}: {result.stderr.decode(errors='replace')[:200]}")
        tally.scan(name, result.stdout, result.stderr)
    return tally
