"""Live plan and apply against simulated SSH hosts: 1 broker-host + 20 worker hosts with
5 workers each (100 `llm: command` workers running the stand-in CLI).

Run: .venv/bin/python bench/bench_reconcile.py [--hosts 20] [--per-host 5] [--rounds 5]
Needs root (network namespaces, overlay mounts, sshd: see tests/support/simhosts.py); without
it the bench says why and exits 0, as the e2e tests skip.

Measures, each as the real `fleetctl` command run inside the simulated LAN:
1. the first `fleetctl apply --all --issue-creds --yes` (wall time; recorded, no target),
   then waits until the machine is quiet (the 100 pollers it started are still booting);
2. a no-op `fleetctl plan --detailed-exitcode`, --rounds times. Target: median at most
   1.5 s. Then the same with `--parallel 20` (twice the default), for comparison only;
3. a no-op `fleetctl apply --all --yes`, --rounds times. Target: median at most 1.5 s.
`--status` also times `fleetctl status --check` (after the no-op plans; no target).
Both no-ops must print "No changes" and exit 0, or the bench fails. Exits 1 if a target is
missed. Beside the wall time: the CPU time of the fleetctl process and of the whole machine
during the command (the simulated hosts' sshd, agent and systemctl run on the same cores).
`--breakdown` also runs one no-op plan and one no-op apply with timers around each phase (this
file's `--traced` mode) and sums `python -X importtime` by package.
`--against FLEETCTL` (another checkout's `.venv/bin/fleetctl`, whose poller sources are the
same, so its plan of this fleet is a no-op too) runs the no-ops alternately with that binary,
one round of each at a time, so both see the same minutes of this noisy VM: an A/B.
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from tests.e2e.fleet_env import (
    BROKER,
    FLEETCTL,
    FleetEnv,
    install_standins,
    prepare_wheelhouse,
    worker,
)
from tests.support.simhosts import SimNet, skip_reason

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.5
NO_CHANGES = "No changes."
TICK = os.sysconf("SC_CLK_TCK")


def node_name(i: int) -> str:
    return f"node-{i:02d}"


@contextmanager
def fleet_on_simhosts(workdir: Path, n_hosts: int, per_host: int) -> Iterator[FleetEnv]:
    nodes = tuple(node_name(i) for i in range(1, n_hosts + 1))
    with SimNet(workdir / "net", [BROKER, *nodes]) as net:
        install_standins(net, nodes)
        workers = [
            worker(f"w{i:02d}-{j}", name)
            for i, name in enumerate(nodes, start=1)
            for j in range(1, per_host + 1)
        ]
        env = FleetEnv(net, workdir, workers, nodes)
        env.write()
        yield env


# ---- measuring -------------------------------------------------------------------------


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / TICK


@dataclass
class Run:
    wall: float
    cpu: float  # the fleetctl process (and its children)
    machine: float  # every process on the machine, simulated hosts included
    done: subprocess.CompletedProcess[str]


def timed(env: FleetEnv, *args: str, binary: str = str(FLEETCTL)) -> Run:
    before, m0 = os.times(), machine_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        env.net.lan_argv([binary, *args]),
        capture_output=True,
        text=True,
        env=env.env(),
        timeout=900,
    )
    wall = time.perf_counter() - start
    after, m1 = os.times(), machine_cpu()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return Run(wall, cpu, m1 - m0, done)


def calibration() -> float:
    """CPU seconds for a fixed pure-Python loop (median of 3): this VM's speed drifts by up
    to 40 % from minute to minute (shared cores), and the no-op figures drift with it."""
    times = []
    for _ in range(3):
        start, total = time.process_time(), 0
        for i in range(1_000_000):
            total += i * i
        times.append(time.process_time() - start)
    return statistics.median(times)


def settle(limit: float = 120.0, idle_cores: float = 0.25, quiet_windows: int = 3) -> str:
    """Wait until the machine is quiet before the no-ops: after the first apply, 100 pollers
    are still starting (each imports its libraries and connects) and the kernel still has
    to write back what the apply wrote (20 virtual environments). The no-ops measure
    fleetctl against a running fleet, not against its boot. Returns what was waited for."""
    start = time.perf_counter()
    os.sync()
    quiet, rate = 0, 0.0
    while time.perf_counter() - start < limit and quiet < quiet_windows:
        before = machine_cpu()
        time.sleep(1.0)
        rate = machine_cpu() - before
        quiet = quiet + 1 if rate < idle_cores else 0
    return (
        f"waited {time.perf_counter() - start:.0f} s after the first apply (sync, then "
        f"{quiet_windows} s under {idle_cores} busy cores); the idle fleet then used "
        f"{rate:.2f} cores"
    )


def check_noop(what: str, done: subprocess.CompletedProcess[str]) -> None:
    text = done.stdout + done.stderr
    if done.returncode != 0 or NO_CHANGES not in done.stdout:
        sys.exit(f"bench_reconcile: `{what}` was not a no-op (exit {done.returncode}):\n{text}")


@dataclass
class Row:
    label: str
    runs: list[Run] = field(default_factory=list)
    target: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def ok(self) -> bool:
        return self.target is None or self.median <= self.target

    def line(self) -> str:
        walls = [r.wall for r in self.runs]
        cpu = statistics.median(r.cpu for r in self.runs)
        machine = statistics.median(r.machine for r in self.runs)
        target = (
            "-" if self.target is None else f"<= {self.target}: {'ok' if self.ok else 'MISSED'}"
        )
        return (
            f"{self.label:<38} {len(walls):>2} {min(walls):>7.3f} {self.median:>7.3f} "
            f"{max(walls):>7.3f} {cpu:>8.2f} {machine:>8.2f}  {target}"
        )


HEADER = (
    f"{'command':<38} {'n':>2} {'min s':>7} {'med s':>7} {'max s':>7} "
    f"{'cpu s':>8} {'mach s':>8}  target (median)"
)


def noop_rounds(env: FleetEnv, label: str, n: int, *args: str) -> Row:
    row = Row(label, target=TARGET_S)
    for _ in range(n):
        run = timed(env, *args)
        check_noop("fleetctl " + " ".join(args), run.done)
        row.runs.append(run)
    return row


def status_rounds(env: FleetEnv, n: int) -> Row:
    """`fleetctl status --check` of the healthy fleet: every host observed as a no-op plan
    observes it, plus a ping and a consumer look-up per worker; it must find no problem."""
    row = Row("status --check")
    for _ in range(n):
        run = timed(env, "status", "--check")
        if run.done.returncode != 0:
            sys.exit(f"bench_reconcile: status found problems:\n{run.done.stdout}{run.done.stderr}")
        row.runs.append(run)
    return row


def ab_rounds(env: FleetEnv, label: str, n: int, other: str, *args: str) -> list[Row]:
    """The same no-op with this checkout's fleetctl and `other`, alternately."""
    mine, theirs = Row(f"{label} (this)"), Row(f"{label} (against)")
    for i in range(n):
        order = [(mine, str(FLEETCTL)), (theirs, other)]
        for row, binary in order if i % 2 == 0 else order[::-1]:
            run = timed(env, *args, binary=binary)
            check_noop(f"{binary} " + " ".join(args), run.done)
            row.runs.append(run)
    return [mine, theirs]


def lan_overhead(net: SimNet, n: int = 5) -> float:
    """What `ip netns exec LAN` plus interpreter start-up costs alone (median seconds)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(net.lan_argv([sys.executable, "-c", "pass"]), check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- --breakdown: phase timers inside one fleetctl run ---------------------------------

PHASES = {"visit": "phase: connect, lock, observe every host"}


def traced_fleetctl(argv: list[str]) -> None:
    """Run fleetctl's CLI in this process with timers around its phases; print them to
    stderr as one JSON line (`TRACE {...}`) at exit. Started with `--traced` by `breakdown`."""
    import atexit
    import threading

    from fleetctl.cli.entry import configure_collector

    configure_collector()  # as the `fleetctl` command does before its imports
    t0, c0 = time.perf_counter(), time.process_time()
    import fleetctl.cli.main as cli_main

    importlib.import_module(cli_main.COMMANDS[argv[0]])  # the command's own (lazy) imports
    t_import, c_import = time.perf_counter() - t0, time.process_time() - c0
    from fleetctl.cli import apply as cli_apply
    from fleetctl.cli import context
    from fleetctl.cli import plan as cli_plan
    from fleetctl.identity import tunnelkeys
    from fleetctl.reconcile import agent_client, jetstream, observation, rollout

    # (label, host, start, end, process CPU used meanwhile: meaningful for main-thread phases)
    spans: list[tuple[str, str, float, float, float]] = []
    guard = threading.Lock()

    def wrap(owner: Any, attr: str, label: str, host_arg: int | None = None) -> None:
        inner: Callable[..., Any] = getattr(owner, attr)

        def timer(*a: Any, **k: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*a, **k)
            finally:
                name = label
                host = ""
                if host_arg is not None and len(a) > host_arg:
                    h = getattr(a[host_arg], "host", a[host_arg])  # a Session has .host
                    host = str(getattr(h, "name", h))
                if attr == "for_each_host" and len(a) > 1:
                    name = PHASES.get(getattr(a[1], "__name__", ""), "phase: apply every host")
                end = time.perf_counter()
                with guard:
                    spans.append((name, host, start - t0, end - t0, time.process_time() - cpu))

        setattr(owner, attr, timer)

    wrap(context.AppContext, "fleet", "load + validate YAML")
    wrap(tunnelkeys, "ensure", "tunnel keys")
    wrap(cli_plan, "gather", "gather inputs (store, keys, versions)")
    wrap(cli_apply, "gather", "gather inputs (store, keys, versions)")
    wrap(observation, "desired_state", "desired state (render units)")
    wrap(observation, "for_each_host", "phase")
    wrap(rollout, "for_each_host", "phase")
    wrap(observation, "connect", "  SSH connect + auth", 0)
    wrap(observation, "take_lock", "  take the apply lock", 0)
    wrap(agent_client, "observe", "  agent observe round trip", 0)
    wrap(observation, "_observe_bus", "  NATS API via the SSH forward", 2)
    wrap(jetstream, "observe", "    of which jetstream.observe")
    wrap(observation, "make_plan", "diff (make_plan)")
    wrap(cli_plan, "print_plan", "print the plan (rich)")
    wrap(cli_apply, "print_plan", "print the plan (rich)")
    wrap(observation.LiveView, "close", "close sessions (and locks)")

    def report() -> None:
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        trace = {"import": [t_import, c_import], "total": [total, cpu], "spans": spans}
        print("TRACE " + json.dumps(trace), file=sys.stderr)

    atexit.register(report)
    sys.argv = ["fleetctl", *argv]
    cli_main.main()


def trace_table(trace: dict[str, Any], startup: float, wall: float) -> list[str]:
    by: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for label, host, start, end, cpu in trace["spans"]:
        by[label].append((host, start, end, cpu))
    lines = [
        f"  {'':<40} {'calls':>5} {'span s':>7} {'sum s':>7} {'cpu s':>6} "
        f"{'ms/call min/med/max':>21}",
        f"  {'ip netns exec + interpreter start-up':<40} {1:>5} {startup:>7.3f}",
        f"  {'import fleetctl.cli.main':<40} {1:>5} {trace['import'][0]:>7.3f} "
        f"{trace['import'][0]:>7.3f} {trace['import'][1]:>6.2f}",
    ]
    for label in sorted(by, key=lambda k: min(s for _, s, _, _ in by[k])):
        spans = by[label]
        durations = sorted(e - s for _, s, e, _ in spans)
        span = max(e for _, _, e, _ in spans) - min(s for _, s, _, _ in spans)
        per_host = any(h for h, _, _, _ in spans)
        cpu = "" if per_host else f"{sum(c for _, _, _, c in spans):.2f}"
        per = (
            f"{durations[0] * 1e3:.0f} / {statistics.median(durations) * 1e3:.0f} / "
            f"{durations[-1] * 1e3:.0f}"
        )
        lines.append(
            f"  {label:<40} {len(spans):>5} {span:>7.3f} {sum(durations):>7.3f} {cpu:>6} {per:>21}"
        )
    total, cpu = trace["total"]
    lines.append(
        f"  {'in process, from the first import':<40} {'':>5} {total:>7.3f} {'':>7} {cpu:>6.2f}"
    )
    lines.append(f"  {'wall, as the bench sees it':<40} {'':>5} {wall:>7.3f}")
    return lines


def breakdown(env: FleetEnv, startup: float, *args: str) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--traced", *args]
    start = time.perf_counter()
    done = subprocess.run(
        env.net.lan_argv(argv), capture_output=True, text=True, env=env.env(), timeout=300
    )
    wall = time.perf_counter() - start
    check_noop("fleetctl " + " ".join(args) + " (traced)", done)
    line = next(x for x in done.stderr.splitlines() if x.startswith("TRACE "))
    title = f"traced `fleetctl {' '.join(args)}` (span: first start to last end):"
    return [title, *trace_table(json.loads(line[6:]), startup, wall)]


PLAN_IMPORTS = (
    "from fleetctl.cli.entry import configure_collector; configure_collector(); "
    "import fleetctl.cli.main as m; m.cli.get_command(None, 'plan')"
)


def import_times(top: int = 10) -> list[str]:
    """`python -X importtime` over what `fleetctl plan` imports, self time summed by package."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PLAN_IMPORTS],
        capture_output=True,
        text=True,
        check=True,
    )
    self_us: dict[str, int] = defaultdict(int)
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        self_us[parts[2].strip().split(".")[0]] += int(parts[0])
    total = sum(self_us.values())
    ranked = sorted(self_us.items(), key=lambda kv: -kv[1])[:top]
    return [
        f"python -X importtime (what `fleetctl plan` imports): {total / 1e6:.3f} s in all; "
        "self time by package:",
        "  " + ", ".join(f"{name} {us / 1e3:.0f} ms" for name, us in ranked),
    ]


# ---- main ------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=20, help="worker hosts (plus one broker-host)")
    p.add_argument("--per-host", type=int, default=5, help="workers on each worker host")
    p.add_argument("--rounds", type=int, default=5, help="runs of each no-op command")
    p.add_argument("--breakdown", action="store_true", help="also time the phases of one run")
    p.add_argument("--against", metavar="FLEETCTL", help="A/B the no-ops with this fleetctl")
    p.add_argument(
        "--status", action="store_true", help="also time `fleetctl status --check` (no target)"
    )
    args = p.parse_args()
    reason = skip_reason()
    if reason is not None:
        print(f"bench_reconcile: skipped: {reason}")
        return 0
    prepare_wheelhouse()
    for package in ("fleetctl", "nsc", "poller"):  # as `./dev` does, and pip for a wheel
        compileall.compile_dir(str(REPO / package), quiet=1)
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        start = time.perf_counter()
        with fleet_on_simhosts(Path(tmp), args.hosts, args.per_host) as env:
            boot = time.perf_counter() - start
            first = timed(env, "apply", "--all", "--issue-creds", "--yes")
            if first.done.returncode != 0:
                sys.exit(f"bench_reconcile: the first apply failed:\n{first.done.stderr}")
            rows.append(Row("first apply --all --issue-creds --yes", [first]))
            notes.append(settle())
            speed = calibration()
            plan = ("plan", "--detailed-exitcode")
            rows.append(noop_rounds(env, "no-op plan", args.rounds, *plan))
            # For comparison only: twice the default parallelism on the same two cores.
            wide = (*plan, "--parallel", "20")
            row = noop_rounds(env, "no-op plan --parallel 20", args.rounds, *wide)
            rows.append(dataclasses.replace(row, target=None))
            if args.status:
                rows.append(status_rounds(env, args.rounds))
            label = "no-op apply --all --yes"
            rows.append(noop_rounds(env, label, args.rounds, "apply", "--all", "--yes"))
            if args.against:
                rows += ab_rounds(env, "A/B no-op plan", args.rounds, args.against, *plan)
                apply_all = ("apply", "--all", "--yes")
                rows += ab_rounds(env, "A/B no-op apply", args.rounds, args.against, *apply_all)
                notes.append(f"against: {args.against}")
            speed = (speed + calibration()) / 2
            notes.append(
                f"machine speed: a 1M-step Python loop took {speed * 1e3:.0f} ms of CPU "
                "(mean before and after the no-ops; about 70 ms in a fast minute, "
                "90-110 in a slow one)"
            )
            startup = lan_overhead(env.net)
            notes.append(f"`ip netns exec` + interpreter start-up alone: {startup:.3f} s")
            if args.breakdown:
                notes += breakdown(env, startup, "plan", "--detailed-exitcode")
                notes += breakdown(env, startup, "apply", "--all", "--yes")
                notes += import_times()
    print(
        f"fleet: {args.hosts * args.per_host} workers (llm: command) on {args.hosts} worker "
        f"hosts + 1 broker-host; simulated hosts booted in {boot:.1f} s"
    )
    print(f"machine: {describe()}")
    print("cpu s: the fleetctl process; mach s: the whole machine (medians)")
    print(HEADER)
    for row in rows:
        print(row.line())
    for line in notes:
        print(line)
    ok = all(row.ok for row in rows)
    print(f"targets (median of {args.rounds} <= {TARGET_S} s): {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--traced"]:
        traced_fleetctl(sys.argv[2:])
    else:
        raise SystemExit(main())
