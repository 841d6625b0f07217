"""The Python API for coordinators: send tasks to the fleet, read and wait for results.

    from fleetctl.client import Client

    with Client.open("fleet.yaml") as fleet:  # the bus, reached as the CLI reaches it
        sent = fleet.send("Write a haiku about queues", to=["w1", "w2", "w3"])
        for result in fleet.wait(sent, timeout=600):
            print(result.worker_id, result.status, result.output)

The `fleetctl task send`, `results`, `tasks` and `dead` commands are built on this class:
there is one implementation. Targets are checked against fleet.yaml before anything is
published (fleetctl/tasks/targets.py); each target gets its own Nats-Msg-Id, so a fan-out runs
once on every target and the same task id sent again within the duplicate window runs
nothing new. Each send is recorded (fleetctl/tasks/record.py): whom the task went to, which
`results` and `tasks` read instead of scanning the window, and against which they mark an
answer from any other worker as unsolicited.

The class holds the connection and its loop; each job is a module of its own: sending.py,
whereabouts.py (where a copy is), waiting.py, answers.py (one task), listing.py (recent
tasks, stored results), deadletters.py, cancelling.py (with marks.py), liveness.py. None
has NATS code of its own: the requests are in fleetctl/bus/taskbus.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fleetctl.bus.client import Endpoint, connect
from fleetctl.bus.loop import Loop
from fleetctl.bus.names import JS_API, NatsNames
from fleetctl.config.model import Fleet
from fleetctl.identity.natsaccess import DASHBOARD_USER, PUBLISHER_USER
from fleetctl.tasks import (
    activity,
    cancelling,
    changes,
    deadletters,
    following,
    judgments,
    listing,
    liveness,
    sending,
    targets,
    waiting,
    whereabouts,
)
from fleetctl.tasks import answers as task_answers
from fleetctl.tasks import code as task_code
from fleetctl.tasks import messages as taskmsg
from fleetctl.tasks.answers import Answers, NoSuchTask
from fleetctl.tasks.cancelling import Cancel
from fleetctl.tasks.changes import Change, ChangeError
from fleetctl.tasks.code import Code, CodeError
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.deadletters import DeadLetter
from fleetctl.tasks.judgments import Judgment
from fleetctl.tasks.ledger import StoredResult
from fleetctl.tasks.listing import TaskRow
from fleetctl.tasks.messages import Result
from fleetctl.tasks.reach import BusOptions, reach
from fleetctl.tasks.record import Sent, Target, TaskRecord
from fleetctl.tasks.sender import identity_of, may_publish

__all__ = [
    "Answers",
    "Cancel",
    "Change",
    "ChangeError",
    "Client",
    "Code",
    "CodeError",
    "DeadLetter",
    "NoSuchTask",
    "Sent",
    "Target",
    "TaskRow",
]


class Client:
    """A connection to the fleet's bus as `fleet-publisher`, held open across calls."""

    def __init__(self, fleet: Fleet, endpoint: Endpoint) -> None:
        self.fleet = fleet
        self.endpoint = endpoint
        self.names = NatsNames(fleet.nats.subject_prefix)
        self._loop = Loop()
        try:
            nc = self._loop.call(connect(endpoint))
        except BaseException:
            self._loop.close()
            raise
        sender, unrecordable = identity_of(endpoint.identity, self.names)
        self._identity = endpoint.identity
        marks = f"{JS_API}.DIRECT.GET.{self.names.cancel_stream}.{self.names.cancel('w', 't')}"
        readable = may_publish(endpoint.identity, marks) is not False
        self._conn = Connection(nc, fleet, self.names, sender, unrecordable, readable)
        self._conn.reads_records = endpoint.identity.user == DASHBOARD_USER
        judged = f"{JS_API}.DIRECT.GET.{self.names.judgment_stream}"
        self._conn.reads_judgments = may_publish(endpoint.identity, judged) is not False

    @classmethod
    @contextmanager
    def open(
        cls,
        fleet_path: str | Path = "fleet.yaml",
        servers_path: str | Path | None = None,
        *,
        server: str | None = None,
        creds: str | Path | None = None,
    ) -> Iterator[Client]:
        """The fleet of `fleet_path` (servers.yaml beside it unless named), its bus reached
        at `server` with `creds` (default: FLEETCTL_NATS_URL, FLEETCTL_NATS_CREDS), else the
        local fleet, else through SSH to the broker. ConfigError for a bad fleet file."""
        import os

        from fleetctl.config.loader import load_fleet
        from fleetctl.config.thismachine import servers_or_local

        path = Path(fleet_path)
        servers = (
            Path(servers_path) if servers_path else servers_or_local(path.parent / "servers.yaml")
        )
        fleet = load_fleet(path, servers)
        server = server or os.environ.get("FLEETCTL_NATS_URL") or None
        creds = creds or os.environ.get("FLEETCTL_NATS_CREDS") or None
        options = BusOptions(server, Path(creds) if creds else None)
        with cls.reaching(fleet, path, options) as client:
            yield client

    @classmethod
    def reaching(
        cls, fleet: Fleet, fleet_path: Path, options: BusOptions, user: str = PUBLISHER_USER
    ) -> AbstractContextManager[Client]:
        """The client for an already loaded fleet (what the CLI uses), as `user` (the
        dashboard connects as fleet-dashboard)."""

        @contextmanager
        def opened() -> Iterator[Client]:
            with ExitStack() as stack:
                endpoint = stack.enter_context(reach(fleet, fleet_path, options, user))
                client = cls(fleet, endpoint)
                stack.callback(client.close)
                yield client

        return opened()

    def close(self) -> None:
        try:
            self._loop.call(self._conn.nc.close())
        finally:
            self._loop.close()

    # ---- sending -------------------------------------------------------------------------

    def resolve(
        self,
        to: Sequence[str] = (),
        select: Mapping[str, str] | None = None,
        route: str | None = None,
        any: bool = False,
    ) -> list[str]:
        """The target worker ids, checked against the fleet (TargetError otherwise)."""
        ask = targets.Ask(tuple(to), select, route, any)
        return targets.resolve(self.fleet, ask, self.load)

    def running(
        self, workers: Sequence[str], timeout: float = liveness.PING_TIMEOUT
    ) -> set[str] | None:
        """Which of `workers` run now (their poller answers a ping); None when these creds
        may not ping (issued before they could: `fleetctl apply` issues new ones)."""
        if may_publish(self._identity, self.names.ping("w")) is False:
            return None
        return self._loop.call(liveness.answering(self._conn, workers, timeout))

    def load(self, workers: Sequence[str]) -> dict[str, int]:
        """Tasks queued plus in flight on each worker's consumer."""
        return self._loop.call(whereabouts.load(self._conn, workers))

    def send(
        self,
        prompt: str,
        *,
        to: Sequence[str] = (),
        select: Mapping[str, str] | None = None,
        route: str | None = None,
        any: bool = False,
        task_id: str | None = None,
        timeout: float | None = None,
        task_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        payload: Any = None,
        repo: str | None = None,
        ref: str | None = None,
    ) -> Sent:
        """Publish one copy of the task per target; TargetError, TaskError or CodeError
        (nothing published) when a target, the task or its code is not acceptable.
        `repo`, `ref`: the repository and ref it works on, resolved here to the commit every
        target starts from (fleetctl/tasks/code.py); `code(...)` does that alone."""
        task_id = task_id or taskmsg.new_task_id()
        taskmsg.check_task_id(task_id)
        workers = self.resolve(to, select, route, any)
        pinned = self.code(workers, repo, ref)
        data = taskmsg.build(
            task_id,
            prompt,
            timeout=timeout,
            task_type=task_type,
            metadata=metadata,
            payload=payload,
            code=pinned.fields() if pinned else None,
        )
        named = (pinned.repo, pinned.ref) if pinned else (None, None)
        queue = self.fleet.routes.get(route) if route is not None else None
        if queue is not None and queue.pick == "any" and not (to or select or any):
            return self._loop.call(sending.enqueue(self._conn, task_id, data, queue.name, *named))
        return self._loop.call(
            sending.publish(self._conn, task_id, data, workers, "", route, *named)
        )

    def code(
        self, workers: Sequence[str], repo: str | None = None, ref: str | None = None
    ) -> Code | None:
        """The repository, ref and commit a task for `workers` works on: `repo` (checked
        against each of them) at `ref`, or their shared default repository; None when the
        task names none and they share none. CodeError when it cannot be resolved."""
        chosen = task_code.choose(self.fleet, workers, repo, ref)
        return None if chosen is None else task_code.resolve(*chosen)

    def publish(
        self,
        task_id: str,
        data: bytes,
        workers: Sequence[str],
        tag: str = "",
        *,
        route: str | None = None,
    ) -> Sent:
        """Publish an encoded task to each of `workers` (already checked), then record
        the copies the bus stored (also when another copy failed: that error is raised
        after the record is written)."""
        return self._loop.call(sending.publish(self._conn, task_id, data, workers, tag, route))

    def cancel(self, task_id: str, to: Sequence[str] = ()) -> list[Cancel]:
        """Cancel the task on each of its targets without a result yet (only those in `to`,
        when given): a queued copy will not run, a running one has its CLI stopped; each
        ends as `cancelled` (`wait` on the asked ones shows it). NoSuchTask for an unknown
        id, TaskError for a worker it was not sent to."""
        if may_publish(self._identity, self.names.cancel("w", "t")) is False:
            raise taskmsg.TaskError(
                "these credentials predate task cancels and may not write them: "
                "`fleetctl apply` (or `fleetctl creds init`) issues new ones"
            )
        return self._loop.call(cancelling.cancel(self._conn, task_id, to))

    # ---- reading -------------------------------------------------------------------------

    def results(self, task_id: str) -> list[Result]:
        """Each target's result (or where its copy is), then every other worker's answer,
        marked `unsolicited`; all attributed by subject. NoSuchTask for an unknown id."""
        return self.answers(task_id).results

    def answers(self, task_id: str) -> Answers:
        """The task's record and `results`: by subject, whatever else the window holds."""
        return self._loop.call(task_answers.answers(self._conn, task_id))

    # ---- judgments (the dashboard's identity writes them) ---------------------------------

    def judge(self, task_id: str, worker: str, verdict: str, comment: str = "") -> Judgment:
        """Store a pick, pass or fail with a comment on `worker`'s answer (TaskError for a
        bad one, BusError when these creds may not write judgments)."""
        from fleetctl.tasks.record import now

        judgments.check(task_id, worker, verdict, comment)
        judged = Judgment(task_id, worker, verdict, comment, now())
        earlier = self._loop.call(judgments.of_task(self._conn, task_id))
        self._loop.call(judgments.store(self._conn, judged, earlier))
        return judged

    def judgments(self, task_ids: Sequence[str]) -> dict[str, dict[str, Judgment]]:
        """These tasks' judgments: task -> worker -> judgment."""
        return self._loop.call(judgments.of_tasks(self._conn, task_ids))

    def every_judgment(self) -> list[Judgment]:
        return self._loop.call(judgments.every(self._conn))

    # ---- following (the dashboard's live view) -------------------------------------------

    def records(self, since: float) -> list[TaskRecord]:
        """Every task record written in the last `since` seconds, oldest first."""
        return self._loop.call(listing.records_since(self._conn, since))

    def follow(self, on_change: Callable[[following.Change], None]) -> None:
        """Call `on_change` (on the client's own thread) for each new record, result and
        judgment, until the client closes."""
        self._loop.call(following.follow(self._conn, on_change))

    # ---- changes (a task on a repository) ------------------------------------------------

    def change(self, task_id: str, worker: str) -> Change:
        """`worker`'s change: its result's `code` (ChangeError when it has none)."""
        return changes.of(self.results(task_id), worker)

    def patch(self, task_id: str, worker: str) -> bytes:
        """`worker`'s patch, for `git apply` (ChangeError when the worker had to cut it:
        the message says where the whole change is)."""
        change = self.change(task_id, worker)
        return changes.whole_patch(change, self._url(change))

    def compare(
        self, task_id: str, a: str, b: str, checkout: str | Path | None = None
    ) -> list[str]:
        """How two workers' changes differ, as unified diff lines ([]: the same change): their
        patches compared, or with `checkout` (one that has the base) the files they leave."""
        found = self.results(task_id)
        ca, cb = changes.of(found, a), changes.of(found, b)
        if checkout is not None:
            return changes.compare_in(ca, cb, Path(checkout))
        return changes.compare(ca, cb)

    def apply(self, task_id: str, worker: str, to: str | Path = ".") -> Change:
        """Apply `worker`'s change to the checkout at `to` (staged, not committed); a
        checkout with uncommitted changes or at another commit is refused (ChangeError,
        whose `fix` is the command that fixes it) and left as it was."""
        change = self.change(task_id, worker)
        changes.apply(change, Path(to), self._url(change))
        return change

    def _url(self, change: Change) -> str | None:
        repo = self.fleet.repos.get(str(change.code.get("repo")))
        return repo.url if repo is not None else None

    def record(self, task_id: str) -> TaskRecord | None:
        """Whom the task was sent to, when and by whom; None when the bus has no record."""
        return self._loop.call(task_answers.record_of(self._conn, task_id))[0]

    def follow_activity(self) -> None:
        """From now on, running results say what their worker is doing (its heartbeats)."""
        self._loop.call(activity.follow(self._conn))

    def progress(self, sent: Sent) -> list[Result]:
        """Each target's result, or where its copy of the task is (queued, running,
        dead-lettered)."""
        return self._loop.call(whereabouts.progress(self._conn, [sent]))

    def wait(
        self,
        sent: Sent | Sequence[Sent],
        timeout: float | None = None,
        on_update: Callable[[list[Result]], None] | None = None,
    ) -> list[Result]:
        """Block until every target of `sent` has a result (or was dead-lettered), or
        `timeout` seconds pass; then each target's result or last known state.
        `on_update` gets the whole picture whenever it changes (live progress)."""
        sents = [sent] if isinstance(sent, Sent) else list(sent)
        return self._loop.call(waiting.wait(self._conn, sents, timeout, on_update))

    # ---- the fleet's recent tasks --------------------------------------------------------

    def tasks(self, since: float = 3600, worker: str | None = None) -> list[TaskRow]:
        """Tasks sent in the last `since` seconds, from their records, with their state per
        target and any unsolicited answers; with `worker`, the tasks it was sent or
        answered."""
        return self._loop.call(listing.tasks(self._conn, since, worker))

    def stored_results(
        self, since: float | None = None, worker: str | None = None
    ) -> list[StoredResult]:
        """Every stored result (stored in the last `since` seconds), attributed by subject."""
        return self._loop.call(listing.stored_results(self._conn, since, worker))

    # ---- dead letters --------------------------------------------------------------------

    def dead_letters(self, worker: str | None = None) -> list[DeadLetter]:
        return self._loop.call(deadletters.dead_letters(self._conn, worker))

    def dead_letter(self, seq: int) -> DeadLetter | None:
        return self._loop.call(deadletters.dead_letter(self._conn, seq))

    def replay(self, seq: int, to: Sequence[str] = ()) -> Sent:
        """Send a dead letter's original task again, to its worker or to `to`, with a new
        dedup id (the first one may still be inside the duplicate window)."""
        letter = self.dead_letter(seq)
        if letter is None:
            raise taskmsg.TaskError(f"no dead letter with sequence {seq}")
        data = letter.task()
        if data is None or letter.task_id is None:
            raise taskmsg.TaskError(
                f"dead letter {seq} cannot be replayed: "
                + ("its task was too large to keep" if data is None else "its task id is unusable")
            )
        workers = self.resolve(to or [letter.worker_id])
        return self.publish(letter.task_id, data, workers, tag=f":replay-{seq}")

    def purge_dead(self, worker: str | None = None) -> int:
        """Remove the dead letters (of one worker); how many were removed."""
        return self._loop.call(deadletters.purge(self._conn, worker))
