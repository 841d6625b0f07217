"""The environment contract: defaults, derived names, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from poller import config

BASE = {"WORKER_ID": "w1", "NATS_URL": "nats://127.0.0.1:4222", "MODEL_BACKEND": "claude"}


def test_defaults_follow_fleetctl_names() -> None:
    from fleetctl.bus.names import NatsNames

    cfg = config.load({**BASE, "HOME": "/home/w"})
    n = NatsNames("af")
    assert cfg.subjects.inbox == n.inbox("w1")
    assert cfg.subjects.status == n.status("w1")
    assert cfg.subjects.ping == n.ping("w1")
    assert cfg.subjects.dead == n.dead("w1")
    assert cfg.subjects.result("t1") == n.result("w1", "t1")
    assert (cfg.task_stream, cfg.results_stream, cfg.dead_stream) == (
        n.task_stream,
        n.results_stream,
        n.dead_stream,
    )
    assert cfg.consumer == n.consumer("w1")
    assert cfg.inbox_prefix == n.inbox_prefix("w1")
    assert cfg.lease_bucket == n.lease_bucket and cfg.lease_ttl is None
    assert cfg.concurrency == 1 and cfg.repos.repos == {} and cfg.ignored == ()
    assert cfg.worktrees == Path("/home/w/worktrees")


def test_the_drain_defaults_to_the_task_timeout_and_a_stall_to_ten_minutes() -> None:
    cfg = config.load({**BASE, "TASK_TIMEOUT": "900"})
    assert (cfg.drain_timeout, cfg.stall_timeout) == (900, 600)
    cfg = config.load({**BASE, "TASK_TIMEOUT": "900", "DRAIN_TIMEOUT": "60", "STALL_TIMEOUT": "5"})
    assert (cfg.drain_timeout, cfg.stall_timeout) == (60, 5)


def test_prefix_with_dash_derives_streams_like_fleetctl() -> None:
    from fleetctl.bus.names import NatsNames

    cfg = config.load({**BASE, "NATS_SUBJECT_PREFIX": "my-fleet"})
    assert cfg.task_stream == NatsNames("my-fleet").task_stream
    assert cfg.lease_bucket == NatsNames("my-fleet").lease_bucket == "MY_FLEET_LEASES"
    assert cfg.subjects.inbox == "my-fleet.worker.w1.inbox"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WORKER_ID": ""}, "WORKER_ID is required"),
        ({"WORKER_ID": "a.b"}, "WORKER_ID='a.b' must be"),
        ({"NATS_URL": "127.0.0.1:4222"}, "NATS_URL="),
        (
            {"NATS_URL": "nats://127.0.0.1:4223,127.0.0.1:4224"},
            "NATS_URL='nats://127.0.0.1:4223,127.0.0.1:4224': '127",
        ),
        ({"NATS_URL": "nats://127.0.0.1:4223,"}, "NATS_URL='nats://127.0.0.1:4223,': ''"),
        ({"MODEL_BACKEND": "gpt"}, "MODEL_BACKEND='gpt' must be one of"),
        ({"CONCURRENCY": "two"}, "CONCURRENCY='two' must be an integer"),
        ({"CONCURRENCY": "0"}, "CONCURRENCY='0' must be greater than 0"),
        ({"TASK_TIMEOUT": "-1"}, "TASK_TIMEOUT='-1' must be greater than 0"),
        ({"REPOS_FILE": "/nonexistent/repos.json"}, "REPOS_FILE=/nonexistent/repos.json: cannot"),
        ({"MODEL_BACKEND": "command"}, "COMMAND_ARGV is required"),
        ({"MODEL_BACKEND": "command", "COMMAND_ARGV": "x y"}, "COMMAND_ARGV='x y' must be a JSON"),
        ({"MODEL_BACKEND": "command", "COMMAND_ARGV": "[]"}, "COMMAND_ARGV='[]' must be a non-"),
        ({"MODEL_BACKEND": "codex", "CODEX_SANDBOX": "all"}, "CODEX_SANDBOX='all' must be one of"),
        ({"NATS_CREDS": "/nonexistent.creds"}, "NATS_CREDS='/nonexistent.creds'"),
        ({"NATS_SUBJECT_PREFIX": "a>"}, "NATS_SUBJECT_PREFIX='a>'"),
        ({"OUTPUT_CAP": "999999999"}, "OUTPUT_CAP=999999999 must be at most"),
        ({"LEASE_TTL": "1.5"}, "LEASE_TTL='1.5' must be an integer"),
        ({"LEASE_TTL": "0"}, "LEASE_TTL='0' must be greater than 0"),
        ({"NATS_LEASE_BUCKET": "a.b"}, "NATS_LEASE_BUCKET='a.b' must be"),
    ],
)
def test_bad_values_name_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.load({**BASE, **change})
    assert str(e.value).startswith(message.split("=")[0])
    assert message in str(e.value)


@pytest.mark.parametrize("value", ["w1\n", "w1\r", "\nw1", "w1\nw2", "w1 ", "a.b", "", "x" * 129])
def test_a_token_is_the_whole_value(value: str) -> None:
    """`^...$` matched "w1\\n" (`$` also matches before a trailing newline)."""
    assert not config.is_token(value)
    assert config.is_token("w1") and config.is_token("x" * 128)


def test_allowed_tools_are_split_and_trimmed() -> None:
    cfg = config.load({**BASE, "ALLOWED_TOOLS": " Read, Edit ,,Bash(git:*)"})
    assert cfg.settings["allowed_tools"] == "Read,Edit,Bash(git:*)"


def test_bad_environment_exits_2_with_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "WORKER_ID": "w.1"}
    p = subprocess.run(
        [sys.executable, "-m", "poller"], env=env, capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "WORKER_ID='w.1'" in p.stderr


def test_labels_reach_the_heartbeat_and_a_bad_labels_value_names_the_variable() -> None:
    from poller.heartbeat import Stats

    cfg = config.load(BASE | {"WORKER_LABELS": '{"team":"docs"}'})
    assert cfg.labels == {"team": "docs"}
    stats = Stats(cfg.worker_id, cfg.backend, cfg.llm, 1, labels=cfg.labels)
    assert stats.snapshot()["labels"] == {"team": "docs"}
    assert config.load(BASE).labels == {}
    for bad in ('["team"]', '{"n": 1}', "team=docs"):
        with pytest.raises(config.ConfigError, match=r"^WORKER_LABELS="):
            config.load(BASE | {"WORKER_LABELS": bad})


def test_the_cli_gets_no_nats_setting(tmp_path: Path) -> None:
    """The CLI runs what an LLM chose: it gets the poller's environment without NATS_*
    (the creds file path among them), and its own HOME and worker id."""
    from poller.delivery import _child_env

    creds = tmp_path / "w1.creds"
    creds.write_text("creds")
    env = {**BASE, "NATS_CREDS": str(creds), "PATH": "/usr/bin", "HOME": str(tmp_path)}
    child = _child_env(env, config.load(env))
    assert not [k for k in child if k.startswith("NATS_")]
    assert child["PATH"] == "/usr/bin" and child["FLEET_WORKER_ID"] == "w1"


def test_a_clusters_urls_are_each_a_server_to_connect_to() -> None:
    """NATS_URL of a cluster: one URL per broker (its tunnels), comma-separated."""
    urls = "nats://127.0.0.1:4223,nats://127.0.0.1:4224, nats://127.0.0.1:4225"
    cfg = config.load({**BASE, "NATS_URL": urls})
    assert cfg.servers == [
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4224",
        "nats://127.0.0.1:4225",
    ]
    assert config.load(BASE).servers == ["nats://127.0.0.1:4222"]
