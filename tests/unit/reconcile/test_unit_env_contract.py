"""The environment fleetctl renders into each poller unit is exactly what the poller reads.

Both sides are real: the Environment= lines of the rendered units (unquoted as systemd does)
go through the poller's own `config.load`, and the result must describe the same worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.bus.names import NatsNames
from fleetctl.config.model import Worker
from fleetctl.reconcile.desired.build import desired_state
from poller import backends
from poller import config as poller_config
from poller.backends import BACKENDS
from tests.support.example import example_fleet
from tests.unit.render.test_systemd_word import systemd_unquote


def _environment(unit: str) -> dict[str, str]:
    env = {}
    for line in unit.splitlines():
        if line.startswith("Environment="):
            name, _, value = systemd_unquote(line.removeprefix("Environment=")).partition("=")
            env[name] = value
    return env


def _units() -> list[tuple[Worker, str, bytes | None]]:
    """Each enabled worker, its unit, and its REPOS_FILE's content (None: it has none)."""
    fleet = example_fleet()
    desired = desired_state(fleet).hosts
    out = []
    for worker in fleet.workers:
        if worker.enabled:
            state = desired[worker.host]
            unit = next(f for f in state.files if f.path.endswith(worker.unit))
            repos = next(
                (f for f in state.files if f.path.endswith(f"/{worker.id}/repos.json")), None
            )
            out.append((worker, unit.content.decode(), repos.content if repos else None))
    return out


@pytest.mark.parametrize(("worker", "unit", "repos"), _units(), ids=lambda v: getattr(v, "id", ""))
def test_poller_reads_the_rendered_environment(
    worker: Worker, unit: str, repos: bytes | None, tmp_path: Path
) -> None:
    env = _environment(unit)
    assert ("REPOS_FILE" in env) is (repos is not None)
    if repos is not None:  # the file apply writes beside the unit, here where it can be read
        (tmp_path / "repos.json").write_bytes(repos)
        env["REPOS_FILE"] = str(tmp_path / "repos.json")
    assert env["NATS_CREDS"] == f"/etc/fleet/creds/{worker.id}.creds"
    env["NATS_CREDS"] = str(tmp_path / "stand-in.creds")  # the poller checks it is readable
    (tmp_path / "stand-in.creds").write_text("not read by config.load")
    cfg = poller_config.load(env)
    names = NatsNames("af")
    assert cfg.worker_id == worker.id
    assert cfg.backend == worker.backend and cfg.llm == worker.llm
    assert cfg.consumer == names.consumer(worker.id)
    assert cfg.task_stream == names.task_stream
    assert cfg.inbox_prefix == names.inbox_prefix(worker.id)
    assert cfg.lease_bucket == names.lease_bucket and env["NATS_LEASE_BUCKET"] == "AF_LEASES"
    assert cfg.subjects.inbox == names.inbox(worker.id)
    assert cfg.subjects.status == names.status(worker.id)
    assert cfg.concurrency == worker.concurrency
    assert cfg.task_timeout == worker.task_timeout
    assert cfg.drain_timeout == worker.drain_timeout and cfg.stall_timeout == worker.stall_timeout
    assert f"\nTimeoutStopSec={worker.drain_timeout + 30}\n" in unit
    assert str(cfg.work_base) == worker.work_base and cfg.home == worker.work_base
    assert cfg.worktrees == Path(worker.work_base) / "worktrees"
    assert cfg.repos.default == worker.repo and set(cfg.repos.repos) == set(worker.repos)
    backend = BACKENDS[worker.backend]
    for setting in backend.settings:  # every field the backend uses arrives as it was set
        value = getattr(worker, setting.field)
        expected = setting.read(setting.render(value) or "")
        assert cfg.settings[setting.field] == expected, setting.field
    if worker.backend == "claude":
        assert cfg.settings["allowed_tools"].split(",") == list(worker.allowed_tools)
    if worker.backend == "command":
        assert backends.argv("command", cfg.settings) == list(worker.command or ())
