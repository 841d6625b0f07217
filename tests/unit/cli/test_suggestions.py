"""A mistyped command gets a did-you-mean, as a mistyped option does (click's own), and exits
1 like every usage error; a word close to nothing gets none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FLEETCTL = Path(sys.executable).parent / "fleetctl"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["taks"], "Error: No such command 'taks'. Did you mean 'tasks', 'task' or 'status'?"),
        (["task", "sned"], "Error: No such command 'sned'. Did you mean 'send'?"),
        (["creds", "lsit"], "Error: No such command 'lsit'. Did you mean 'list'?"),
        (["xyzzy"], "Error: No such command 'xyzzy'."),
    ],
)
def test_a_mistyped_command_names_the_close_ones(args: list[str], says: str) -> None:
    done = subprocess.run([str(FLEETCTL), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == says
