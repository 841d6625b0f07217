"""A Ctrl-C that lands after a bus call's coroutine was made but before it was handed to the
loop leaves a coroutine that never ran: the exit must not print Python's "never awaited"
warning to the user (seen once under load after `task send --wait`'s "Stopped waiting")."""

from __future__ import annotations

import subprocess
import sys

import pytest

# fleetctl's own main, its click group swapped for a command that is interrupted between
# making a coroutine and running it, then exits as the command's Ctrl-C handling does.
SCRIPT = """
import sys
import fleetctl.cli.main as entry

async def wait():
    pass

def interrupted(prog_name):
    call = wait()
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        sys.exit({code})

entry.cli = interrupted
entry.main()
"""


@pytest.mark.parametrize("code", [130, 1])
def test_a_call_ctrl_c_stopped_before_it_began_is_not_reported(code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(code=code)], capture_output=True, text=True
    )
    assert done.returncode == code
    assert done.stderr == ""


def test_any_other_exit_keeps_the_warning() -> None:
    """Not a Ctrl-C: a coroutine never awaited is a bug, and Python still says so."""
    script = SCRIPT.replace("raise KeyboardInterrupt", "raise ValueError").replace(
        "except KeyboardInterrupt", "except ValueError"
    )
    done = subprocess.run(
        [sys.executable, "-c", script.format(code=1)], capture_output=True, text=True
    )
    assert "coroutine 'wait' was never awaited" in done.stderr
