"""Every NATS subject, stream and consumer name the fleet uses, derived in one place.

The poller derives the same subjects from NATS_SUBJECT_PREFIX and WORKER_ID (see
docs/messages.md); fleetctl derives permissions, streams and consumers from these.
"""

from __future__ import annotations

from dataclasses import dataclass

# The JetStream API's subject prefix: every request to it (streams, consumers, message gets,
# the account's info) is a subject under this, and permissions name them the same way.
JS_API = "$JS.API"


@dataclass(frozen=True)
class NatsNames:
    prefix: str

    @property
    def _stream_base(self) -> str:
        return self.prefix.upper().replace("-", "_")

    # Streams
    @property
    def task_stream(self) -> str:
        return f"{self._stream_base}_TASKS"

    @property
    def results_stream(self) -> str:
        return f"{self._stream_base}_RESULTS"

    @property
    def dead_stream(self) -> str:
        return f"{self._stream_base}_DEAD"

    @property
    def lease_bucket(self) -> str:
        """The KV bucket of task leases (poller/lease.py); its stream is `lease_stream`."""
        return f"{self._stream_base}_LEASES"

    @property
    def lease_stream(self) -> str:
        return f"KV_{self.lease_bucket}"

    @property
    def all_leases(self) -> str:
        return f"$KV.{self.lease_bucket}.>"

    @property
    def spend_bucket(self) -> str:
        """The KV bucket of spend counters (poller/budget.py); its stream is `spend_stream`."""
        return f"{self._stream_base}_SPEND"

    @property
    def spend_stream(self) -> str:
        return f"KV_{self.spend_bucket}"

    @property
    def all_spend(self) -> str:
        return f"$KV.{self.spend_bucket}.>"

    @property
    def fleet_spend(self) -> str:
        """The whole fleet's daily spend keys (`fleet.<day>`): every worker adds to them."""
        return f"$KV.{self.spend_bucket}.fleet.>"

    @property
    def record_bucket(self) -> str:
        """The KV bucket of task records (fleetctl/tasks/record.py): one key per task id,
        written by the publisher when it sends the task; its stream is `record_stream`."""
        return f"{self._stream_base}_RECORDS"

    @property
    def record_stream(self) -> str:
        return f"KV_{self.record_bucket}"

    @property
    def all_records(self) -> str:
        return f"$KV.{self.record_bucket}.>"

    def record(self, task_id: str) -> str:
        """One task's record key (`task_id` is one subject token; `*` for every task)."""
        return f"$KV.{self.record_bucket}.{task_id}"

    @property
    def judgment_bucket(self) -> str:
        """The KV bucket of judgments (fleetctl/tasks/judgments.py): one key per (task,
        worker), written by the dashboard's identity only; its stream is `judgment_stream`."""
        return f"{self._stream_base}_JUDGMENTS"

    @property
    def judgment_stream(self) -> str:
        return f"KV_{self.judgment_bucket}"

    @property
    def all_judgments(self) -> str:
        return f"$KV.{self.judgment_bucket}.>"

    def judgment(self, task_id: str, worker_id: str) -> str:
        """One judgment's key: the task id and the worker id, each one subject token
        (`*` for any)."""
        return f"$KV.{self.judgment_bucket}.{task_id}.{worker_id}"

    @property
    def cancel_bucket(self) -> str:
        """The KV bucket of cancel marks (fleetctl/tasks/cancelling.py, poller/cancel.py):
        one key per (worker, task) to cancel, written by the publisher; its stream is
        `cancel_stream`."""
        return f"{self._stream_base}_CANCELS"

    @property
    def cancel_stream(self) -> str:
        return f"KV_{self.cancel_bucket}"

    @property
    def all_cancels(self) -> str:
        return f"$KV.{self.cancel_bucket}.>"

    def cancel(self, worker_id: str, task_id: str) -> str:
        """One cancel mark: `task_id` on `worker_id` (either may be `*`)."""
        return f"$KV.{self.cancel_bucket}.{worker_id}.{task_id}"

    def spend(self, key: str) -> str:
        """One spend counter (`worker.<id>.<day>`, `fleet.<day>`; poller/budget.py)."""
        return f"$KV.{self.spend_bucket}.{key}"

    def spend_of(self, worker_id: str) -> str:
        """One worker's daily spend keys (`worker.<worker_id>.<day>`)."""
        return f"$KV.{self.spend_bucket}.worker.{worker_id}.>"

    # Subjects covered by the streams
    @property
    def all_inboxes(self) -> str:
        return f"{self.prefix}.worker.*.inbox"

    @property
    def all_route_inboxes(self) -> str:
        """`<prefix>.route.<name>.inbox`: the shared queue of each `pick: any` route."""
        return f"{self.prefix}.route.*.inbox"

    @property
    def all_results(self) -> str:
        """`<prefix>.result.<worker_id>.<task_id>`: the worker id is in the subject, so the
        server enforces who may publish a result (docs/messages.md)."""
        return f"{self.prefix}.result.*.*"

    @property
    def all_dead(self) -> str:
        return f"{self.prefix}.dead.>"

    # Per worker
    def inbox(self, worker_id: str) -> str:
        return f"{self.prefix}.worker.{worker_id}.inbox"

    def route_inbox(self, route: str) -> str:
        return f"{self.prefix}.route.{route}.inbox"

    def status(self, worker_id: str) -> str:
        return f"{self.prefix}.worker.{worker_id}.status"

    def ping(self, worker_id: str) -> str:
        return f"{self.prefix}.worker.{worker_id}.ping"

    def dead(self, worker_id: str) -> str:
        return f"{self.prefix}.dead.{worker_id}"

    def results_of(self, worker_id: str) -> str:
        """Every result subject of one worker: what it may publish and read back."""
        return f"{self.prefix}.result.{worker_id}.*"

    def result(self, worker_id: str, task_id: str) -> str:
        return f"{self.prefix}.result.{worker_id}.{task_id}"

    def leases_of(self, worker_id: str) -> str:
        """Every lease key of one worker (`<worker_id>.<task_id>`): all it may write and read."""
        return f"$KV.{self.lease_bucket}.{worker_id}.>"

    def attribution(self, subject: str) -> tuple[str, str] | None:
        """(worker_id, task_id) of a result subject, or None for any other subject.

        Readers attribute a result by this, never by the `worker_id` in its body: only the
        worker's own credentials can publish on its subjects."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[0] != self.prefix or parts[1] != "result":
            return None
        if not parts[2] or not parts[3]:
            return None
        return parts[2], parts[3]

    @staticmethod
    def consumer(worker_id: str) -> str:
        return f"worker-{worker_id}"

    @staticmethod
    def route_consumer(route: str) -> str:
        """The one consumer every member of a `pick: any` route pulls from. Worker ids and
        route names are both tokens; `route-` never starts a worker consumer (`worker-`)."""
        return f"route-{route}"

    @staticmethod
    def inbox_prefix(worker_id: str) -> str:
        """Each worker's own reply-subject prefix: `_INBOX.>` would expose other workers'."""
        return f"_INBOX_{worker_id}"
