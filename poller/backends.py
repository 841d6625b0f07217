"""The backend registry: every LLM backend, defined once.

Each entry says which fleet.yaml worker fields the backend uses and the environment variable
each one reaches the poller through, how the poller turns them into the CLI's argv, and how it
reads the CLI's output. The poller reads the table to load its configuration and run the CLI;
fleetctl reads the same table (the poller must not import fleetctl, so it lives here) for the
`backend:` names its schema accepts, its built-in llm names, the pinned CLI each installs and the
Environment= lines of each worker's unit. Adding a backend is one entry in BACKENDS; a unit
that needs more than Environment= lines adds one template that extends the poller's.

The prompt always goes on stdin: in argv it would be visible to every user in `ps` and
limited by ARG_MAX. The zai llm uses the claude backend: its provider endpoint and token reach
the CLI through the environment file systemd loads, never through the poller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from poller import outputs, streams
from poller.outputs import Parsed

Kind = Literal["text", "list", "argv", "int", "number"]
POLLER_TEMPLATE = "systemd/poller.service.j2"


class SettingError(ValueError):
    """A bad value for a setting; the message says what is wrong, not which variable."""


@dataclass(frozen=True)
class Setting:
    """One worker field, carried to the poller by one environment variable of its unit.

    kind `text` is the value as is, `list` a comma-separated list, `argv` a JSON list of
    strings, `int` and `number` a number greater than 0. `default` is what the poller uses
    when the variable is unset or empty ("": the CLI's own default). `choices`, when given,
    are the only values accepted.
    """

    field: str
    env: str
    kind: Kind = "text"
    default: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False

    def render(self, value: object) -> str | None:
        """The variable's value for a worker's field value; None: no Environment= line."""
        if value is None:
            return None
        if self.kind == "list" and isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        if self.kind == "argv" and isinstance(value, list | tuple):
            return json.dumps([str(v) for v in value])
        return str(value)

    def read(self, raw: str) -> str:
        """The checked, canonical value of the variable (raises SettingError)."""
        raw = raw.strip()
        if self.kind == "list":
            return ",".join(t.strip() for t in raw.split(",") if t.strip())
        if self.kind == "argv" and raw:
            _argv_list(raw)
        if self.kind in ("int", "number") and raw:
            _positive(raw, integer=self.kind == "int")
        if raw and self.choices and raw not in self.choices:
            raise SettingError(f"must be one of {', '.join(self.choices)}")
        return raw or self.default


def _argv_list(raw: str) -> list[str]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingError('must be a JSON list of strings, e.g. ["my-cli"]') from None
    if not (isinstance(value, list) and value and all(isinstance(a, str) and a for a in value)):
        raise SettingError("must be a non-empty JSON list of non-empty strings")
    return value


def _positive(raw: str, *, integer: bool) -> None:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise SettingError("must be an integer" if integer else "must be a number") from None
    if not value > 0:  # also refuses nan
        raise SettingError("must be greater than 0")


@dataclass(frozen=True)
class BuiltinLlm:
    """An llm name fleet.yaml may use without defining it under `llms:`."""

    name: str
    requires_env_file: bool = False


@dataclass(frozen=True)
class CliPackage:
    """The npm package of a backend's CLI, pinned: what the contract tests run (and install).

    `bin` is its command in `node_modules/.bin`; `node` the oldest Node.js major version it
    needs on the host, if it needs Node at all (Gemini CLI is JavaScript, its package's
    `engines` says node >= 20; Claude Code and Codex ship native binaries).
    """

    package: str
    version: str
    bin: str
    node: int | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    settings: tuple[Setting, ...]
    build_argv: Callable[[Mapping[str, str]], list[str]]
    read_output: Callable[[str, str], Parsed]  # (stdout, stderr's tail)
    # Reads its stdout as it streams: what the task is doing now, and what `read_output`
    # gets at the end (poller/streams.py).
    stream: streams.ReaderFactory = streams.Plain
    llms: tuple[BuiltinLlm, ...] = ()
    cli: CliPackage | None = None
    budget: str | None = None  # the setting a task's `max_budget_usd` may lower, if any
    template: str = POLLER_TEMPLATE

    def setting(self, field: str) -> Setting:
        return next(s for s in self.settings if s.field == field)


# -- argv per backend: `v` maps each setting's field to its checked value -----------------


def _claude_argv(v: Mapping[str, str]) -> list[str]:
    """Print mode, its events streamed as JSON lines (stream-json needs --verbose there);
    nothing unattended left to defaults (docs/poller.md)."""
    cmd = [v["bin"], "--print", "--output-format", "stream-json", "--verbose"]
    cmd += ["--no-session-persistence"]
    cmd += ["--permission-mode", v["permission_mode"]]
    if v["max_turns"]:
        cmd += ["--max-turns", v["max_turns"]]
    if v["max_budget_usd"]:
        cmd += ["--max-budget-usd", v["max_budget_usd"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    if v["allowed_tools"]:  # last: the option takes every word after it
        cmd += ["--allowedTools", v["allowed_tools"]]
    return cmd


def _codex_argv(v: Mapping[str, str]) -> list[str]:
    """JSON events, no session files, and connection retries bounded (not forever)."""
    cmd = [v["bin"], "exec", "--json", "--ephemeral", "--disable", "unbounded_connection_retries"]
    cmd += ["--skip-git-repo-check", "--sandbox", v["codex_sandbox"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    return [*cmd, "-"]  # `-`: read the prompt from stdin


def _gemini_argv(v: Mapping[str, str]) -> list[str]:
    """Trusts its work dir (else every run exits 55), JSON events streamed, an explicit
    approval mode."""
    cmd = [v["bin"], "--skip-trust", "--output-format", "stream-json"]
    cmd += ["--approval-mode", v["approval_mode"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    return cmd


def _command_argv(v: Mapping[str, str]) -> list[str]:
    return _argv_list(v["command"])


CLAUDE_PERMISSION_MODES = ("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions")
GEMINI_APPROVAL_MODES = ("default", "plan", "auto_edit", "yolo")


def _bin(env: str, default: str) -> Setting:
    return Setting("bin", env, default=default)


def _model(env: str) -> Setting:
    return Setting("model", env)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "claude",
            (
                _bin("CLAUDE_BIN", "claude"),
                _model("CLAUDE_MODEL"),
                Setting("allowed_tools", "ALLOWED_TOOLS", "list"),
                Setting(
                    "permission_mode",
                    "CLAUDE_PERMISSION_MODE",
                    default="default",
                    choices=CLAUDE_PERMISSION_MODES,
                ),
                Setting("max_turns", "CLAUDE_MAX_TURNS", "int"),
                Setting("max_budget_usd", "CLAUDE_MAX_BUDGET_USD", "number"),
            ),
            _claude_argv,
            outputs.claude_json,
            streams.ClaudeStream,
            # zai: the claude CLI pointed at Z.ai by the worker's env file.
            llms=(BuiltinLlm("claude-code"), BuiltinLlm("zai", requires_env_file=True)),
            cli=CliPackage("@anthropic-ai/claude-code", "2.1.197", "claude"),
            budget="max_budget_usd",
        ),
        Backend(
            "codex",
            (
                _bin("CODEX_BIN", "codex"),
                _model("CODEX_MODEL"),
                Setting(
                    "codex_sandbox",
                    "CODEX_SANDBOX",
                    default="read-only",
                    choices=("read-only", "workspace-write", "danger-full-access"),
                ),
            ),
            _codex_argv,
            outputs.codex_events,
            streams.CodexStream,
            llms=(BuiltinLlm("codex"),),
            cli=CliPackage("@openai/codex", "0.171.0", "codex"),
        ),
        Backend(
            "gemini",
            (
                _bin("GEMINI_BIN", "gemini"),
                _model("GEMINI_MODEL"),
                Setting(
                    "approval_mode",
                    "GEMINI_APPROVAL_MODE",
                    default="default",
                    choices=GEMINI_APPROVAL_MODES,
                ),
            ),
            _gemini_argv,
            outputs.gemini_json,
            streams.GeminiStream,
            llms=(BuiltinLlm("gemini"),),
            cli=CliPackage("@google/gemini-cli", "0.61.0", "gemini", node=20),
        ),
        Backend(
            "command",
            (Setting("command", "COMMAND_ARGV", "argv", required=True),),
            _command_argv,
            outputs.text,
            llms=(BuiltinLlm("command"),),
        ),
    )
}
NAMES: tuple[str, ...] = tuple(BACKENDS)


def argv(backend: str, values: Mapping[str, str]) -> list[str]:
    """The command line for a backend (no prompt in it)."""
    return BACKENDS[backend].build_argv(values)


def task_argv(backend: str, values: Mapping[str, str], budget: float | None) -> list[str]:
    """The command line for one task: a task's own budget may lower the worker's, never raise
    it. Only call with a budget for a backend that has one (`Backend.budget`)."""
    if budget is None:
        return argv(backend, values)
    field = BACKENDS[backend].budget
    if field is None:
        raise ValueError(f"the {backend} backend cannot bound a task's cost")
    own = values[field]
    if own and float(own) <= budget:
        return argv(backend, values)
    return argv(backend, {**values, field: usd_arg(budget)})


def usd_arg(usd: float) -> str:
    """Dollars as a CLI option's value: plain decimals (never `1e-07` or `1e+300`), cut down
    to millionths, so the value passed is never above the one asked for."""
    millionths = Decimal(repr(usd)).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)
    return f"{millionths:f}".rstrip("0").rstrip(".")


def parse_output(backend: str, stdout: str, complete: bool, stderr: str = "") -> Parsed:
    """The answer, usage and error flag from the CLI's output; cut output passes as text."""
    if not complete:
        return Parsed(stdout)
    return BACKENDS[backend].read_output(stdout, stderr)
