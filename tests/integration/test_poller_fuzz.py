"""Fuzzed task bytes through a real poller on a real nats-server: whatever a task holds, it
ends once, on its first delivery, and its CLI (a stand-in that records its runs) runs at
most once.

The tasks come from a seeded generator (hypothesis is not in the dev lock): every JSON type
in every field, lone surrogates, NULs and other control characters, invalid UTF-8, numbers
no double holds, huge fields and broken JSON, in the code fields too (`repo`, `ref`, `base`).
The worker is a claude worker with a repository that it pushes, so every task that runs gets a
worktree, and one that writes a file goes through the git steps, with the task's first line
(NULs and all) as the commit title. Asserted for every task: exactly one of a dead letter
(then no CLI run) or a stored result that is not a rejection (then at most one run), both on
the first delivery; every cost in a result counted in the spend counter; the poller alive,
with no poller error logged; every change committed and pushed.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from poller.config import is_token
from tests.support import gitrepos
from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    directive,
    run,
    running_poller,
    standin_records,
    stream_messages,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

# A seed whose tasks' usable ids are all different: a rejected task stored after a completed
# one with the same id replaces its result (one result per subject), which the checks below,
# keyed by id, would read as a task that never ended.
SEED = 2127
COST = 0.01  # what the stand-in claude reports per run
FIELDS = (
    "task_id",
    "instructions",
    "from",
    "reply_to",
    "task_type",
    "payload",
    "timeout",
    "max_budget_usd",
    "metadata",
    "version",
    "unknown_field",
    "repo",
    "ref",
    "base",
)
HOSTILE_TEXT = (
    "",
    " \t\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff\ud800y",
    "\x1b[2J\x07\r\x7f\x85",
    "\u202e\ufeff\u2028",
    "t1\n",
    "a.b",
    "*",
    ">",
    "🙂" * 50,
)


# One value of each JSON type, for every field.
EACH_TYPE: tuple[Any, ...] = (None, True, 7, 0.5, "text", [1, "two", None], {"k": "v"})


def _awkward(rng: random.Random) -> list[Any]:
    """The values that broke or could break something."""
    return [
        False,
        0,
        -1,
        -0.0,
        1e308,
        2**63,
        10**400,  # no double holds it
        float("nan"),  # written NaN: Python's decoder takes it, no other reader
        float("inf"),
        *HOSTILE_TEXT,
        [],
        {},
        {"k": "\ud800", "\x00": [{"deep": [1]}]},
        {"a": [[[[[[[[]]]]]]]]},
        _deep(150),
        "z" * rng.choice((70_000, 300_000)),  # huge
    ]


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _first_line(rng: random.Random, i: int) -> str:
    """Instructions the stand-in obeys, often writing a file (so git runs), with hostile
    bytes after the directive on the first line (the commit title)."""
    ask: dict[str, Any] = {"print": rng.choice(["ok", "\x00\x1b[31m", "🙂", "\ufffd"])}
    roll = rng.random()
    if roll < 0.25:
        ask["write_file"] = f"made-{i}.txt"
    elif roll < 0.45:
        ask["exit"] = 3
    elif roll < 0.5:
        ask["fail"] = "error_max_turns"
    elif roll < 0.55:
        ask["out_bytes"] = 600_000  # past the output cap: cut, read as text, no cost
    tail = rng.choice(["", " \x00 NUL", "\x01\x02\x1b[0m", "\t\x7f", " é 🙂", "\u2028x"])
    return directive(**ask) + tail


def _task(rng: random.Random, i: int) -> dict[str, Any]:
    task: dict[str, Any] = {"task_id": f"fz{i}", "instructions": _first_line(rng, i)}
    if rng.random() < 0.3:
        task["instructions"] += "\n" + rng.choice(HOSTILE_TEXT) + "\nmore lines"
    return task


def _encode(rng: random.Random, obj: Any) -> bytes:
    if rng.random() < 0.15:  # UTF-8 where it can; a lone surrogate then makes it invalid
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(obj).encode()


def _broken(rng: random.Random, good: bytes) -> bytes:
    """Byte-level damage to a valid task."""
    cut = rng.randrange(1, len(good))
    return rng.choice(
        [
            good[:cut],
            good[:cut] + b"\xff\xfe" + good[cut:],
            b"\xef\xbb\xbf" + good,  # a BOM
            good.replace(b'"instructions": "', b'"instructions": "\x00\x01\n', 1),
            good[:-1] + b', "task_id": 7}',  # a second task_id of another type
            b"[" + good + b"]",
            b'"' + good.replace(b'"', b"'") + b'"',
            b"",
            b"null",
            b"\x00" * 64,
        ]
    )


def tasks(seed: int = SEED) -> list[bytes]:
    """Every field with every value, plus random hostile tasks and broken bytes."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for field in FIELDS:
        for value in [*EACH_TYPE, *rng.sample(_awkward(rng), 6)]:
            task = _task(rng, len(out))
            task[field] = value
            out.append(_encode(rng, task))
    for _ in range(40):
        task = _task(rng, len(out))
        for field in rng.sample(FIELDS, rng.randint(1, 3)):
            if rng.random() < 0.2:
                task.pop(field, None)
            else:
                task[field] = rng.choice([*EACH_TYPE, *_awkward(rng)])
        out.append(_encode(rng, task))
    for _ in range(25):
        out.append(_broken(rng, _encode(rng, _task(rng, len(out)))))
    for _ in range(20):  # valid tasks, for the git steps and the spend
        out.append(_encode(rng, _task(rng, len(out))))
    return out


def task_id_of(data: bytes) -> str | None:
    """The id the poller can use for this task: what its decoder makes of the bytes."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    tid = obj.get("task_id") if isinstance(obj, dict) else None
    return tid if isinstance(tid, str) and is_token(tid) else None


def test_fuzzed_tasks_end_once_on_their_first_delivery(
    server: NatsServer, work: Path, tmp_path: Path
) -> None:
    up = gitrepos.upstream(tmp_path, {"README": "fuzz\n"})
    entry = gitrepos.repo_entry(up, gitrepos.mirror(tmp_path), push=True)
    repos = gitrepos.repos_file(
        tmp_path / "repos.json", {"app": entry}, worktrees=work / "worktrees", default="app"
    )
    sent = tasks()
    usable = [t for t in map(task_id_of, sent) if t]
    assert len(usable) == len(set(usable)), "pick a seed whose task ids differ"
    env = {
        "MODEL_BACKEND": "claude",
        "LLM": "claude-code",
        "STANDIN_COST_USD": str(COST),
        "BUDGET_DAILY_USD": "1000000",  # never reached: the spend is counted
        "REPOS_FILE": str(repos),
        "TASK_TIMEOUT": "20",
    }

    async def go() -> None:
        async with running_poller(server.url, work, max_deliver=3, env=env) as bus:
            js, poller = bus.js, bus.poller
            seqs = []
            for data in sent:
                ack = await js.publish("af.worker.w1.inbox", data, timeout=10)
                seqs.append(ack.seq)

            async def settled() -> bool:
                info = await js.consumer_info("AF_TASKS", "worker-w1")
                return bool(info.num_pending == 0 and info.num_ack_pending == 0)

            assert await wait_until(settled, 120, step=0.2), poller.events()[-5:]
            consumer = await js.consumer_info("AF_TASKS", "worker-w1")
            dead = Counter(rec["stream_seq"] for _, rec, _ in await stream_messages(js, "AF_DEAD"))
            attempts = {rec["attempt"] for _, rec, _ in await stream_messages(js, "AF_DEAD")}
            results = {r["task_id"]: r for _, r, _ in await stream_messages(js, "AF_RESULTS")}
            runs = Counter(r["task_id"] for r in standin_records(work, "start"))
            started = Counter(e["task_id"] for e in poller.logged("task_start"))
            kinds: Counter[str] = Counter()
            wrong: list[str] = []
            for data, seq in zip(sent, seqs, strict=True):
                tid = task_id_of(data)
                result = results.get(tid) if tid else None
                ran = result is not None and result["status"] != "rejected"
                said = f"seq {seq} {data[:100]!r}: dead letters {dead[seq]}, result {ran}"
                if dead[seq] + ran != 1:
                    wrong.append(f"{said}: must end once")
                if runs[tid] > 1 or started[tid] > 1 or (not ran and runs[tid]):
                    wrong.append(f"{said}: CLI started {runs[tid]} times, {started[tid]} logged")
                if result is not None and ran and result["attempt"] != 1:
                    wrong.append(f"{said}: result of delivery {result['attempt']}")
                if ran and result is not None:
                    kinds[result["status"]] += 1
                kinds["dead" if dead[seq] else "ran"] += 1
            assert wrong == [], f"{len(wrong)} wrong:\n" + "\n".join(wrong[:15])
            assert attempts <= {1}
            assert consumer.num_redelivered == 0
            assert poller.proc is not None and poller.proc.poll() is None, "the poller died"
            errors = {"task_error", "result_error", "unexpected_message"}
            assert [e for e in poller.events() if e.get("event") in errors] == []
            # Not vacuous: plenty of both, every kind of ending.
            assert kinds["dead"] >= 100 and kinds["ran"] >= 40, kinds
            assert kinds["completed"] and kinds["failed"], kinds
            costs = [r["cost_usd"] for r in results.values() if r.get("cost_usd")]
            assert len(costs) >= 30
            day = time.strftime("%Y-%m-%d", time.gmtime())
            try:
                counter = await js.get_msg("KV_AF_SPEND", subject=f"$KV.AF_SPEND.worker.w1.{day}")
            except nats.js.errors.NotFoundError:
                counter = None
            spent = json.loads(counter.data)["usd"] if counter else 0.0
            assert spent == pytest.approx(sum(costs)), (spent, sum(costs))
            changed = [r["code"] for r in results.values() if (r.get("code") or {}).get("branch")]
            assert len(changed) >= 10 and all(c["pushed"] for c in changed), changed
            assert {c["branch"] for c in changed} <= set(up.branches())

    run(go())
