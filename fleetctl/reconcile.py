"""Live plan and apply for a whole fleet: connect, lock, observe, diff, execute.

The shell around the pure core: every host gets one connection (reused from observing to
applying) in a thread of its own; a host that fails is reported and the others go on.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl import brokerbinary, credentials, facts, layout, natsapi, tunnelkeys, wheelhouse
from fleetctl.apply.program import STAGED_NATS, HostProgram, program, staging_wheelhouse
from fleetctl.desired import HostState, Versions, desired_state
from fleetctl.hostside import lock_program
from fleetctl.model import Fleet, Host
from fleetctl.natsaccess import ADMIN_USER
from fleetctl.natsnames import NatsNames
from fleetctl.natsresources import ConsumerSpec, StreamSpec
from fleetctl.plan import ObservedHost, Plan, Selection, make_plan
from fleetctl.transport.base import Held, Transport, TransportError
from fleetctl.transport.local import LocalTransport
from fleetctl.transport.ssh import SshTransport, accepted_host_keys, key_line

LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
LOCK_FILE = f"{layout.STATE_DIR}/apply.lock"
LEASE = 20  # seconds without a heartbeat after which a host drops an apply's lock
# Stands in for an unpinned broker's SSH key until it is seen (see live_plan): never written.
SOME_BROKER_KEY = "ssh-ed25519 not-yet-seen"


@dataclass(frozen=True)
class Options:
    ssh_config: Path | None = None
    known_hosts: tuple[str, ...] = ()
    parallel: int = 10
    lock_wait: float = 0.0
    command: str = "fleetctl"
    with_contents: bool = False
    connect_timeout: float = 10.0


@dataclass
class Session:
    host: Host
    transport: Transport
    lock: Held | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    observed: ObservedHost = field(default_factory=ObservedHost)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()
        self.transport.close()


class LockedError(TransportError):
    pass


def connect(host: Host, options: Options) -> Transport:
    if host.address in LOCAL_ADDRESSES:
        return LocalTransport(host.name)
    return SshTransport(
        host.name,
        host.address,
        user=host.user,
        port=host.port,
        pinned_key=host.host_key,
        ssh_config=options.ssh_config,
        known_hosts=options.known_hosts,
        connect_timeout=options.connect_timeout,
    )


def sole_accepted_key(host: Host, options: Options) -> str | None:
    """The one SSH key `host` can present to be accepted, if there is only one."""
    if host.address in LOCAL_ADDRESSES:
        return None
    keys, _ = accepted_host_keys(
        host.address,
        host.port,
        pinned_key=host.host_key,
        ssh_config=options.ssh_config,
        known_hosts=options.known_hosts,
    )
    return key_line(keys[0]) if len(keys) == 1 else None


def take_lock(transport: Transport, options: Options) -> Held:
    info = json.dumps(
        {
            "owner": f"{getpass.getuser()}@{socket.gethostname()}",
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": options.command,
        }
    )
    held = transport.hold(
        [
            "python3",
            "-I",
            "-S",
            "-c",
            lock_program(),
            LOCK_FILE,
            info,
            str(options.lock_wait),
            str(LEASE),
        ]
    )
    line = held.readline()
    try:
        answer = json.loads(line)
    except ValueError:
        held.close()
        raise TransportError(transport.name, "could not take the apply lock") from None
    if not answer.get("locked"):
        held.close()
        h = answer.get("holder") or {}
        raise LockedError(
            transport.name,
            f"another apply holds the lock: {h.get('command', '?')} by {h.get('owner', '?')} "
            f"since {h.get('since', '?')}. Wait for it, or retry with --lock-wait SECONDS "
            f"(a lock whose holder lost its connection lapses after {LEASE} s).",
        )
    held.keep_alive(LEASE / 4)
    return held


def _parallel(items: Iterable[str], work: Callable[[str], None], parallel: int) -> None:
    names = list(items)
    if not names:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(names)))) as pool:
        list(pool.map(work, names))


@dataclass
class Fleetview:
    """Everything a live plan was made from; `apply` executes against the same sessions."""

    fleet: Fleet
    desired: dict[str, HostState]
    sessions: dict[str, Session]
    errors: dict[str, str]
    plan: Plan
    options: Options
    inputs: credentials.PlanInputs

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()


def _targets(fleet: Fleet, desired: Mapping[str, HostState], selection: Selection) -> list[str]:
    return [n for n, state in desired.items() if selection.includes_host(n, state)]


def live_plan(
    fleet: Fleet,
    selection: Selection,
    options: Options,
    *,
    lock: bool,
) -> Fleetview:
    """Connect, lock and observe every selected host, each in its own thread; then diff."""
    worker_hosts = [h.name for h in fleet.hosts if h.is_worker_host and not h.is_broker]
    keys = tunnelkeys.ensure(fleet, worker_hosts)
    inputs = credentials.plan_inputs(fleet)
    versions = local_versions(fleet)
    broker = fleet.broker

    def render(broker_key: str | None) -> dict[str, HostState]:
        return desired_state(
            fleet,
            auth_config=inputs.auth_config,
            creds=inputs.creds,
            versions=versions,
            tunnel_keys=keys,
            broker_key=broker_key,
        )

    # What to observe depends on whether the broker's SSH key is known (the tunnels'
    # known_hosts), not on the key itself, which an unpinned broker only shows when
    # connected. Rendering with the key it must present (when only one is acceptable) or a
    # stand-in lets every host be observed as soon as it is connected; the desired state is
    # rendered again only if the broker presented another key, or none.
    expected = broker.host_key or sole_accepted_key(broker, options)
    shape = render(expected or SOME_BROKER_KEY)
    names = _targets(fleet, shape, selection)
    sessions: dict[str, Session] = {}
    errors: dict[str, str] = {}
    guard = threading.Lock()

    def visit(name: str) -> None:
        host = fleet.host(name)
        try:
            transport = connect(host, options)
        except TransportError as e:
            with guard:
                errors[name] = e.message
            return
        session = Session(host, transport)
        try:
            if lock:
                session.lock = take_lock(transport, options)
            req = facts.request(shape[name], with_contents=options.with_contents)
            with ThreadPoolExecutor(max_workers=1) as beside:  # a thread only if submitted
                # The broker's JetStream API is read over the same connection meanwhile.
                nats = (
                    beside.submit(_observe_nats, fleet, shape[name], session)
                    if host.is_broker
                    else None
                )
                session.raw = _observe(session, req)
                observed = facts.parse(session.raw)
                session.observed = observed if nats is None else _with_nats(observed, nats.result())
        except (TransportError, natsapi.NatsApiError) as e:
            session.close()
            with guard:
                errors[name] = str(e).removeprefix(f"{name}: ")
            return
        with guard:
            sessions[name] = session

    _parallel(names, visit, options.parallel)
    broker_key = broker.host_key
    if broker_key is None and broker.name in sessions:
        transport = sessions[broker.name].transport
        if isinstance(transport, SshTransport):
            broker_key = transport.presented_key_line
    desired = shape if broker_key is not None and broker_key == expected else render(broker_key)
    warnings = list(inputs.warnings)
    if broker.name in errors and broker_key is None:
        warnings.append("the broker was not reached, so the tunnels' known_hosts is not planned")
    plan = make_plan(
        desired,
        {n: s.observed for n, s in sessions.items()},
        selection=selection,
        revision=fleet.revision,
        warnings=tuple(warnings),
        errors=errors,
        revoke=tuple((r.worker, r.user) for r in inputs.revocations),
    )
    return Fleetview(fleet, desired, sessions, errors, plan, options, inputs)


def local_versions(fleet: Fleet) -> Versions:
    """What apply would install: the poller built from this fleetctl, the chosen nats-server."""
    nats = brokerbinary.desired_version(fleet.nats.server_binary)
    return Versions(wheelhouse.poller_version(), nats)


def admin_creds(fleet: Fleet) -> Path | None:
    authority = credentials.load(fleet)
    if authority is None:
        return None
    path = authority.creds_path(ADMIN_USER)
    return path if path.exists() else None


def _observe(session: Session, req: Mapping[str, Any]) -> dict[str, Any]:
    """One agent round trip: through the lock's process when locked, else its own."""
    if session.lock is not None:
        return facts.observe_under_lock(session.lock, session.host.name, req)
    return facts.observe(session.transport, req)


def _observe_nats(fleet: Fleet, state: HostState, session: Session) -> natsapi.NatsObservation:
    """The broker's streams and consumers, read through the JetStream API."""
    streams = [r for r in state.nats if isinstance(r, StreamSpec)]
    consumers = [r for r in state.nats if isinstance(r, ConsumerSpec)]
    names = NatsNames(fleet.nats.subject_prefix)
    with session.transport.forward(fleet.nats.listen, fleet.nats.port) as port:
        return natsapi.observe(
            f"nats://127.0.0.1:{port}",
            admin_creds(fleet),
            streams,
            consumers,
            names.task_stream,
            names.consumer(""),
        )


def _with_nats(observed: ObservedHost, seen: natsapi.NatsObservation) -> ObservedHost:
    if not seen.reachable:
        return observed
    resources = {**observed.resources, **seen.resources}
    return dataclasses.replace(
        observed, resources=resources, managed=observed.managed | seen.managed
    )


# ---- apply --------------------------------------------------------------------------------


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


_Wheelhouses = wheelhouse.Builds  # one build (or failure) per Python target for the run


def apply(view: Fleetview, reporter: Reporter | None = None) -> list[HostResult]:
    """The broker first (every poller needs it), then every other host in parallel."""
    report = reporter or Reporter()
    results: dict[str, HostResult] = {}
    houses = _Wheelhouses()
    guard = threading.Lock()

    def run(name: str) -> None:
        result = _apply_host(view, name, houses, report)
        report.finished(result)
        with guard:
            results[name] = result

    broker = view.fleet.broker.name
    planned = [h.name for h in view.plan.hosts if h.name in view.sessions]
    if broker in planned:
        run(broker)
    _parallel([n for n in planned if n != broker], run, view.options.parallel)
    for name, error in view.errors.items():
        results[name] = HostResult(name, False, failed_step="connect and observe", error=error)
        report.finished(results[name])
    order = [h.name for h in view.plan.hosts]
    return [results[n] for n in order if n in results]


def _apply_host(view: Fleetview, name: str, houses: _Wheelhouses, report: Reporter) -> HostResult:
    started = time.monotonic()
    session = view.sessions[name]
    host_plan = next(h for h in view.plan.hosts if h.name == name)
    nats_bin = brokerbinary.resolve(view.fleet.nats.server_binary)
    prog = program(
        host_plan,
        session.observed,
        revision=view.fleet.revision,
        applied_by=view.options.command,
        nats_sha256=nats_bin.sha256,
    )
    result = HostResult(name, True)
    step = "prepare"
    try:
        if any(c.kind == "credentials" for c in host_plan.changes):
            step = "revoke credentials"
            credentials.commit_revocations(view.fleet, view.inputs)
        step = "upload"
        _upload(session, prog, houses, nats_bin, report)
        total = len(prog.steps)
        if prog.steps:
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
                facts.AGENT_ARGV, facts.agent_program(req), timeout=1800, on_line=on_line
            )
            if failed:
                i = int(failed[0]["i"])
                step = prog.steps[i].label
                raise TransportError(name, str(failed[0].get("error")))
            if done.code != 0:
                raise TransportError(name, facts.agent_failure(done.code, done.stderr))
            result.steps = total
        if prog.nats_changes:
            step = "JetStream streams and consumers"
            report.step(name, step, total, total)
            _apply_nats(view, session, prog)
            result.steps += len(prog.nats_changes)
    except (TransportError, natsapi.NatsApiError, wheelhouse.WheelhouseError) as e:
        result.ok = False
        result.failed_step = step
        result.error = str(e).removeprefix(f"{name}: ")
    result.seconds = time.monotonic() - started
    return result


def _upload(
    session: Session,
    prog: HostProgram,
    houses: _Wheelhouses,
    nats_bin: brokerbinary.BrokerBinary,
    report: Reporter,
) -> None:
    name = session.host.name
    if prog.poller_version:
        report.step(name, "build and upload the poller wheelhouse", 0, len(prog.steps))
        py = facts.python_facts(session.raw)
        house = houses.get(wheelhouse.Target(py.version, py.platform, py.libc))
        remote = staging_wheelhouse(prog.poller_version)
        for f in house.contents:
            session.transport.put(f, f"{remote}/{f.name}")
    if prog.nats_server:
        binary = nats_bin.checked()  # its sha256 is the pin's or fleet.yaml's, or no upload
        report.step(name, "upload nats-server", 0, len(prog.steps))
        session.transport.put(binary, STAGED_NATS)


def _apply_nats(view: Fleetview, session: Session, prog: HostProgram) -> None:
    fleet = view.fleet
    creds = admin_creds(fleet)
    changes = [
        natsapi.NatsChange(
            c.action,
            c.resource if isinstance(c.resource, StreamSpec | ConsumerSpec) else None,
            f"{c.kind} {c.name}",
        )
        for c in prog.nats_changes
    ]
    with session.transport.forward(fleet.nats.listen, fleet.nats.port) as port:
        url = f"nats://127.0.0.1:{port}"
        if not natsapi.wait_ready(url, creds):
            raise natsapi.NatsApiError("nats-server on the broker did not answer within 15 s")
        natsapi.apply(url, creds, changes)
