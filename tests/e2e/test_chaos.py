"""Chaos on simulated hosts: a fleet under a steady stream of tasks while
(a) an apply changes every worker, in batches of two hosts, and
(b) a new poller version that crash-loops is applied and rolled back after its first batch,
(c) one worker's CLI stalls (it goes silent, as a hung CLI does), and
(d) one worker's provider rate-limits it for a while;
then every task is accounted for: 0 lost (each has its result), 0 run twice (the stand-in
CLI's own log on each host shows one start and one end per task; a run the provider refused
did no work and is run again after the pause), 0 killed by the deploy (each run ended by
itself, and its result is its first delivery's), the stalled task ended as `timeout`
(`stalled: no output for 5s`) with its process gone, the rate-limited worker paused (not
failing its tasks) and the host the bad batch did not reach untouched (same pollers, same
processes, same poller version).

One fleet, one stream, one test: its parts are steps of the same story. Three worker hosts
with two workers each (`llm: command`, but for one stand-in Claude Code: the rate-limited
one, whose refusals the poller reads from its stream); the stand-in CLI records each run in
its worker's directory (env file `STANDIN_LOG`), and stalls or is refused while a flag file
of the test exists on its host. Figures: docs/performance.md, "Chaos".
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_env import FLEETCTL, REPO, FleetEnv, simulated_fleet, worker

pytestmark = pytest.mark.e2e

NODES = ("node-1", "node-2", "node-3")
WORKERS = {f"w{i}{x}": NODES[i - 1] for i in (1, 2, 3) for x in "ab"}
TASK = 'standin: {"sleep": 1.5}'
STALLS, LIMITED = "w2a", "w3b"  # (c) and (d)
STALL_TIMEOUT = 5  # (c)'s worker's stall_timeout: a normal task is silent for 1.5 s
INTERVAL = 0.3  # seconds between two tasks: each worker gets one every 1.8 s


def env_file(wid: str) -> str:
    return f"/etc/fleet/env/{wid}.env"


def standin_log(wid: str) -> str:
    return f"/var/lib/fleet/{wid}/standin.log"


def flag(wid: str) -> str:
    """While this file exists on its host, the worker's stand-in stalls (c) or is refused (d)."""
    return f"/var/lib/fleet/{wid}/chaos-flag"


PROMPTS = {
    STALLS: json.dumps({"sleep": 1.5, "stall_while": flag(STALLS)}),
    LIMITED: json.dumps({"sleep": 1.5, "limited_while": flag(LIMITED), "retry_after": 2}),
}


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    base = tmp_path_factory.mktemp("chaos")
    entries = [
        worker(w, host, env_file=env_file(w), claude=w == LIMITED) for w, host in WORKERS.items()
    ]
    with simulated_fleet(base, entries, nodes=NODES) as env:
        for w, host in WORKERS.items():
            env.net.hosts[host].write_file(env_file(w), f"STANDIN_LOG={standin_log(w)}\n")
        done = env.fleetctl("apply", "--all", "--issue-creds", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        yield env


def bad_poller(where: Path) -> Path:
    """A copy of the poller whose every start fails at once: a new version that crash-loops
    (a test's stand-in for a broken release). Returns the directory to put on PYTHONPATH."""
    tree = where / "bad-poller"
    shutil.copytree(REPO / "poller", tree / "poller", ignore=shutil.ignore_patterns("__pycache__"))
    main = tree / "poller" / "__main__.py"
    text = main.read_text()
    start = "def main() -> int:\n"
    assert start in text
    crash = '    raise SystemExit("fleet-poller: a crash-looping stand-in of a bad release")\n'
    main.write_text(text.replace(start, start + crash))
    return tree


def apply_with(env: FleetEnv, pythonpath: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fleetctl apply` as a checkout whose poller is the one under `pythonpath`."""
    environ = env.env() | {"PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        env.net.lan_argv([FLEETCTL, "apply", *args]),
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )


def pollers(env: FleetEnv, host: str) -> dict[str, str]:
    """Each poller's main pid on `host`: a restart changes it."""
    return {w: env.main_pid(host, f"{w}-poller.service") for w, h in WORKERS.items() if h == host}


def venv(env: FleetEnv, host: str) -> str:
    return env.sh(host, "readlink /opt/fleet/venv").strip()


def phase_runs(env: FleetEnv, wid: str, phase: str) -> list[dict[str, Any]]:
    text = env.sh(WORKERS[wid], f"cat {standin_log(wid)} 2>/dev/null")
    found = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in found if r["phase"] == phase]


def wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def paused_while_limited(env: FleetEnv) -> dict[str, Any]:
    """`fleetctl status` of the rate-limited worker, once it says it is paused."""
    seen: dict[str, Any] = {}

    def paused() -> bool:
        done = env.fleetctl("status", "--json")
        rows = json.loads(done.stdout)["workers"] if done.returncode in (0, 1) else []
        seen.update(next((w for w in rows if w["worker_id"] == LIMITED), {}))
        return seen.get("state") == "paused"

    assert wait_for(paused, 30), seen
    return seen


def given_back_unrun(env: FleetEnv) -> set[str]:
    """The tasks a poller received as it stopped pulling and gave back without running."""
    found, read = set(), 0
    for w, host in WORKERS.items():
        text = env.sh(host, f"journalctl -u {w}-poller.service -o cat --no-pager")
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                read += 1
                if event.get("event") == "task_given_back_unrun":
                    found.add(str(event.get("task_id")))
    assert read, "no poller's log in the journal"
    return found


def runs(env: FleetEnv) -> list[dict[str, Any]]:
    """Every run the stand-in CLIs recorded, on every host."""
    found = []
    for w, host in WORKERS.items():
        text = env.sh(host, f"cat {standin_log(w)} 2>/dev/null")
        found += [json.loads(line) for line in text.splitlines() if line.strip()]
    return found


def test_under_a_steady_stream_of_tasks_no_deploy_loses_kills_or_repeats_one(
    fleet_env: FleetEnv, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    stop = tmp_path / "stop"
    plan = tmp_path / "stream.json"
    plan.write_text(
        json.dumps(
            {
                "workers": sorted(WORKERS),
                "prompt": TASK,
                "prompts": {w: f"standin: {p}" for w, p in PROMPTS.items()},
                "interval": INTERVAL,
                "stop_file": str(stop),
                "wait": 120,
            }
        )
    )
    stream = fleet_env.task_stream(plan)
    try:
        time.sleep(3)  # the stream is flowing, every worker busy

        # (a) Every worker changes; batches of two hosts; pollers drain, then restart.
        for w in WORKERS:
            stall = {"stall_timeout": f"{STALL_TIMEOUT}s"} if w == STALLS else {}
            fleet_env.set_worker(w, task_timeout="3m", **stall)
        started = time.monotonic()
        done = fleet_env.fleetctl("apply", "--all", "--yes", "--batch", "2", "--settle", "1")
        timings["(a) apply, 3 hosts in batches of 2"] = time.monotonic() - started
        text = done.stdout + done.stderr
        assert done.returncode == 0, text
        assert "rollout: batch 1 of 2: node-1, node-2" in text
        assert "rollout: batch 2 of 2: node-3" in text

        # (b) A poller release that crash-loops: its first batch fails its checks and goes
        # back to the version it had; the third host is never touched.
        untouched = (pollers(fleet_env, NODES[2]), venv(fleet_env, NODES[2]))
        good = venv(fleet_env, NODES[0])
        started = time.monotonic()
        done = apply_with(
            fleet_env, bad_poller(tmp_path), "--all", "--yes", "--batch", "2", "--settle", "1"
        )
        timings["(b) bad release, applied and rolled back"] = time.monotonic() - started
        text = done.stdout + done.stderr
        assert done.returncode == 1, text
        for node in NODES[:2]:
            assert f"{node}: FAILED at check the started units stay up" in text, text
        assert "a crash-looping stand-in of a bad release" in text  # the unit's own log
        assert f"{NODES[2]}: NOT STARTED: the rollout stopped after batch 1" in text
        assert "2 of them rolled back to their previous version" in text
        assert (pollers(fleet_env, NODES[2]), venv(fleet_env, NODES[2])) == untouched
        for node in NODES[:2]:
            assert venv(fleet_env, node) == good
            assert all(
                fleet_env.active(node, f"{w}-poller.service") for w in pollers(fleet_env, node)
            )

        # (c) and (d), side by side, while the rolled-back pollers take tasks again.
        started = time.monotonic()
        stalls_on, limited_on = WORKERS[STALLS], WORKERS[LIMITED]
        fleet_env.sh(stalls_on, f"touch {flag(STALLS)}")
        fleet_env.sh(limited_on, f"touch {flag(LIMITED)}")
        seen_paused = paused_while_limited(fleet_env)
        # One stalled run is enough: the next ones run normally again.
        assert wait_for(lambda: phase_runs(fleet_env, STALLS, "stalled"), 30)
        fleet_env.sh(stalls_on, f"rm -f {flag(STALLS)}")
        fleet_env.sh(limited_on, f"rm -f {flag(LIMITED)}")
        assert seen_paused["pause_reason"] == "rate limited", seen_paused
        [stalled_run] = phase_runs(fleet_env, STALLS, "stalled")
        # Its stall_timeout, then SIGTERM: the stalled CLI's process is gone.
        alive = f"test -e /proc/{stalled_run['pid']} && echo alive || echo gone"
        assert wait_for(lambda: fleet_env.sh(stalls_on, alive).strip() == "gone", 30)
        timings["(c) a stall and (d) a rate limit"] = time.monotonic() - started
        time.sleep(2)  # and every worker takes tasks again
    finally:
        stop.touch()
    out, err = stream.communicate(timeout=180)
    assert stream.returncode == 0, err
    shown = json.loads(out)
    published = {p["task_id"]: p["worker"] for p in shown["published"]}
    results: dict[str, dict[str, Any]] = shown["results"]

    # 0 lost: every task has its result; it completed, but the one that stalled (c), which
    # ended as `timeout`, stalled.
    assert sorted(results) == sorted(published), set(published) - set(results)
    recorded = runs(fleet_env)
    phases = {
        phase: Counter(r["task_id"] for r in recorded if r["phase"] == phase)
        for phase in ("start", "end", "stalled", "limited")
    }
    stalled = {t for t, r in results.items() if r["status"] == "timeout"}
    assert stalled == set(phases["stalled"]) and len(stalled) == 1, phases["stalled"]
    [why] = {results[t].get("error") for t in stalled}
    assert why == f"stalled: no output for {STALL_TIMEOUT}s"
    statuses = Counter(r["status"] for t, r in results.items() if t not in stalled)
    assert statuses == {"completed": len(published) - len(stalled)}, statuses
    # (d): the limited worker's runs were refused for a while, not failed: run again after
    # the pause, on the same delivery.
    assert phases["limited"] and {published[t] for t in phases["limited"]} == {LIMITED}
    # 0 killed by the deploy, 0 run twice: each result is its task's first delivery, and the
    # CLI did the work once per task, to its end (but for the stalled one, killed).
    # A task the server sent just as a stopping poller withdrew its pull request is given
    # back unrun (its poller says so): its result is its second delivery, its run its only
    # one (docs/poller.md, "Stopping").
    again = {t for t, r in results.items() if r["attempt"] != 1}
    assert again <= given_back_unrun(fleet_env), again
    worked = phases["start"] - phases["limited"]
    assert {t: n for t, n in worked.items() if n != 1} == {}
    assert set(worked) == set(published)
    assert phases["end"] == Counter(set(published) - stalled)
    print(
        f"chaos: {len(published)} tasks, {len(stalled)} stalled, {len(again)} given back "
        "unrun as a pull stopped, "
        f"{sum(phases['limited'].values())} runs refused by the provider; "
        + "; ".join(f"{k}: {v:.1f} s" for k, v in timings.items())
    )
