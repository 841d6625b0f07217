"""One host's part of an apply: upload what its program installs, say what its pollers'
restarts wait for, run the program (which keeps the previous version first), check the host
(the units it started stay up; the pollers it started pass the health gate), then confirm
it; or, when any of that failed, roll it back to its previous version and check that.

The rollout (fleetctl/reconcile/rollout.py) runs this for each host, in its waves and
batches; `fleetctl rollback` runs `roll_back` alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from fleetctl import layout
from fleetctl.artifacts import brokerbinary, clibundle, wheelhouse
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target
from fleetctl.config.values import written_duration
from fleetctl.hostside.agent import journal_argv
from fleetctl.reconcile import agent_client, facts
from fleetctl.reconcile.brokerfit import FIT_STEP
from fleetctl.reconcile.gate import Workers, in_flight
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.types import HostPlan
from fleetctl.reconcile.program import (
    Drain,
    HostProgram,
    Keep,
    confirm_step,
    program,
    restore_step,
)
from fleetctl.reconcile.resources.files import human_size
from fleetctl.reconcile.resources.packages import (
    POLLER_PACKAGE,
    STAGED_NATS,
    PackageSpec,
    staged_cli,
    staging_wheelhouse,
)
from fleetctl.reconcile.sessions import Session
from fleetctl.transport.base import TransportError

CHECK_STEP = "check the started units stay up"
PING_STEP = "check the started workers answer their ping"
CONFIRM_STEP = "confirm the new version"
ROLLBACK_STEP = "roll back to the previous version"
PING_WAIT = 20.0  # seconds for a started poller to reach the bus and pass the gate
LOG_LINES = 10


@dataclass
class HostResult:
    name: str
    ok: bool
    steps: int = 0
    failed_step: str | None = None
    error: str | None = None
    seconds: float = 0.0
    rolled_back: bool = False  # back at its previous version (by apply, or by itself)
    skipped: bool = False  # not started: the rollout stopped before its batch


class Reporter:
    """What the progress display hears. The default hears nothing."""

    def step(self, host: str, label: str, done: int, total: int) -> None: ...

    def note(self, host: str, text: str) -> None:
        """Something to say on a line of its own (what a restart waits for, a rollback)."""

    def finished(self, result: HostResult) -> None: ...


@dataclass(frozen=True)
class Settings:
    """How apply changes each host, besides its plan: the host rolls back by itself unless
    confirmed within `confirm_timeout` seconds (None: no watchdog); `drain` says how its
    stopping pollers drain."""

    confirm_timeout: float | None = 120.0
    drain: Drain = field(default_factory=Drain)


@dataclass
class Apply:
    """What every host of one apply shares."""

    view: LiveView
    workers: Workers
    settings: Settings
    generation: str
    report: Reporter
    houses: wheelhouse.Builds = field(default_factory=wheelhouse.Builds)
    bundles: clibundle.Bundles = field(default_factory=clibundle.Bundles)


class StepFailed(TransportError):
    """A host program step failed; `step` is its label."""

    def __init__(self, host: str, step: str, message: str) -> None:
        super().__init__(host, message)
        self.step = step


def apply_host(run: Apply, name: str) -> HostResult:
    result = HostResult(name, True)
    view = run.view
    session = view.sessions[name]
    host_plan: HostPlan = next(h for h in view.plan.hosts if h.name == name)
    prog: HostProgram | None = None
    began = False
    try:
        prog = _program(run, session, host_plan)
        if prog.steps:
            _say_drains(run, host_plan)
            began = True
            run_program(session, prog, run.report)
            _check_started(session, started_units(host_plan), view.options.settle, run.report)
            _check_workers(run, session, host_plan)
            _confirm(session, prog.generation, run.report, len(prog.steps))
        else:
            _confirm_left_over(session, run.report)
        result.steps = len(prog.steps)
    except (TransportError, ArtifactError) as e:
        result.ok = False
        result.failed_step = e.step if isinstance(e, StepFailed) else "upload"
        if not isinstance(e, StepFailed) and began:
            result.failed_step = "host agent"
        result.error = str(e).removeprefix(f"{name}: ")
        if isinstance(e, StepFailed) and e.step == CONFIRM_STEP:
            result.rolled_back = "rolled back by itself" in result.error
        elif began and prog is not None:
            roll_back(run, session, result, prog.generation)
    return result


def _program(run: Apply, session: Session, host_plan: HostPlan) -> HostProgram:
    view = run.view
    nats_bin = brokerbinary.resolve(view.fleet.nats.server_binary)
    clis = {
        c.resource.cli.package: run.bundles.get(c.resource.cli)
        for c in host_plan.changes
        if isinstance(c.resource, PackageSpec) and c.resource.cli and c.action != "delete"
    }
    prog = program(
        host_plan,
        session.observed,
        revision=view.fleet.revision,
        applied_by=view.options.command,
        now=int(time.time()),
        nats_sha256=nats_bin.sha256,
        cli_sha256={package: bundle.sha256 for package, bundle in clis.items()},
        keep=Keep(run.generation, run.settings.confirm_timeout),
        drain=run.settings.drain,
    )
    if prog.nats_server:  # the plan checked it when it knew the host's platform; again here
        unfit = nats_bin.unfit_for(session.host.name, facts.python_facts(session.raw).platform)
        if unfit is not None:
            raise StepFailed(session.host.name, FIT_STEP, unfit)
    _upload(session, prog, run.houses, nats_bin, clis, run.report)
    return prog


def run_program(session: Session, prog: HostProgram, report: Reporter) -> list[dict[str, Any]]:
    """The agent runs the steps and prints one JSON event per step; the first failure
    raises with the failed step's label. What each step said (a restore: the units it
    started), in order."""
    name = session.host.name
    total = len(prog.steps)
    req = {"op": "apply", "steps": [s.op for s in prog.steps]}
    failed: list[dict[str, Any]] = []
    said: list[dict[str, Any]] = []

    def on_line(line: bytes) -> None:
        event = json.loads(line)
        if event.get("ok"):
            i = int(event["i"])
            said.append(event.get("said") or {})
            label = prog.steps[i + 1].label if i + 1 < total else "done"
            report.step(name, label, i + 1, total)
        else:
            failed.append(event)

    report.step(name, prog.steps[0].label, 0, total)
    done = session.transport.run(
        agent_client.AGENT_ARGV,
        agent_client.agent_program(req),
        timeout=prog.timeout,
        on_line=on_line,
    )
    if failed:
        i = int(failed[0]["i"])
        raise StepFailed(name, prog.steps[i].label, str(failed[0].get("error")))
    if done.code != 0:
        raise StepFailed(name, "host agent", agent_client.agent_failure(done.code, done.stderr))
    return said


def started_units(host_plan: HostPlan) -> list[str]:
    """The units this host's program starts or restarts."""
    return [
        c.name
        for c in host_plan.changes
        if c.kind == "unit" and c.unit_action in ("start", "restart")
    ]


def started_workers(host_plan: HostPlan) -> list[str]:
    """The pollers this host's program starts or restarts, by worker id."""
    return [
        c.worker
        for c in host_plan.changes
        if c.kind == "unit" and c.worker and c.unit_action in ("start", "restart")
    ]


def stopping_workers(host_plan: HostPlan) -> list[str]:
    """The pollers this host's program stops (restarted or removed), by worker id."""
    suffix = layout.POLLER_UNIT_SUFFIX
    stops = [c for c in host_plan.changes if c.kind == "unit" and layout.is_poller_unit(c.name)]
    return [
        c.worker or c.name.removesuffix(suffix)
        for c in stops
        if c.unit_action in ("restart", "stop")
    ]


def _say_drains(run: Apply, host_plan: HostPlan) -> None:
    """`draining cc-b: 2 tasks, up to 30m`: what each poller's restart waits for."""
    stopping = stopping_workers(host_plan)
    if not stopping:
        return
    seconds = run.settings.drain.seconds
    for worker, status in sorted(run.workers.now(stopping).items()):
        count = in_flight(status)
        if not count:
            continue
        tasks = f"{count} task{'s' if count != 1 else ''}"
        if seconds == 0:
            run.report.note(host_plan.name, f"handing back {worker}'s {tasks} now (--no-drain)")
            continue
        limit = _drain_limit(run.view, worker)
        if seconds is not None:
            limit = min(limit, seconds) if limit is not None else seconds
        upto = f", up to {written_duration(limit)}" if limit is not None else ""
        run.report.note(host_plan.name, f"draining {worker}: {tasks}{upto}")


def _drain_limit(view: LiveView, worker: str) -> float | None:
    """How long the worker's poller lets its tasks finish when stopped: its drain_timeout
    (None: a worker no longer in fleet.yaml, whose old unit says)."""
    found = view.fleet.worker(worker)
    return float(found.drain_timeout) if found is not None else None


def _check_started(session: Session, units: list[str], settle: float, report: Reporter) -> None:
    """A unit that was started must still be running `settle` seconds later: one that fails
    at once (say, unreadable creds) is a failure of this host, with its last log lines."""
    if not units:
        return
    name = session.host.name
    report.step(name, CHECK_STEP, 0, 0)
    time.sleep(settle)
    done = session.transport.run(["systemctl", "is-active", *units], timeout=60)
    states = done.stdout.decode("utf-8", "replace").split()
    dead = [(u, s) for u, s in zip(units, states, strict=False) if s != "active"]
    if len(states) < len(units):
        dead += [(u, "unknown") for u in units[len(states) :]]
    if not dead:
        return
    lines = [
        f"{unit} is {state} {settle:g} s after it was started; its last log:\n"
        f"{_last_log(session, unit)}"
        for unit, state in dead
    ]
    raise StepFailed(name, CHECK_STEP, "\n".join(lines))


def _last_log(session: Session, unit: str) -> str:
    log = session.transport.run(journal_argv(unit, LOG_LINES), timeout=30)
    return log.stdout.decode("utf-8", "replace").strip() or "(no log lines)"


def _check_workers(run: Apply, session: Session, host_plan: HostPlan) -> None:
    """The health gate: every poller the program started answers its ping with the new
    poller_version, from a process up for at least --settle seconds."""
    workers = started_workers(host_plan)
    if not workers:
        return
    name = session.host.name
    run.report.step(name, PING_STEP, 0, 0)
    version = _poller_version(run.view, name)
    failing = run.workers.settled(workers, version, run.view.options.settle, PING_WAIT)
    if not failing:
        return
    lines = [
        f"{worker}: {why}; the last log of {layout.poller_unit(worker)}:\n"
        f"{_last_log(session, layout.poller_unit(worker))}"
        for worker, why in sorted(failing.items())
    ]
    raise StepFailed(name, PING_STEP, "\n".join(lines))


def _poller_version(view: LiveView, host: str) -> str | None:
    state = view.desired.hosts.get(host)
    packages = state.packages if state is not None else ()
    return next((p.version for p in packages if p.name == POLLER_PACKAGE), None)


def _confirm(session: Session, generation: str | None, report: Reporter, steps: int) -> None:
    if generation is None:
        return
    report.step(session.host.name, CONFIRM_STEP, steps, steps)
    run_program(session, HostProgram((confirm_step(generation),)), Reporter())


def _confirm_left_over(session: Session, report: Reporter) -> None:
    """A host this apply has nothing to do on, left unconfirmed by an apply that died: it
    is as the fleet wants it (this plan found nothing to change), so it stays."""
    pending = session.observed.kept.unconfirmed
    if pending is not None:
        report.note(session.host.name, "confirming the version an earlier apply left unconfirmed")
        _confirm(session, pending.generation, report, 0)


def restore(
    run: Apply, session: Session, generation: str | None, workers: list[str] | None = None
) -> dict[str, Any]:
    """Put the host's previous version back (`generation`'s, when given; only `workers'`
    part, when given) and check it: the units it restarted stay up, and the pollers among
    them answer their ping from a process that stayed up. What the host said it restored."""
    name = session.host.name
    run.report.step(name, ROLLBACK_STEP, 0, 0)
    step = restore_step(generation, workers, run.settings.drain)
    said = run_program(session, HostProgram((step,)), run.report)
    restored = said[0] if said else {}
    started = [str(u) for u in restored.get("started") or ()]
    _check_started(session, started, run.view.options.settle, run.report)
    pollers = [
        u.removesuffix(layout.POLLER_UNIT_SUFFIX) for u in started if layout.is_poller_unit(u)
    ]
    failing = run.workers.settled(pollers, None, run.view.options.settle, PING_WAIT)
    if failing:
        lines = [f"{w}: {why}" for w, why in sorted(failing.items())]
        raise StepFailed(name, PING_STEP, "\n".join(lines))
    return restored


def roll_back(run: Apply, session: Session, result: HostResult, generation: str | None) -> None:
    """After a failure: back to the previous version, and `result` says how that went. A
    host that cannot be reached restores itself once its confirm timeout has passed."""
    name = session.host.name
    try:
        restored = restore(run, session, generation)
    except TransportError as e:
        why = str(e).removeprefix(f"{name}: ")
        timeout = run.settings.confirm_timeout
        itself = (
            f"; it restores its previous version by itself within "
            f"{written_duration(timeout)} of its last step"
            if timeout is not None and not isinstance(e, StepFailed)
            else ""
        )
        result.error = f"{result.error}\nits rollback failed: {why}{itself}"
        return
    if restored.get("restored") is None:
        result.error = f"{result.error}\nnothing to roll back: {restored.get('why')}"
        return
    result.rolled_back = True
    run.report.note(name, "rolled back to its previous version")
    result.error = f"{result.error}\nrolled back to its previous version"


def _upload(
    session: Session,
    prog: HostProgram,
    houses: wheelhouse.Builds,
    nats_bin: brokerbinary.BrokerBinary,
    clis: dict[str, clibundle.Bundle],
    report: Reporter,
) -> None:
    name = session.host.name
    if prog.poller_version:
        report.step(name, "build and upload the poller wheelhouse", 0, len(prog.steps))
        py = facts.python_facts(session.raw)
        house = houses.get(Target(py.version, py.platform, py.libc))
        remote = staging_wheelhouse(prog.poller_version)
        for f in house.contents:
            session.transport.put(f, f"{remote}/{f.name}")
    if prog.nats_server:
        binary = nats_bin.checked()  # its sha256 is the pin's or fleet.yaml's, or no upload
        report.step(name, "upload nats-server", 0, len(prog.steps))
        session.transport.put(binary, STAGED_NATS)
    foreign = clibundle.foreign_host(facts.python_facts(session.raw).platform)
    if prog.llm_clis and foreign is not None:
        raise ArtifactError(foreign)
    for cli in prog.llm_clis:
        bundle = clis[cli.package]
        size = human_size(bundle.size)
        report.step(name, f"upload {cli.package} {cli.version} ({size})", 0, len(prog.steps))
        session.transport.put(bundle.path, staged_cli(cli))
