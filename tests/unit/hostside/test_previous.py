"""The previous version a host keeps (fleetctl/hostside/previous.py), loaded as a host's
python3 runs it (tests/support/hostagent.py): what each step keeps before it changes
something, and how a restore puts it back, byte for byte, with the exact systemctl commands
asserted as argv. Files are real, under a temporary directory; no root, no systemd.

The watchdog as a real process: tests/integration/test_host_watchdog.py."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostagent import GROUP, OWNER, Agent, fake_agent, file_step

GEN = "g1"


def begin(log: Path, gen: str = GEN, **more: Any) -> dict[str, Any]:
    return {"op": "begin_previous", "log": str(log), "id": gen, "revision": "r-" + gen} | more


def restore(log: Path, **more: Any) -> dict[str, Any]:
    return {"op": "restore_previous", "log": str(log)} | more


def tree(root: Path) -> dict[str, Any]:
    """Everything under `root` but the log: content (or link target) and mode, by path."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if rel == "previous.json":
                continue
            if p.is_symlink():
                found[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                found[rel] = ("dir", stat.S_IMODE(p.stat().st_mode))
            else:
                found[rel] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return found


@pytest.fixture
def agent() -> Agent:
    """An agent whose systemctl says every unit is inactive unless `active` says so, and whose
    units are enabled when `enabled` says so (both tests may change as they go)."""
    a = fake_agent()
    a.ns["_enabled"] = lambda unit: unit in a.ns.setdefault("ENABLED_UNITS", set())
    return a


def set_units(agent: Agent, active: set[str], enabled: set[str]) -> None:
    answers = dict(agent.spawn.answers)
    for key in [k for k in answers if k[:2] == ("systemctl", "is-active")]:
        del answers[key]
    for unit in active:
        answers[("systemctl", "is-active", unit)] = (0, b"active\n")
    answers[("systemctl", "is-active")] = (3, b"inactive\n")
    agent.spawn.answers = answers
    agent.ns["ENABLED_UNITS"] = set(enabled)


def log_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_restore_puts_back_every_file_dir_and_link_the_program_changed(
    tmp_path: Path, agent: Agent
) -> None:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "changed.conf").write_bytes(b"v1\n")
    os.chmod(root / "etc" / "changed.conf", 0o600)
    (root / "etc" / "removed.conf").write_bytes(b"gone soon\n")
    (root / "work" / "old-worker").mkdir(parents=True)
    (root / "work" / "old-worker" / "notes").write_bytes(b"its files\n")
    (root / "opt").mkdir()
    (root / "opt" / "venv-1").mkdir()
    (root / "opt" / "venv").symlink_to("venv-1")
    loose = root / "loose"
    loose.mkdir(mode=0o700)
    before = tree(root)
    log = tmp_path / "state" / "previous.json"
    code = agent.apply(
        begin(log),
        file_step(root / "etc" / "changed.conf", b"v2\n", 0o644),
        file_step(root / "etc" / "new.conf", b"new\n"),
        {"op": "remove_file", "path": str(root / "etc" / "removed.conf")},
        {"op": "remove_dir", "path": str(root / "work" / "old-worker")},
        {
            "op": "dir",
            "path": str(root / "work" / "new-worker"),
            "owner": OWNER,
            "group": GROUP,
            "mode": 0o750,
        },
        {"op": "dir", "path": str(loose), "owner": OWNER, "group": GROUP, "mode": 0o755},
        {"op": "remove_package", "package": "fleet-poller", "venv": str(root / "opt" / "venv")},
    )
    assert code == 0, agent.events
    assert (root / "etc" / "changed.conf").read_bytes() == b"v2\n"
    assert not (root / "work" / "old-worker").exists()
    # the poller's old venv is set aside in its directory, which so stays
    assert os.listdir(root / "opt") == [f".venv-1.fleetctl-previous-{GEN}"]
    # What a restore needs stays beside what it replaced: links and renames, no copies.
    hidden = sorted(p.name for p in (root / "etc").iterdir() if p.name.startswith("."))
    assert hidden == [f".{n}.conf.fleetctl-previous-{GEN}" for n in ("changed", "removed")]
    assert [e.get("was") or "unit" for e in log_of(log)["generations"][0]["entries"]] == [
        "file",
        "absent",
        "file",
        "dir",
        "absent",
        "meta",
        "link",
        "dir",
    ]

    fresh = fake_agent()
    assert fresh.apply(restore(log)) == 0, fresh.events
    assert tree(root) == before
    assert fresh.events[0]["said"] == {"restored": GEN, "started": [], "revision": "r-" + GEN}
    assert fresh.spawn.calls == []  # no unit was touched: no systemctl at all
    assert log_of(log)["generations"] == []


def test_without_a_generation_nothing_is_kept(tmp_path: Path, agent: Agent) -> None:
    target = tmp_path / "a.conf"
    target.write_bytes(b"v1\n")
    assert agent.apply(file_step(target, b"v2\n")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]
    done = fake_agent()
    assert done.apply(restore(tmp_path / "previous.json")) == 0
    assert done.events[0]["said"] == {
        "restored": None,
        "started": [],
        "why": "no previous version is kept",
    }


def test_units_go_back_to_running_or_stopped_as_they_were(tmp_path: Path, agent: Agent) -> None:
    """a: restarted by the program; b: new, started; c: removed, stopped; d: reloaded."""
    log = tmp_path / "previous.json"
    ran = {"a.service", "c.service", "d.service"}
    set_units(agent, active=ran, enabled=ran)
    code = agent.apply(
        begin(log),
        {"op": "systemctl", "args": ["disable", "--now", "c.service"]},
        {"op": "systemctl", "args": ["daemon-reload"]},
        {"op": "systemctl", "args": ["restart", "a.service"]},
        {"op": "systemctl", "args": ["enable", "--now", "b.service"]},
        {"op": "systemctl", "args": ["reload", "d.service"]},
    )
    assert code == 0
    entries = log_of(log)["generations"][0]["entries"]
    assert [(e["unit"], e["active"], e["enabled"], e["actions"]) for e in entries] == [
        ("c.service", True, True, ["disable"]),
        ("a.service", True, True, ["restart"]),
        ("b.service", False, False, ["enable"]),
        ("d.service", True, True, ["reload"]),
    ]
    # Now: a, b and d run; c is stopped and disabled.
    ran = {"a.service", "b.service", "d.service"}
    set_units(agent, active=ran, enabled=ran)
    agent.spawn.calls.clear()
    assert agent.apply(restore(log)) == 0, agent.events
    assert agent.events[-1]["said"]["started"] == ["c.service", "a.service", "d.service"]
    assert [c for c in agent.spawn.calls if c[1] != "is-active"] == [
        ["systemctl", "disable", "--now", "b.service"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "c.service"],
        ["systemctl", "start", "c.service"],
        ["systemctl", "restart", "a.service"],
        ["systemctl", "reload", "d.service"],
    ]


def test_pollers_restart_at_once_each_drained_as_apply_asks(tmp_path: Path, agent: Agent) -> None:
    log = tmp_path / "previous.json"
    units = {"cc-b-poller.service", "cmd-a-poller.service"}
    set_units(agent, active=units, enabled=units)
    steps = [{"op": "systemctl", "args": ["restart", u]} for u in sorted(units)]
    assert agent.apply(begin(log), {"op": "parallel", "steps": steps}) == 0
    signalled: list[tuple[Any, int]] = []
    agent.ns["_main_process"] = lambda unit: (unit, "t0")
    agent.ns["_signal"] = lambda process, sig: signalled.append((process[0], sig))
    agent.spawn.calls.clear()
    assert agent.apply(restore(log, drain={"seconds": 0})) == 0
    restarts = [c for c in agent.spawn.calls if c[1] == "restart"]
    assert sorted(map(tuple, restarts)) == [
        ("systemctl", "restart", "cc-b-poller.service"),
        ("systemctl", "restart", "cmd-a-poller.service"),
    ]
    handback = agent.ns["HANDBACK"]
    assert sorted(signalled) == [(u, handback) for u in sorted(units)]


def test_a_drain_timeout_hands_the_tasks_back_only_once_it_has_passed(agent: Agent) -> None:
    """The stop takes 0.4 s: a drain of 0.1 s signals the poller during it, one of 5 s never."""
    signalled: list[float] = []
    started = time.monotonic()

    def slow_spawn(argv: list[str], timeout: float, merge_stderr: bool, env: Any = None) -> Any:
        time.sleep(0.4)
        return (0, b"")

    agent.ns["spawn"] = slow_spawn
    agent.ns["_main_process"] = lambda unit: (1, "t0")
    agent.ns["_signal"] = lambda process, sig: signalled.append(time.monotonic() - started)
    step = {"op": "systemctl", "args": ["restart", "x-poller.service"], "drain": {"seconds": 0.1}}
    assert agent.apply(step) == 0
    assert len(signalled) == 1 and 0.1 <= signalled[0] < 0.4
    signalled.clear()
    assert agent.apply(step | {"drain": {"seconds": 5}}) == 0
    assert signalled == []


def test_no_drain_signals_the_poller_before_systemctl_stops_it(agent: Agent) -> None:
    order: list[str] = []
    agent.ns["_main_process"] = lambda unit: (1, "t0")
    agent.ns["_signal"] = lambda process, sig: order.append(f"signal {sig}")
    real = agent.spawn

    def spawn(argv: list[str], timeout: float, merge_stderr: bool, env: Any = None) -> Any:
        order.append(" ".join(argv))
        return real(argv, timeout, merge_stderr, env)

    agent.ns["spawn"] = spawn
    step = {"op": "systemctl", "args": ["disable", "--now", "x-poller.service"], "timeout": 99}
    assert agent.apply(step | {"drain": {"seconds": 0}}) == 0
    assert order == [f"signal {agent.ns['HANDBACK']}", "systemctl disable --now x-poller.service"]
    assert agent.spawn.timeouts == [99]


def test_a_worker_alone_is_restored_and_the_rest_stays_kept(tmp_path: Path, agent: Agent) -> None:
    mine, shared = tmp_path / "cc-b.creds", tmp_path / "manifest.json"
    for p in (mine, shared):
        p.write_bytes(b"v1\n")
    log = tmp_path / "state" / "previous.json"
    owners = {f"path {mine}": "cc-b", "unit cc-b-poller.service": "cc-b"}
    set_units(agent, active={"cc-b-poller.service"}, enabled={"cc-b-poller.service"})
    code = agent.apply(
        begin(log, owners=owners),
        file_step(mine, b"v2\n"),
        file_step(shared, b"v2\n"),
        {"op": "systemctl", "args": ["restart", "cc-b-poller.service"]},
    )
    assert code == 0
    agent.spawn.calls.clear()
    assert agent.apply(restore(log, workers=["cc-b"])) == 0
    assert (mine.read_bytes(), shared.read_bytes()) == (b"v1\n", b"v2\n")
    assert ["systemctl", "restart", "cc-b-poller.service"] in agent.spawn.calls
    left = log_of(log)["generations"][0]["entries"]
    assert [e["path"] for e in left] == [str(shared)]
    assert agent.apply(restore(log)) == 0
    assert shared.read_bytes() == b"v1\n"


def test_the_last_confirmed_version_stays_until_a_newer_one_is_confirmed(
    tmp_path: Path, agent: Agent
) -> None:
    target, log = tmp_path / "a.conf", tmp_path / "previous.json"
    target.write_bytes(b"v1\n")
    assert agent.apply(begin(log, "g1"), file_step(target, b"v2\n")) == 0  # kept, not armed
    assert agent.apply(begin(log, "g2"), file_step(target, b"v3\n")) == 0
    assert [g["id"] for g in log_of(log)["generations"]] == ["g1", "g2"]
    assert agent.apply(restore(log)) == 0  # g2 failed its checks: back to v2
    assert target.read_bytes() == b"v2\n"
    assert agent.apply(restore(log)) == 0  # `fleetctl rollback`: back to v1
    assert target.read_bytes() == b"v1\n"

    assert agent.apply(begin(log, "g3"), file_step(target, b"v2\n")) == 0
    assert agent.apply(begin(log, "g4"), file_step(target, b"v3\n")) == 0
    assert agent.apply({"op": "confirm_previous", "log": str(log), "id": "g4"}) == 0
    assert [g["id"] for g in log_of(log)["generations"]] == ["g4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".a.conf.fleetctl-previous-g4",
        "a.conf",
        "previous.json",
    ]


def test_a_restore_of_another_applys_version_is_refused(tmp_path: Path, agent: Agent) -> None:
    target, log = tmp_path / "a.conf", tmp_path / "previous.json"
    target.write_bytes(b"v1\n")
    assert agent.apply(begin(log, "g1"), file_step(target, b"v2\n")) == 0
    assert agent.apply(restore(log, id="g0")) == 0
    assert agent.events[-1]["said"]["restored"] is None
    assert target.read_bytes() == b"v2\n"


def test_a_confirmation_too_late_says_the_host_rolled_back(tmp_path: Path, agent: Agent) -> None:
    log = tmp_path / "previous.json"
    log.write_text(
        json.dumps(
            {
                "format": 1,
                "generations": [],
                "rolled_back": {"id": "g1", "at": 1, "why": "not confirmed within 5 s"},
            }
        )
    )
    assert agent.apply({"op": "confirm_previous", "log": str(log), "id": "g1"}) == 1
    assert agent.events[-1]["error"] == "the host rolled back by itself: not confirmed within 5 s"
    assert agent.apply({"op": "confirm_previous", "log": str(log), "id": "g9"}) == 1
    assert agent.events[-1]["error"] == "another apply or a rollback replaced this version"


def test_a_damaged_log_fails_the_program_before_it_changes_anything(
    tmp_path: Path, agent: Agent
) -> None:
    log, target = tmp_path / "previous.json", tmp_path / "a.conf"
    log.write_text("{half")
    assert agent.apply(begin(log), file_step(target, b"x")) == 1
    why = f"{log} is damaged: remove it to forget the previous version"
    assert agent.events == [{"i": 0, "ok": False, "error": why}]
    assert not target.exists()


def test_purging_forgets_every_kept_version(tmp_path: Path, agent: Agent) -> None:
    target, log = tmp_path / "a.conf", tmp_path / "previous.json"
    target.write_bytes(b"v1\n")
    assert agent.apply(begin(log), file_step(target, b"v2\n")) == 0
    assert agent.apply({"op": "purge_previous", "log": str(log)}) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf", "previous.json"]
    assert log_of(log)["generations"] == []


def test_under_systemd_the_watchdog_is_a_transient_service(tmp_path: Path, agent: Agent) -> None:
    """Where systemd is PID 1, a session's processes may die at logout (KillUserProcesses):
    the watchdog runs as a transient service instead, its pid read back from systemd."""
    agent.ns["_systemd_is_init"] = lambda: True
    agent.spawn.answers = {("systemctl", "show"): (0, b"MainPID=4321\n")}
    log = tmp_path / "previous.json"
    confirm = {
        "timeout": 120,
        "lock": str(tmp_path / "apply.lock"),
        "program": str(tmp_path / "watchdog.py"),
        "source": "print('the watchdog')\n",
        "journal": str(tmp_path / "watchdog.log"),
    }
    as_tester = agent.ns["write_file"]
    agent.ns["write_file"] = lambda path, data, owner, group, mode: as_tester(
        path, data, OWNER, GROUP, mode
    )
    assert agent.apply(begin(log, "g5", confirm=confirm)) == 0, agent.events
    python = agent.ns["sys"].executable
    watch = [str(log), "g5", str(os.getpid()), "120", confirm["lock"], confirm["journal"]]
    run = ["systemd-run", "--unit", "fleetctl-watchdog-g5", "--collect", "--quiet", "--"]
    assert agent.spawn.calls == [
        [*run, python, "-I", "-S", str(confirm["program"]), *watch],
        ["systemctl", "show", "-p", "MainPID", "fleetctl-watchdog-g5"],
    ]
    [gen] = log_of(log)["generations"]
    assert (gen["state"], gen["watchdog"]) == (
        "armed",
        {"unit": "fleetctl-watchdog-g5", "pid": 4321, "timeout": 120},
    )
    assert (tmp_path / "watchdog.py").read_text() == "print('the watchdog')\n"
