"""Opening the task client for a command, with every way it can fail as one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fleetctl.bus.client import BusError
from fleetctl.cli.context import AppContext, fail
from fleetctl.tasks.client import Client
from fleetctl.tasks.messages import TaskError
from fleetctl.tasks.reach import BusOptions
from fleetctl.tasks.targets import TargetError
from fleetctl.ui.terminal import err


@contextmanager
def task_client(app: AppContext, options: BusOptions) -> Iterator[Client]:
    """The client on the fleet's bus; bad targets, bad tasks and an unreachable bus exit 1
    with the reason (every target problem listed), never a traceback."""
    fleet = app.fleet(local=True)
    try:
        with Client.reaching(fleet, app.fleet_path, options) as client:
            yield client
    except TargetError as e:
        for problem in e.problems:
            err().print(f"error: {problem}", markup=False)
        fail("nothing was sent")
    except (TaskError, BusError) as e:
        fail(str(e))
