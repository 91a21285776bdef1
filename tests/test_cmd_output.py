"""The operator commands' shared output: aligned columns, colour that never breaks them, JSON."""

from __future__ import annotations

import io
import json
import re

from provider.commands import Streams
from provider.output import Check, checks_table, emit_json, exit_code, table, worst

ESCAPES = re.compile(r"\033\[[0-9;]*m")


def test_columns_align_with_and_without_colour() -> None:
    checks = [
        Check(status="ok", check="python", detail="3.11"),
        Check(status="fail", check="cache dir", detail="open to others\nsecond line"),
        Check(status="warn", check="x", detail=""),
    ]
    plain = checks_table(checks, colour=False)
    coloured = checks_table(checks, colour=True)
    assert "\033[31mfail\033[0m" in coloured
    assert "\033[32mok\033[0m" in coloured
    assert ESCAPES.sub("", coloured) == plain
    assert plain.splitlines() == [
        "ok    python     3.11",
        "fail  cache dir  open to others",
        "                 second line",
        "warn  x",
    ]


def test_table_header_and_last_column_unpadded() -> None:
    text = table([["a", "bb", "c"], ["dddd", "e", "ffff"]], header=["ONE", "TWO", "THREE"])
    assert text.splitlines() == ["ONE   TWO  THREE", "a     bb   c", "dddd  e    ffff"]
    assert table([]) == ""


def test_worst_and_exit_code() -> None:
    ok, warn, fail = (Check(status=s, check="c") for s in ("ok", "warn", "fail"))
    assert (worst([ok]), worst([ok, warn]), worst([warn, fail])) == ("ok", "warn", "fail")
    assert (exit_code([ok, warn]), exit_code([fail])) == (0, 1)


def test_json_is_one_document_with_a_newline() -> None:
    stdout = io.BytesIO()
    emit_json(Streams(io.BytesIO(), stdout, io.StringIO()), [Check(status="ok", check="c")])
    data = stdout.getvalue()
    assert data.endswith(b"\n")
    assert json.loads(data) == [{"status": "ok", "check": "c"}]
