"""What --host and --worker narrow a plan to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetctl.reconcile.desired.state import HostState


@dataclass(frozen=True)
class Selection:
    """What --host and --worker narrow the plan to (empty: everything)."""

    hosts: frozenset[str] = frozenset()
    workers: frozenset[str] = frozenset()
    worker_hosts: frozenset[str] = frozenset()  # where the selected enabled workers run
    homes: frozenset[str] = frozenset()  # where the selected workers are placed, enabled or not

    def includes_host(self, name: str, state: HostState) -> bool:
        if self.hosts and name not in self.hosts:
            return False
        if not self.workers:
            return True
        return name in self.homes or any(w in self.workers for _, w in state.resources())

    def keeps(self, host: str, worker: str | None) -> bool:
        """A worker's own resources, and what its host shares with it (the tunnel)."""
        if not self.workers:
            return True
        return worker in self.workers or (worker is None and host in self.worker_hosts)

    def keeps_note(self, note_worker: str) -> bool:
        return not self.workers or note_worker in self.workers

    def includes_bus(self, homes: Iterable[str]) -> bool:
        """`--host` keeps the bus only when it names a host the bus lives on."""
        return not self.hosts or any(h in self.hosts for h in homes)

    def owns_orphans(self) -> bool:
        """Orphans (owned by fleetctl, no longer wanted) go only with a whole-host selection:
        `--worker` cannot tell which worker an orphan belonged to, so it leaves them alone.
        Revocations follow the same rule: they are the bus's orphans."""
        return not self.workers


EVERYTHING = Selection()  # no --host, no --worker
