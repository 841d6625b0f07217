"""Run every broken or hostile input in tests/corpus/ through the real CLI.

Each case directory holds `case.yaml` and the input files that differ from the valid example
at the repo root (see tests/corpus/README.md). For every case, `fleetctl validate` must exit 1
and print every expected problem as `FILE:LINE:COL: field: what (fix)` on stderr, with nothing
on stdout and no traceback; `fleetctl render --out out` must refuse too, and neither command
may create, change or delete a file. A case about a broken local file (the credential store, a
tunnel key) names the command that reads it in `run:`, which must fail with one
`error: FILE: what (fix)` line.

Cases run in-process through click's CliRunner (a subprocess per case would blow the time
budget); `test_console_script` runs a few of them through the installed `fleetctl` script to
keep the no-traceback promise honest end to end, and cases marked `isolate: true` (inputs
that could exhaust memory) always run in a subprocess with a time and memory limit.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fleetctl.cli.main import cli

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "corpus"
FLEETCTL = Path(sys.executable).parent / "fleetctl"
INPUTS = ("fleet.yaml", "servers.yaml")
FILE_ARGS = ("-f", "fleet.yaml", "-s", "servers.yaml")
VALIDATE = ("validate",)
RENDER = ("render", "--out", "out")

PROBLEM_LINE = re.compile(r"^\S+:\d+:\d+: ")
ERROR_LINE = re.compile(r"^error: (?:[a-z ]+: )?\S+: \S.* \([^()]+\)$")  # [what: ]FILE: ...
LOCAL = "local"  # a case's tree of local files, copied in after `setup:`
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# A hostile input must be refused within this much CPU time: counted by the kernel, so a loaded
# machine (a parallel suite, a shared CI runner) cannot make a quick refusal look slow. The wall
# clock bound only catches a run that waits on something instead of computing.
ISOLATED_CPU_S = 4
ISOLATED_TIMEOUT_S = 60.0
ISOLATED_MEMORY_BYTES = 2 * 1024**3
CONSOLE_SCRIPT_TIMEOUT_S = 60.0
MIN_CASES = 36

CASE_KEYS = {
    "why",
    "expect",
    "problems",
    "missing",
    "directory",
    "isolate",
    "console_script",
    "xfail",
    "setup",
    "run",
}

# click < 8.2 mixes stderr into stdout unless told not to; 8.2+ always keeps them apart.
_MIXES_STDERR = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
_RUNNER_KWARGS: dict[str, Any] = {"mix_stderr": False} if _MIXES_STDERR else {}


@dataclass(frozen=True)
class Case:
    """One corpus directory and what `case.yaml` says must happen."""

    name: str
    path: Path
    why: str
    expect: tuple[str, ...]
    problems: int | None
    missing: tuple[str, ...]
    directory: tuple[str, ...]
    isolate: bool
    console_script: bool
    xfail: str | None
    setup: tuple[tuple[str, ...], ...]
    run: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> Case:
        raw = yaml.safe_load((path / "case.yaml").read_text(encoding="utf-8"))
        assert isinstance(raw, dict), f"{path.name}/case.yaml: expected a mapping"
        unknown = set(raw) - CASE_KEYS
        assert not unknown, f"{path.name}/case.yaml: unknown keys {sorted(unknown)}"
        why = raw.get("why")
        assert isinstance(why, str) and why.strip(), f"{path.name}/case.yaml: `why:` is required"
        problems = raw.get("problems")
        assert problems is None or (isinstance(problems, int) and problems >= 1), (
            f"{path.name}/case.yaml: `problems:` must be a positive number"
        )
        xfail = raw.get("xfail")
        assert xfail is None or (isinstance(xfail, str) and xfail), (
            f"{path.name}/case.yaml: `xfail:` must be the reason, as text"
        )
        case = cls(
            name=path.name,
            path=path,
            why=why,
            expect=_strings(raw, "expect", path),
            problems=problems,
            missing=_strings(raw, "missing", path),
            directory=_strings(raw, "directory", path),
            isolate=bool(raw.get("isolate", False)),
            console_script=bool(raw.get("console_script", False)),
            xfail=xfail,
            setup=_steps(raw, path),
            run=_strings(raw, "run", path),
        )
        assert case.expect or case.problems, f"{path.name}: give `expect:` or `problems:`"
        assert case.run or not (case.setup or (path / LOCAL).exists()), (
            f"{path.name}: `setup:` and {LOCAL}/ are for a `run:` case"
        )
        for name in (*case.missing, *case.directory):
            assert name in INPUTS, f"{path.name}/case.yaml: {name!r} is not one of {INPUTS}"
            assert not (path / name).exists(), f"{path.name}: {name} is both given and {name!r}"
        return case

    def install(self, where: Path, run: Runner) -> None:
        """Put the case's inputs in `where`, the repo's valid examples filling the gaps, run
        its `setup:` commands there and copy its local files over what they made."""
        for name in INPUTS:
            target = where / name
            if name in self.missing:
                continue
            if name in self.directory:
                target.mkdir()
                continue
            own = self.path / name
            shutil.copyfile(own if own.exists() else REPO / name, target)
        for step in self.setup:
            done = run(where, step)
            assert done.exit_code == 0 and not done.crash, f"{self.name}: setup {step} failed"
        if (self.path / LOCAL).is_dir():
            shutil.copytree(self.path / LOCAL, where, dirs_exist_ok=True)


def _strings(raw: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = raw.get(key) or []
    assert isinstance(value, list), f"{path.name}/case.yaml: `{key}:` must be a list"
    assert all(isinstance(v, str) and v for v in value), (
        f"{path.name}/case.yaml: every `{key}:` item must be non-empty text"
    )
    return tuple(value)


def _steps(raw: dict[str, Any], path: Path) -> tuple[tuple[str, ...], ...]:
    steps = raw.get("setup") or []
    assert isinstance(steps, list), f"{path.name}/case.yaml: `setup:` must be a list of commands"
    return tuple(_strings({"setup": step}, "setup", path) for step in steps)


def _load_corpus() -> list[Case]:
    return [Case.load(p) for p in sorted(CORPUS.iterdir()) if (p / "case.yaml").is_file()]


CASES = _load_corpus()


@dataclass(frozen=True)
class Outcome:
    """What one CLI run did. `crash` holds an exception that escaped, as a traceback."""

    exit_code: int | None
    stdout: str
    stderr: str
    crash: str = ""


Runner = Callable[[Path, Sequence[str]], Outcome]


def run_in_process(cwd: Path, args: Sequence[str]) -> Outcome:
    """The CLI through click's CliRunner; `cwd` must already be the working directory."""
    assert Path.cwd().resolve() == cwd.resolve(), "chdir to the case directory first"
    result = CliRunner(**_RUNNER_KWARGS).invoke(
        cli, [*FILE_ARGS, *args], prog_name="fleetctl", env={"NO_COLOR": "1"}
    )
    crash = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        crash = "".join(traceback.format_exception(*result.exc_info))
    return Outcome(result.exit_code, _plain(result.stdout), _plain(result.stderr), crash)


def _limit_memory_and_cpu() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ISOLATED_MEMORY_BYTES, ISOLATED_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (ISOLATED_CPU_S, ISOLATED_CPU_S + 1))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
    env["NO_COLOR"] = "1"
    env.pop("FORCE_COLOR", None)
    return env


def run_isolated(cwd: Path, args: Sequence[str], timeout: float = ISOLATED_TIMEOUT_S) -> Outcome:
    """The installed console script, with a time and memory limit (for hostile inputs)."""
    try:
        proc = subprocess.run(
            [str(FLEETCTL), *FILE_ARGS, *args],
            cwd=cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit_memory_and_cpu,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(None, "", "", f"still running after {timeout}s; killed")
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return Outcome(None, "", "", f"used more than {ISOLATED_CPU_S}s of CPU; killed")
    return Outcome(proc.returncode, _plain(proc.stdout), _plain(proc.stderr))


def _plain(text: str | None) -> str:
    return ANSI.sub("", text or "")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its contents (None for a directory)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _failed_cleanly(where: str, outcome: Outcome) -> tuple[list[str], str]:
    """Exit 1, no crash, no traceback, nothing on stdout: stderr's lines, and the output to
    show when an assertion fails."""
    shown = f"\n--- stdout ---\n{outcome.stdout}--- stderr ---\n{outcome.stderr}"
    assert not outcome.crash, f"{where} crashed:\n{outcome.crash}{shown}"
    assert "Traceback" not in outcome.stdout + outcome.stderr, f"{where} printed a traceback{shown}"
    assert outcome.exit_code == 1, f"{where} exited {outcome.exit_code}, not 1{shown}"
    assert outcome.stdout == "", f"{where} wrote to stdout{shown}"
    return [line for line in outcome.stderr.splitlines() if line.strip()], shown


def check_refused(case: Case, outcome: Outcome, command: str) -> None:
    """The promises every refused run keeps, whatever the input."""
    where = f"{case.name}: `fleetctl {command}`"
    lines, shown = _failed_cleanly(where, outcome)
    problems = [line for line in lines if PROBLEM_LINE.match(line)]
    assert problems, f"{where} printed no FILE:LINE:COL problem line{shown}"
    strays = [line for line in lines if not PROBLEM_LINE.match(line)]
    summary = f"{len(problems)} problem{'s' * (len(problems) != 1)} found; nothing was changed."
    assert strays == [summary], (
        f"{where}: stderr must be the problem lines and then {summary!r}, nothing else{shown}"
    )
    no_fix = [line for line in problems if not line.endswith(")")]
    assert not no_fix, f"{where}: problems without '(how to fix)': {no_fix}{shown}"


def check_failed(case: Case, outcome: Outcome) -> None:
    """A command refused over a broken local file: one `error: FILE: what (fix)` line."""
    where = f"{case.name}: `fleetctl {' '.join(case.run)}`"
    lines, shown = _failed_cleanly(where, outcome)
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), (
        f"{where}: stderr must be one `error: FILE: what (fix)` line{shown}"
    )


def check_expected(case: Case, outcome: Outcome) -> None:
    shown = f"\n--- stderr ---\n{outcome.stderr}"
    missing = [e for e in case.expect if e not in outcome.stderr]
    assert not missing, f"{case.name}: expected in stderr but missing: {missing}{shown}"
    if case.problems is not None:
        count = sum(1 for line in outcome.stderr.splitlines() if PROBLEM_LINE.match(line))
        assert count == case.problems, (
            f"{case.name}: {count} problem lines, expected {case.problems}{shown}"
        )


def run_case(case: Case, where: Path, run: Runner) -> None:
    case.install(where, run)
    before = snapshot(where)
    if case.run:
        failed = run(where, case.run)
        check_failed(case, failed)
        check_expected(case, failed)
        assert snapshot(where) == before, f"{case.name}: {case.run[0]} changed files"
        return

    validated = run(where, VALIDATE)
    check_refused(case, validated, "validate")
    check_expected(case, validated)
    assert snapshot(where) == before, f"{case.name}: validate changed files"

    rendered = run(where, RENDER)
    check_refused(case, rendered, "render --out out")
    assert not (where / "out").exists(), f"{case.name}: render created out/"
    assert snapshot(where) == before, f"{case.name}: render changed files"


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_case(case, tmp_path, run_isolated if case.isolate else run_in_process)


def test_console_script(tmp_path: Path) -> None:
    """A few cases through the installed script, concurrently: exit 1, no traceback."""
    chosen = [c for c in CASES if c.console_script]
    assert chosen, "mark a few cases `console_script: true`"
    assert not [c.name for c in chosen if c.xfail or c.isolate], "choose passing cases only"
    assert FLEETCTL.is_file(), f"{FLEETCTL} is missing: install the project into this venv"
    runs: list[tuple[Case, Path, dict[str, bytes | None], subprocess.Popen[str]]] = []
    for case in chosen:
        where = tmp_path / case.name
        where.mkdir()
        # Setup is not a hostile input: the time limit of a loaded CI machine, not a bomb's.
        case.install(where, functools.partial(run_isolated, timeout=CONSOLE_SCRIPT_TIMEOUT_S))
        proc = subprocess.Popen(
            [str(FLEETCTL), *FILE_ARGS, *(case.run or VALIDATE)],
            cwd=where,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((case, where, snapshot(where), proc))
    for case, where, before, proc in runs:
        stdout, stderr = proc.communicate(timeout=CONSOLE_SCRIPT_TIMEOUT_S)
        outcome = Outcome(proc.returncode, _plain(stdout), _plain(stderr))
        if case.run:
            check_failed(case, outcome)
        else:
            check_refused(case, outcome, "validate")
        check_expected(case, outcome)
        assert snapshot(where) == before, f"{case.name}: validate changed files"


def test_corpus_shape() -> None:
    """Enough cases, named NN-short-name with unique numbers, every directory a case."""
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} cases; the corpus needs {MIN_CASES}"
    dirs = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    assert dirs == [c.name for c in CASES], "every corpus directory needs a case.yaml"
    numbers = [c.name.split("-", 1)[0] for c in CASES]
    assert all(re.fullmatch(r"\d{2,}", n) for n in numbers), numbers
    assert len(set(numbers)) == len(numbers), "case numbers must be unique"
    for case in CASES:
        extra = {p.name for p in case.path.iterdir()} - {"case.yaml", LOCAL, *INPUTS}
        assert not extra, f"{case.name}: unexpected files {sorted(extra)}"
