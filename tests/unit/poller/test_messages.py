"""Task parsing (never raises) and result encoding (always fits)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.messages import (
    MAX_NESTING,
    MAX_RESULT_BYTES,
    MAX_TASK_BUDGET_USD,
    MIN_TASK_BUDGET_USD,
    Rejection,
    Result,
    Task,
    parse_task,
)


def _parse(obj: object) -> Task | Rejection:
    return parse_task(json.dumps(obj).encode(), 1 << 20)


def test_full_task() -> None:
    t = _parse(
        {
            "version": 1,
            "task_id": "T-1_a",
            "instructions": "do",
            "from": "me",
            "reply_to": "me",
            "task_type": "review",
            "payload": {"pr": 3},
            "timeout": 30,
            "metadata": {"k": "v"},
        }
    )
    assert isinstance(t, Task)
    assert (t.task_id, t.sender, t.timeout, t.metadata) == ("T-1_a", "me", 30.0, {"k": "v"})
    assert t.prompt().startswith("do\n\nPayload (JSON):\n")
    assert json.loads(t.prompt().split("Payload (JSON):\n")[1]) == {"pr": 3}


@pytest.mark.parametrize(
    ("data", "tid"),
    [
        (b"not json", None),
        (b"\xff\xfe", None),
        (b"[1]", None),
        (b'"a string"', None),
        (b"{}", None),
        (b'{"task_id": null, "instructions": "x"}', None),
        (b'{"task_id": ["a"], "instructions": "x"}', None),
        (b'{"task_id": "a.b", "instructions": "x"}', None),
        (b'{"task_id": "", "instructions": "x"}', None),
        (b'{"task_id": "' + b"a" * 129 + b'", "instructions": "x"}', None),
        (b'{"task_id": "ok\\n", "instructions": "x"}', None),  # `$` matched before "\n"
        (b'{"task_id": "ok", "instructions": ""}', "ok"),
        (b'{"task_id": "ok", "instructions": 3}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "timeout": 0}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "timeout": true}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 0}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": "1"}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": Infinity}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": NaN}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": -1}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 1e300}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 1000000.01}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 1e-7}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 1' + b"0" * 400 + b"}", "ok"),
        (b'{"task_id": "ok", "instructions": "x", "from": 1}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "version": 2}', "ok"),
        # A task the poller could not describe to its CLI or in a result: refused up front.
        (b'{"task_id": "ok", "instructions": "x\\ud800"}', "ok"),  # the prompt has no UTF-8
        (b'{"task_id": "ok", "instructions": "x", "metadata": {"a": NaN}}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "payload": [-Infinity]}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "payload": 1e999}', "ok"),  # inf in Python
        # float(10**400) raised OverflowError out of the parser
        (b'{"task_id": "ok", "instructions": "x", "timeout": 1' + b"0" * 400 + b"}", "ok"),
        (b'{"task_id": "ok", "instructions": "x", "max_budget_usd": 1' + b"0" * 400 + b"}", "ok"),
        (b'{"task_id": "ok", "instructions": "x", "from": "' + b"f" * 4097 + b'"}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "reply_to": "' + b"r" * 4097 + b'"}', "ok"),
        (b'{"task_id": "ok", "instructions": "x", "task_type": "' + b"t" * 4097 + b'"}', "ok"),
    ],
)
def test_rejections(data: bytes, tid: str | None) -> None:
    r = parse_task(data, 1 << 20)
    assert isinstance(r, Rejection) and r.reason
    assert r.task_id == tid


@pytest.mark.parametrize("usd", [MIN_TASK_BUDGET_USD, 0.5, 2, MAX_TASK_BUDGET_USD])
def test_a_budget_within_the_bounds_is_kept(usd: float) -> None:
    t = _parse({"task_id": "ok", "instructions": "x", "max_budget_usd": usd})
    assert isinstance(t, Task) and t.max_budget_usd == usd


def test_a_budget_out_of_bounds_says_which_are_allowed() -> None:
    r = _parse({"task_id": "ok", "instructions": "x", "max_budget_usd": 1e300})
    assert isinstance(r, Rejection)
    assert r.reason == "max_budget_usd must be a number of dollars from 0.000001 to 1000000"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("data", "tid"),
    [
        (_nested(1000), None),  # RecursionError in the decoder
        (b'{"task_id": "d1", "instructions": "x", "payload": ' + _nested(1000) + b"}", None),
        (b'{"task_id": "d2", "instructions": "x", "payload": ' + _nested(MAX_NESTING) + b"}", "d2"),
        (b'{"task_id": "d3", "instructions": "x", "metadata": {"a": ' + _nested(200) + b"}}", "d3"),
    ],
)
def test_deep_nesting_is_rejected_without_recursion_error(data: bytes, tid: str | None) -> None:
    r = parse_task(data, 1 << 20)
    assert isinstance(r, Rejection) and r.task_id == tid
    assert r.reason == f"JSON nested more than {MAX_NESTING} levels deep"


def test_nesting_up_to_the_limit_is_a_task() -> None:
    data = b'{"task_id": "ok", "instructions": "x", "payload": ' + _nested(MAX_NESTING - 1) + b"}"
    task = parse_task(data, 1 << 20)
    assert isinstance(task, Task)
    assert task.prompt().startswith("x\n\nPayload (JSON):\n[")


def test_an_integer_too_long_to_convert_is_rejected() -> None:
    r = parse_task(
        b'{"task_id": "n", "instructions": "x", "timeout": ' + b"9" * 5000 + b"}", 1 << 20
    )
    assert isinstance(r, Rejection) and r.reason.startswith("not JSON: ")


def test_too_large_keeps_a_valid_id() -> None:
    data = json.dumps({"task_id": "big", "instructions": "x" * 100}).encode()
    r = parse_task(data, 50)
    assert isinstance(r, Rejection) and r.task_id == "big" and "bytes" in r.reason


def _result(output: str) -> Result:
    return Result(
        task_id="t",
        worker_id="w",
        backend="command",
        llm="x",
        model="",
        status="completed",
        exit_code=0,
        output=output,
        output_truncated=False,
        output_bytes=len(output),
        stderr_tail="",
        started_at="",
        ended_at="",
        duration_s=0.0,
        attempt=1,
        host="h",
        poller_version="0",
    )


def test_result_is_cut_to_fit_even_when_escaping_inflates_it() -> None:
    r = _result("\x01" * 400_000)  # each becomes \u0001 (6 bytes) in JSON
    data = r.encode()
    assert len(data) <= MAX_RESULT_BYTES
    back = json.loads(data)
    assert back["output_truncated"] is True and back["version"] == 1
    assert back["output_bytes"] == 400_000


def test_lone_surrogates_from_a_task_are_escaped_not_raised() -> None:
    """A lone surrogate in metadata made encode() raise after the CLI ran: no result, the
    task naked and the CLI run again until max_deliver."""
    data = b'{"task_id": "s1", "instructions": "x", "from": "\\udfff", '
    data += b'"metadata": {"k\\ud800": ["\\ud800"]}}'
    task = parse_task(data, 1 << 20)
    assert isinstance(task, Task) and task.metadata == {"k\ud800": ["\ud800"]}
    r = _result("out")
    r.metadata, r.sender = task.metadata, task.sender
    encoded = r.encode()
    assert b"\\ud800" in encoded and encoded.isascii()
    back = json.loads(encoded)
    assert back["metadata"] == {"k\ud800": ["\ud800"]} and back["from"] == "\udfff"
    assert back["output"] == "out" and "error" not in back


def test_encode_never_raises_and_always_fits() -> None:
    r = _result("answer")
    r.cost_usd, r.cost_source = 0.5, "reported"
    r.usage = {"input_tokens": float("nan")}  # type: ignore[dict-item]  # not JSON
    back = json.loads(r.encode())
    assert back["error"].startswith("the result could not be encoded: ValueError(")
    assert (back["task_id"], back["status"], back["cost_usd"]) == ("t", "completed", 0.5)
    assert back["output"] == "" and "usage" not in back
    huge = _result("y" * 1000)
    huge.labels = {"k": "v" * (MAX_RESULT_BYTES + 1)}  # nothing of it can be cut or dropped
    data = huge.encode()
    assert len(data) <= MAX_RESULT_BYTES
    assert "even without output and metadata" in json.loads(data)["error"]


def test_a_change_too_large_for_a_result_keeps_its_counts_and_branch_not_its_patch() -> None:
    """The patch is cut at PATCH_CAP where it is made; a result still too large once its output
    is cut (a base64 patch, 1,000 long paths) drops the patch and most of the file list, never
    the counts, the branch or the result itself: the whole change is on the branch."""
    files = [
        {"path": f"{'d' * 600}/{i}.txt", "status": "added", "insertions": 1, "deletions": 0}
        for i in range(1000)
    ]
    r = _result("o" * 600_000)
    r.code = {
        "repo": "app",
        "base": "a" * 40,
        "head": "b" * 40,
        "branch": "af/t/w",
        "pushed": True,
        "pull_request_url": None,
        "files": files,
        "insertions": 1000,
        "deletions": 0,
        "patch": "P" * 340_000,
        "patch_encoding": "base64",
        "patch_truncated": False,
        "check": {"passed": True, "exit_code": 0, "duration_s": 1.0, "output_tail": "c" * 8000},
        "setup": None,
    }
    data = r.encode()
    assert len(data) <= MAX_RESULT_BYTES
    code = json.loads(data)["code"]
    assert (code["patch"], code["patch_truncated"], "patch_encoding" in code) == ("", True, False)
    assert (len(code["files"]), code["files_truncated"]) == (100, True)
    assert (code["insertions"], code["branch"], code["head"]) == (1000, "af/t/w", "b" * 40)
    assert code["check"]["output_tail"] == "c" * 1024
    assert "error" not in json.loads(data)


def test_small_result_untouched() -> None:
    back = json.loads(_result("hello").encode())
    assert back["output"] == "hello" and back["output_truncated"] is False
    assert "usage" not in back and "metadata" not in back


def _doc_schemas() -> dict[str, dict[str, Any]]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "messages.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    schemas = [json.loads(b) for b in blocks if '"$schema"' in b]
    return {str(s["title"]): s for s in schemas}


def test_documented_schemas_match_the_code() -> None:
    schemas = _doc_schemas()
    task = schemas["fleetctl task, version 1"]
    result = schemas["fleetctl result, version 1"]
    assert task["required"] == ["task_id", "instructions"]
    budget = task["properties"]["max_budget_usd"]
    assert (budget["minimum"], budget["maximum"]) == (MIN_TASK_BUDGET_USD, MAX_TASK_BUDGET_USD)
    full = _result("x")
    full.usage, full.cost_usd, full.code, full.error = {}, 0.1, {}, "e"
    full.task_type, full.reply_to, full.sender, full.metadata = "t", "r", "f", {"k": 1}
    produced = set(full.to_dict())
    assert produced <= set(result["properties"])
    assert set(result["required"]) <= set(_result("x").to_dict())
