"""Each host's units and its repositories' disk use for `fleetctl status`, from the same
observation as a live plan (read only, no lock). A local fleet (`fleetctl up`) has no hosts to
reach over SSH. `HostsWatch` looks again every HOSTS_EVERY seconds (`status --watch`, the
dashboard): a look is a plan's observation over SSH, seconds rather than milliseconds."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from fleetctl.bus.client import BusError
from fleetctl.config.model import Fleet
from fleetctl.reconcile.desired.repos import MIN_FREE_BYTES
from fleetctl.status.report import HostStatus, RepoDisk
from fleetctl.transport.base import TransportError

HOSTS_EVERY = 30.0  # seconds between looks at the hosts, after each look ends


def observe_hosts(fleet: Fleet, options: Any) -> list[HostStatus]:
    """Each host reachable or not, and its units, from a read-only live plan's observation."""
    from fleetctl.reconcile.inputs import gather
    from fleetctl.reconcile.observation import live_plan
    from fleetctl.reconcile.plan.selection import Selection

    options = dataclasses.replace(options, with_usage=True)
    view = live_plan(fleet, gather(fleet), Selection(), options, lock=False)
    view.close()
    hosts = []
    for name, state in view.desired.hosts.items():
        if name in view.errors:
            hosts.append(HostStatus(name, False, view.errors[name]))
            continue
        seen = view.sessions[name].observed
        units: dict[str, str] = {}
        for unit in state.units:
            if not unit.enabled:
                continue
            if unit.name in seen.dead_units:
                units[unit.name] = seen.dead_units[unit.name]
            elif unit.key in seen.resources:
                units[unit.name] = "active"
            else:
                units[unit.name] = "not installed"
        disk = None
        if state.usage_paths:
            used = {p: seen.usage.get(p) for p in state.usage_paths}
            disk = RepoDisk(used, seen.free_bytes, MIN_FREE_BYTES)
        hosts.append(HostStatus(name, True, units=units, repos=disk))
    return hosts


def look_at_hosts(fleet: Fleet, options: Any) -> list[HostStatus]:
    """`observe_hosts`, with a failure of the whole look shown as a host row that says why
    (it runs in a thread: otherwise a traceback and no hosts shown)."""
    try:
        return observe_hosts(fleet, options)
    except (TransportError, BusError) as e:
        return [HostStatus("(hosts)", False, str(e))]
    except Exception as e:
        return [HostStatus("(hosts)", False, f"not observed: {e}")]


class HostsWatch:
    """The hosts looked at in a daemon thread: once at start, then `every` seconds after
    each look ends; `hosts` and `at` are the newest look's (None before the first ends), and
    `seen` is told after each."""

    def __init__(
        self,
        fleet: Fleet,
        options: Any,
        every: float = HOSTS_EVERY,
        seen: Callable[[], None] | None = None,
    ) -> None:
        self.fleet, self.options, self.every, self.seen = fleet, options, every, seen
        self.hosts: list[HostStatus] | None = None
        self.at: float | None = None  # time.time() when the newest look ended

    def start(self) -> None:
        threading.Thread(target=self._run, name="hosts-watch", daemon=True).start()

    def _run(self) -> None:
        while True:
            hosts = look_at_hosts(self.fleet, self.options)
            self.hosts, self.at = hosts, time.time()
            if self.seen is not None:
                self.seen()
            time.sleep(self.every)
