"""The backend registry: every LLM backend, defined once.

Each entry says which fleet.yaml worker fields the backend uses and the environment variable
each one reaches the poller through, how the poller turns them into the CLI's argv, and how it
reads the CLI's output. The poller reads the table to load its configuration and run the CLI;
fleetctl reads the same table (the poller must not import fleetctl, so it lives here) for the
`backend:` names its schema accepts, its built-in llm names, the CLI paths on hosts and the
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
from typing import Literal

from poller import outputs
from poller.outputs import Parsed

Kind = Literal["text", "list", "argv"]
POLLER_TEMPLATE = "systemd/poller.service.j2"


class SettingError(ValueError):
    """A bad value for a setting; the message says what is wrong, not which variable."""


@dataclass(frozen=True)
class Setting:
    """One worker field, carried to the poller by one environment variable of its unit.

    kind `text` is the value as is, `list` a comma-separated list, `argv` a JSON list of
    strings. `default` is what the poller uses when the variable is unset or empty ("": the
    CLI's own default). `choices`, when given, are the only values accepted.
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


@dataclass(frozen=True)
class BuiltinLlm:
    """An llm name fleet.yaml may use without defining it under `llms:`."""

    name: str
    requires_env_file: bool = False


@dataclass(frozen=True)
class Backend:
    name: str
    settings: tuple[Setting, ...]
    build_argv: Callable[[Mapping[str, str]], list[str]]
    read_output: Callable[[str], Parsed]
    llms: tuple[BuiltinLlm, ...] = ()
    host_bin: str | None = None  # where the built-in llms expect the CLI on worker hosts
    template: str = POLLER_TEMPLATE

    def setting(self, field: str) -> Setting:
        return next(s for s in self.settings if s.field == field)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(s.field for s in self.settings)


# -- argv per backend: `v` maps each setting's field to its checked value -----------------


def _claude_argv(v: Mapping[str, str]) -> list[str]:
    cmd = [v["bin"], "--print", "--output-format", "json"]
    if v["allowed_tools"]:
        cmd += ["--allowedTools", v["allowed_tools"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    return cmd


def _codex_argv(v: Mapping[str, str]) -> list[str]:
    cmd = [v["bin"], "exec", "--skip-git-repo-check", "--sandbox", v["codex_sandbox"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    return [*cmd, "-"]  # `-`: read the prompt from stdin


def _gemini_argv(v: Mapping[str, str]) -> list[str]:
    cmd = [v["bin"]]
    if v["model"]:
        cmd += ["--model", v["model"]]
    return cmd


def _command_argv(v: Mapping[str, str]) -> list[str]:
    return _argv_list(v["command"])


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
            ),
            _claude_argv,
            outputs.claude_json,
            # zai: the claude CLI pointed at Z.ai by the worker's env file.
            llms=(BuiltinLlm("claude-code"), BuiltinLlm("zai", requires_env_file=True)),
            host_bin="/usr/local/bin/claude",
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
            outputs.text,
            llms=(BuiltinLlm("codex"),),
            host_bin="/usr/bin/codex",
        ),
        Backend(
            "gemini",
            (_bin("GEMINI_BIN", "gemini"), _model("GEMINI_MODEL")),
            _gemini_argv,
            outputs.text,
            llms=(BuiltinLlm("gemini"),),
            host_bin="/usr/bin/gemini",
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


def parse_output(backend: str, stdout: str, complete: bool) -> Parsed:
    """The answer, usage and error flag from the CLI's stdout; cut output passes as text."""
    if not complete:
        return Parsed(stdout)
    return BACKENDS[backend].read_output(stdout)
