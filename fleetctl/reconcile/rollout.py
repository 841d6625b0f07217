"""Apply a live plan: host programs in waves, and the bus in its own place.

Today's waves are the bus's hosts (every poller needs it), then every other host in
parallel; the bus's changes are made once the host it is reached through has been applied.
A host that fails is reported and the others go on; a failed wave's bus is not touched.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetctl.artifacts import brokerbinary, clibundle, wheelhouse
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target
from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.hostside.agent import journal_argv
from fleetctl.identity import credentials, fleetusers
from fleetctl.identity.natsaccess import worker_user
from fleetctl.reconcile import agent_client, facts, jetstream
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.types import BusPlan, HostPlan, Plan
from fleetctl.reconcile.program import HostProgram, program
from fleetctl.reconcile.resources.files import human_size
from fleetctl.reconcile.resources.packages import (
    STAGED_NATS,
    PackageSpec,
    staged_cli,
    staging_wheelhouse,
)
from fleetctl.reconcile.resources.revocations import RevocationSpec
from fleetctl.reconcile.sessions import Session, for_each_host
from fleetctl.transport.base import TransportError

BUS_STEP = "JetStream streams and consumers"


@dataclass
class HostResult:
    name: str
    ok: bool
    steps: int = 0
    failed_step: str | None = None
    error: str | None = None
    seconds: float = 0.0


class Reporter:
    """What the progress display hears. The default hears nothing."""

    def step(self, host: str, label: str, done: int, total: int) -> None: ...

    def finished(self, result: HostResult) -> None: ...


def waves(plan: Plan) -> list[list[str]]:
    """The hosts to apply, in order: the bus's hosts first, then the rest at once."""
    homes = plan.bus.homes if plan.bus else ()
    names = [h.name for h in plan.hosts if not h.error]
    first = [n for n in names if n in homes]
    return [w for w in (first, [n for n in names if n not in first]) if w]


def apply(
    view: LiveView,
    reporter: Reporter | None = None,
    on_applied: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """`on_applied` hears each host's result as it finishes (the apply use case remembers it)."""
    report = reporter or Reporter()
    results: dict[str, HostResult] = {}
    houses = wheelhouse.Builds()  # one build (or failure) per Python target for the run
    bundles = clibundle.Bundles()  # one bundle (or failure) per LLM CLI, checked, for the run
    guard = threading.Lock()
    bus = view.plan.bus

    def run(name: str) -> None:
        started = time.monotonic()
        result = _apply_host(view, name, houses, bundles, report)
        if bus is not None and name == bus.via and result.ok and (bus.changes or bus.error):
            _apply_bus(view, bus, view.sessions[name], result, report)
        result.seconds = time.monotonic() - started
        if on_applied is not None:
            on_applied(result)
        with guard:
            results[name] = result

    drain_error = _drain_departing(view, report)
    with bundles:  # built for this run, removed when its uploads are done
        for wave in waves(view.plan):
            if drain_error is not None and bus is not None and bus.via in wave:
                # Draining failed: leave the bus's hosts (and the revocation) for the next run.
                results[bus.via] = HostResult(bus.via, False, 0, DRAIN_STEP, drain_error)
                wave = [n for n in wave if n != bus.via]
            for_each_host(wave, run, view.options.parallel)
    _check_pings(view, results, report)
    for result in results.values():
        report.finished(result)
    for name, error in view.errors.items():
        results[name] = HostResult(name, False, failed_step="connect and observe", error=error)
        report.finished(results[name])
    order = [h.name for h in view.plan.hosts]
    return [results[n] for n in order if n in results]


def _apply_host(
    view: LiveView,
    name: str,
    houses: wheelhouse.Builds,
    bundles: clibundle.Bundles,
    report: Reporter,
) -> HostResult:
    result = HostResult(name, True)
    session = view.sessions[name]
    host_plan: HostPlan = next(h for h in view.plan.hosts if h.name == name)
    nats_bin = brokerbinary.resolve(view.fleet.nats.server_binary)
    try:
        clis = {
            c.resource.cli.package: bundles.get(c.resource.cli)
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
        )
        _upload(session, prog, houses, nats_bin, clis, report)
        if prog.steps:
            run_program(session, prog, report)
            _check_started(session, started_units(host_plan), view.options.settle, report)
        result.steps = len(prog.steps)
    except (TransportError, ArtifactError) as e:
        result.ok = False
        result.failed_step = e.step if isinstance(e, _StepFailed) else "upload"
        result.error = str(e).removeprefix(f"{name}: ")
    return result


def run_program(session: Session, prog: HostProgram, report: Reporter) -> None:
    """The agent runs the steps and prints one JSON event per step; the first failure
    raises with the failed step's label."""
    name = session.host.name
    total = len(prog.steps)
    req = {"op": "apply", "steps": [s.op for s in prog.steps]}
    failed: list[dict[str, Any]] = []

    def on_line(line: bytes) -> None:
        event = json.loads(line)
        if event.get("ok"):
            i = int(event["i"])
            label = prog.steps[i + 1].label if i + 1 < total else "done"
            report.step(name, label, i + 1, total)
        else:
            failed.append(event)

    report.step(name, prog.steps[0].label, 0, total)
    done = session.transport.run(
        agent_client.AGENT_ARGV, agent_client.agent_program(req), timeout=1800, on_line=on_line
    )
    if failed:
        i = int(failed[0]["i"])
        raise _StepFailed(name, prog.steps[i].label, str(failed[0].get("error")))
    if done.code != 0:
        raise _StepFailed(name, "host agent", agent_client.agent_failure(done.code, done.stderr))


CHECK_STEP = "check the started units stay up"
PING_STEP = "check the started workers answer their ping"
PING_WAIT = 20.0  # seconds for a started poller to reach the bus and answer
LOG_LINES = 10


def started_units(host_plan: HostPlan) -> list[str]:
    """The units this host's program starts or restarts."""
    return [
        c.name
        for c in host_plan.changes
        if c.kind == "unit" and c.unit_action in ("start", "restart")
    ]


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
    lines = []
    for unit, state in dead:
        log = session.transport.run(
            journal_argv(unit, LOG_LINES),
            timeout=30,
        )
        tail = log.stdout.decode("utf-8", "replace").strip() or "(no log lines)"
        lines.append(f"{unit} is {state} {settle:g} s after it was started; its last log:\n{tail}")
    raise _StepFailed(name, CHECK_STEP, "\n".join(lines))


def _check_pings(view: LiveView, results: dict[str, HostResult], report: Reporter) -> None:
    """Every poller apply started answers its ping over the bus, or its host failed."""
    bus = view.plan.bus
    via = view.sessions.get(bus.via) if bus else None
    waiting = {
        c.worker: h.name
        for h in view.plan.hosts
        if results.get(h.name) and results[h.name].ok
        for c in h.changes
        if c.worker and c.kind == "unit" and c.unit_action in ("start", "restart")
    }
    if via is None or not waiting:
        return
    for host in set(waiting.values()):
        report.step(host, PING_STEP, results[host].steps, results[host].steps)
    prefix = view.fleet.nats.subject_prefix
    try:
        with bus_client.through(
            via.transport, view.fleet, fleetusers.identity(view.fleet)
        ) as endpoint:
            silent = bus_client.run(ping_all(endpoint, prefix, sorted(waiting), PING_WAIT))
    except (TransportError, bus_client.BusError) as e:
        silent = {w: f"could not ping: {e}" for w in waiting}
    for worker, why in sorted(silent.items()):
        result = results[waiting[worker]]
        result.ok = False
        result.failed_step = PING_STEP
        message = f"{worker}: {why} (journalctl -u {worker}-poller on {waiting[worker]})"
        result.error = f"{result.error}; {message}" if result.error else message


async def ping_all(
    endpoint: bus_client.Endpoint, prefix: str, workers: list[str], wait: float
) -> dict[str, str]:
    """Ping each worker until it answers or `wait` runs out; the ones that never did."""
    import asyncio

    from fleetctl.bus.names import NatsNames

    names = NatsNames(prefix)
    nc = await bus_client.connect(endpoint)
    deadline = time.monotonic() + wait

    async def one(worker: str) -> str | None:
        while time.monotonic() < deadline:
            try:
                await nc.request(names.ping(worker), b"", timeout=1.0)
                return None
            except Exception:  # no responder yet, or a timeout: it may still be starting
                await asyncio.sleep(0.5)
        return f"did not answer its ping within {wait:g} s"

    try:
        answers = await asyncio.gather(*(one(w) for w in workers))
    finally:
        await nc.close()
    return {w: why for w, why in zip(workers, answers, strict=True) if why is not None}


class _StepFailed(TransportError):
    """A host program step failed; `step` is its label."""

    def __init__(self, host: str, step: str, message: str) -> None:
        super().__init__(host, message)
        self.step = step


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


DRAIN_STEP = "dead-letter the departing workers' queued tasks"


def departing(view: LiveView) -> list[str]:
    """Workers whose consumer this apply deletes while tasks still wait on it."""
    bus = view.plan.bus
    if bus is None:
        return []
    prefix = NatsNames.consumer("")
    return [
        c.name.split("/", 1)[1].removeprefix(prefix)
        for c in bus.changes
        if c.kind == "consumer"
        and c.action == "delete"
        and c.name.split("/", 1)[1].startswith(prefix)
        and view.bus.queued.get(f"consumer {c.name}", 0) > 0
    ]


def _drain_departing(view: LiveView, report: Reporter) -> str | None:
    """Before the broker's wave revokes them: each departing worker's queued tasks become
    its dead letters, read as that worker (fleetctl/reconcile/drain.py). The error, if any."""
    workers = departing(view)
    bus = view.plan.bus
    session = view.sessions.get(bus.via) if bus else None
    if not workers or session is None:
        return None
    from fleetctl.reconcile import drain

    authority = credentials.load(view.fleet)
    report.step(session.host.name, DRAIN_STEP, 0, 0)
    try:
        for worker in workers:
            creds = authority.creds_path(worker_user(worker)) if authority else None
            if creds is None or not creds.exists():
                return f"no credentials left for {worker} to read its queued tasks with"
            who = drain.identity_of(worker, creds)
            with bus_client.through(session.transport, view.fleet, who) as endpoint:
                drain.drain(endpoint, view.fleet.nats.subject_prefix, worker)
    except (TransportError, bus_client.BusError) as e:
        return str(e)
    return None


def _apply_bus(
    view: LiveView, bus: BusPlan, session: Session, result: HostResult, report: Reporter
) -> None:
    """Revocations in the store (the broker already has the config that enforces them),
    then streams and consumers through the JetStream API. A bus the plan could not observe
    (nats-server down) is observed now that the broker's wave has started it again, so what
    is created is decided against what the server really holds."""
    name = session.host.name
    try:
        who = fleetusers.identity(view.fleet)
        with bus_client.through(session.transport, view.fleet, who) as endpoint:
            changes = bus.changes
            if bus.error is not None or jetstream.ordered(changes):
                report.step(name, BUS_STEP, result.steps, result.steps)
                if not jetstream.wait_ready(endpoint):
                    raise bus_client.BusError(
                        "nats-server on the broker did not answer within 15 s"
                    )
            if bus.error is not None:
                seen = jetstream.observe(endpoint, view.desired.bus)
                fresh = diff_bus(view.desired.bus, seen, view.selection, session.host)
                changes = fresh.changes if fresh else ()
            if any(c.kind == RevocationSpec.kind for c in changes):
                inputs = view.inputs
                credentials.commit_revocations(view.fleet, inputs.revocations, inputs.revoked_at)
            api_changes = jetstream.ordered(changes)
            if api_changes:
                jetstream.apply(endpoint, api_changes)
        result.steps += len(api_changes)
    except (TransportError, bus_client.BusError) as e:
        result.ok = False
        result.failed_step = BUS_STEP
        result.error = str(e).removeprefix(f"{name}: ")
