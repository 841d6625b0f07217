"""A repository's `setup` and `check`: an argv run in the task's worktree, before and after
the agent. Exit 0 is a pass. What a result says about one (`code.setup`, `code.check`):
passed, exit code, duration and the last 8 KiB of its output (stdout and stderr together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller import runner

OUTPUT_TAIL = 8 * 1024


@dataclass(frozen=True)
class StepOutcome:
    passed: bool
    exit_code: int | None  # negative: killed by that signal; None: it could not start
    duration_s: float
    output_tail: str
    timed_out: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "output_tail": self.output_tail,
        }


async def run(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout: float,
    grace: float,
    state_dir: Path | None,
) -> StepOutcome:
    """Run one step to its end (or its timeout); never raises but for a cancellation."""
    try:
        out = await runner.run(
            list(argv),
            b"",
            timeout=timeout,
            grace=grace,
            cap=0,
            stderr_keep=OUTPUT_TAIL,
            cwd=cwd,
            env=env,
            state_dir=state_dir,
            merged=True,
        )
    except runner.SpawnError as e:
        return StepOutcome(False, None, 0.0, str(e))
    tail = out.stderr_tail.decode(errors="replace")
    if out.timed_out:
        tail += f"\n(stopped after {timeout:g}s)"
    passed = out.returncode == 0 and not out.timed_out
    return StepOutcome(passed, out.returncode, out.duration, tail, out.timed_out)
