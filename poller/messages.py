"""Task and result messages (schemas in docs/messages.md), checked by hand: no extra dependency.

Parsing never raises: bad input becomes a `Rejection` that says why and, when it can, which
task id it was, so the poller can answer with a `rejected` result and a dead letter. A task
that parses can be described: its prompt encodes, its numbers are finite and the fields a
result echoes are bounded. Encoding a result never raises either (a result stored after the
CLI ran is what keeps the task from running again).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from poller import repos
from poller.config import is_token

VERSION = 1
STATUSES = ("completed", "failed", "timeout", "rejected", "cancelled")
# The server's default max payload is 1 MiB; a result must stay well under it.
MAX_RESULT_BYTES = 768 * 1024
STDERR_TAIL = 8 * 1024

_OPTIONAL_STR = ("from", "reply_to", "task_type")
# Deeper JSON is refused: Python's decoder and encoder recurse, so about 1,000 levels raise
# RecursionError (when decoding; far fewer when the payload is re-encoded for the prompt).
MAX_NESTING = 100
# `from`, `reply_to` and `task_type` are copied into the result: bounded, so that a result
# always fits (metadata, unbounded, is dropped from a result that would not).
MAX_ECHO_CHARS = 4096
# A task's `max_budget_usd`, in dollars: at most the largest per_task_usd fleet.yaml accepts
# (1e+300 means nothing a CLI can keep), at least what the CLI is passed (millionths).
MIN_TASK_BUDGET_USD = 0.000001
MAX_TASK_BUDGET_USD = 1_000_000


@dataclass(frozen=True)
class Task:
    task_id: str
    instructions: str
    sender: str | None = None
    reply_to: str | None = None
    task_type: str | None = None
    payload: Any = None
    timeout: float | None = None
    max_budget_usd: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The code it works on (docs/messages.md): a repository of the worker's REPOS_FILE (None:
    # the worker's default), the ref the publisher asked for, the commit it resolved it to.
    repo: str | None = None
    ref: str | None = None
    base: str | None = None

    def prompt(self) -> str:
        """What goes to the CLI's stdin: the instructions, then the payload as JSON if any."""
        if self.payload is None:
            return self.instructions
        return f"{self.instructions}\n\nPayload (JSON):\n{json.dumps(self.payload, indent=2)}"

    def prompt_bytes(self) -> bytes:
        """The prompt as UTF-8 (`parse_task` refuses a task whose prompt does not encode)."""
        return self.prompt().encode()


@dataclass(frozen=True)
class Rejection:
    reason: str
    task_id: str | None = None  # set only when it is a valid subject token


@dataclass(frozen=True)
class Delivered:
    """One delivery of a task message, as the delivery flow sees it: which stream message
    (`seq`), its delivery count (`attempt`), and what was published. `msg` is the bus's own
    handle on it, for acks; only poller/jetstream.py touches it."""

    seq: int
    attempt: int
    subject: str
    data: bytes
    msg: Any = field(default=None, compare=False, repr=False)


def _recover_id(obj: dict[str, Any]) -> str | None:
    tid = obj.get("task_id")
    return tid if isinstance(tid, str) and is_token(tid) else None


def _id_of(data: bytes) -> str | None:
    """The id of an oversized task, for its `rejected` result (the stream caps it at 1 MiB)."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return _recover_id(obj) if isinstance(obj, dict) else None


_TOO_DEEP = f"JSON nested more than {MAX_NESTING} levels deep"
_NOT_FINITE = "a number is NaN, Infinity or too large for a double (not JSON numbers)"


def _document_problem(value: Any) -> str | None:
    """Too deep, or a number that is not finite (Python's decoder takes `NaN`, `Infinity`
    and turns 1e999 into inf; no other reader would). Without recursion, so that any
    document the decoder accepted can be measured."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return _NOT_FINITE
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_NESTING:
            return _TOO_DEEP
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return None


def parse_task(data: bytes, max_bytes: int) -> Task | Rejection:
    """Decode and check one task message."""
    if len(data) > max_bytes:
        return Rejection(
            f"task is {len(data)} bytes, more than the {max_bytes} allowed", _id_of(data)
        )
    try:
        obj = json.loads(data)
    except RecursionError:
        return Rejection(_TOO_DEEP)
    except ValueError as e:  # not JSON, not UTF-8, or an integer of more than 4300 digits
        return Rejection(f"not JSON: {e.msg if isinstance(e, json.JSONDecodeError) else e}")
    problem = _document_problem(obj)
    if problem:
        return Rejection(problem, _recover_id(obj) if isinstance(obj, dict) else None)
    if not isinstance(obj, dict):
        return Rejection(f"a task must be a JSON object, not {type(obj).__name__}")
    tid = _recover_id(obj)
    raw_id = obj.get("task_id")
    if raw_id is None:
        return Rejection("task_id is missing")
    if not isinstance(raw_id, str):
        return Rejection(f"task_id must be a string, not {type(raw_id).__name__}")
    if tid is None:
        return Rejection("task_id must be 1-128 letters, digits, '-' or '_'")
    problem = _check_fields(obj)
    if problem:
        return Rejection(problem, tid)
    timeout = obj.get("timeout")
    budget = obj.get("max_budget_usd")
    task = Task(
        task_id=tid,
        instructions=obj["instructions"],
        sender=obj.get("from"),
        reply_to=obj.get("reply_to"),
        task_type=obj.get("task_type"),
        payload=obj.get("payload"),
        timeout=_positive(timeout),
        max_budget_usd=_positive(budget),
        metadata=obj.get("metadata") or {},
        repo=obj.get("repo"),
        ref=obj.get("ref"),
        base=obj.get("base"),
    )
    try:
        task.prompt_bytes()
    except UnicodeEncodeError as e:  # a lone surrogate ("\ud800") in the instructions
        return Rejection(f"instructions are not valid text: {e.reason} at character {e.start}", tid)
    return task


def _positive(value: Any) -> float | None:
    """A JSON number greater than 0 that a double holds (float(10**400) raises), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if 0 < number < math.inf else None


def _check_fields(obj: dict[str, Any]) -> str | None:
    version = obj.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        return f"version must be {VERSION}"
    instr = obj.get("instructions")
    if not isinstance(instr, str) or not instr.strip():
        return "instructions must be a non-empty string"
    for name in _OPTIONAL_STR:
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name} must be a string"
        if isinstance(obj.get(name), str) and len(obj[name]) > MAX_ECHO_CHARS:
            return f"{name} must be at most {MAX_ECHO_CHARS} characters"
    if obj.get("timeout") is not None and _positive(obj["timeout"]) is None:
        return "timeout must be a number of seconds greater than 0"
    budget = _positive(obj.get("max_budget_usd"))
    if obj.get("max_budget_usd") is not None and (
        budget is None or not MIN_TASK_BUDGET_USD <= budget <= MAX_TASK_BUDGET_USD
    ):
        return (
            f"max_budget_usd must be a number of dollars from {MIN_TASK_BUDGET_USD:f} "
            f"to {MAX_TASK_BUDGET_USD}"
        )
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return "metadata must be an object"
    return _code_problem(obj)


def _code_problem(obj: dict[str, Any]) -> str | None:
    """`repo`, `ref`, `base`: text that git can only read as a name, ref or commit."""
    checks = (("repo", repos.check_name), ("ref", repos.check_ref), ("base", repos.check_base))
    for name, check in checks:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return f"{name} must be a string"
        try:
            check(value)
        except repos.RepoError as e:
            return str(e)
    return None


@dataclass
class Result:
    """What the poller publishes to `<prefix>.result.<worker_id>.<task_id>`."""

    task_id: str
    worker_id: str
    backend: str
    llm: str
    model: str
    status: str
    exit_code: int | None
    output: str
    output_truncated: bool
    output_bytes: int
    stderr_tail: str
    started_at: str
    ended_at: str
    duration_s: float
    attempt: int
    host: str
    poller_version: str
    error: str | None = None
    usage: dict[str, int] | None = None
    cost_usd: float | None = None
    cost_source: str | None = None  # reported, priced or unknown (docs/messages.md)
    code: dict[str, Any] | None = None  # the task's change (docs/messages.md), with a repository
    task_type: str | None = None
    reply_to: str | None = None
    sender: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # the worker's, from fleet.yaml

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": VERSION}
        for k, v in self.__dict__.items():
            if k == "sender":
                k = "from"
            if v is None or (k in ("metadata", "labels") and not v):
                continue
            d[k] = v
        return d

    def encode(self) -> bytes:
        """JSON under MAX_RESULT_BYTES, and never an exception: cut `output` further if
        needed, then drop the metadata; a lone surrogate (echoed from a task) is escaped
        (`\\ud800`, the same string to a JSON reader); failing all that, the bare result
        with an `error` saying why."""
        try:
            return self._fitted()
        except Exception as e:  # a result that says why beats none: none reruns the CLI
            return self._bare(f"the result could not be encoded: {e!r}"[:2000])

    def _fitted(self) -> bytes:
        data = _dumps(self.to_dict())
        while len(data) > MAX_RESULT_BYTES and self.output:
            keep = max(0, len(self.output) // 2 - 1)
            self.output = self.output[:keep]
            self.output_truncated = True
            data = _dumps(self.to_dict())
        if len(data) > MAX_RESULT_BYTES and self.code:  # the change is whole on its branch
            self.code = _smaller_code(self.code)
            data = _dumps(self.to_dict())
        if len(data) > MAX_RESULT_BYTES:  # huge metadata: drop it rather than fail to publish
            self.metadata = {"dropped": "metadata too large for a result"}
            data = _dumps(self.to_dict())
        if len(data) > MAX_RESULT_BYTES:
            raise ValueError(f"{len(data)} bytes even without output and metadata")
        return data

    def _bare(self, error: str) -> bytes:
        """Only the fields the poller itself made, none a task or a CLI wrote."""
        keep = (
            *("task_id", "worker_id", "backend", "llm", "model", "status", "exit_code"),
            *("output_bytes", "started_at", "ended_at", "duration_s", "attempt", "host"),
        )
        d: dict[str, Any] = {"version": VERSION, **{k: getattr(self, k) for k in keep}}
        d |= {"output": "", "output_truncated": self.output_bytes > 0, "stderr_tail": ""}
        d["poller_version"] = self.poller_version
        d["error"] = error
        if isinstance(self.cost_usd, float | int) and math.isfinite(self.cost_usd):
            d |= {"cost_usd": self.cost_usd, "cost_source": self.cost_source}
        return json.dumps(d, default=repr).encode("ascii", "backslashreplace")


def _smaller_code(code: dict[str, Any]) -> dict[str, Any]:
    """`code` without its patch, and with its file list and tails cut (the branch has it all)."""
    smaller = dict(code, patch="", patch_truncated=True)
    smaller.pop("patch_encoding", None)
    files = smaller.get("files")
    if isinstance(files, list) and len(files) > 100:
        smaller["files"], smaller["files_truncated"] = files[:100], True
    for step in ("setup", "check"):
        if isinstance(smaller.get(step), dict):
            smaller[step] = dict(
                smaller[step], output_tail=smaller[step].get("output_tail", "")[-1024:]
            )
    return smaller


def _dumps(d: dict[str, Any]) -> bytes:
    """UTF-8 JSON; ASCII JSON when a string holds a lone surrogate, which UTF-8 cannot."""
    try:
        return json.dumps(d, ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        return json.dumps(d, allow_nan=False).encode()
