"""Paths in fleet.yaml that would hand a worker (or the nats user) what is not its own:
fleetctl's directories, the tunnel's user, another worker's env file. Refused by `validate`
with the others, each at the key to change (fleetctl/config/paths.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetctl.config.errors import ConfigError
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet

SERVERS = {
    "version": 1,
    "servers": [
        {"name": "b", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "n1", "address": "192.0.2.2", "roles": ["worker-host"]},
        {"name": "n2", "address": "192.0.2.3", "roles": ["worker-host"]},
    ],
}


def load(tmp_path: Path, workers: list[dict[str, Any]], **extra: Any) -> Fleet:
    for w in workers:
        w.setdefault("llm", "command")
        w.setdefault("command", ["/bin/true"])
        w.setdefault("host", "n1")
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    body = {"version": 1, **extra, "workers": workers}
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


def problems(tmp_path: Path, workers: list[dict[str, Any]], **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, workers, **extra)
    return [str(p).split(": ", 1)[1] for p in e.value.problems]  # without file:line:col


@pytest.mark.parametrize(
    ("base", "why"),
    [
        ("/etc/fleet", "is the directory of fleetctl's configuration on the host"),
        ("/etc/fleet/creds", "is the directory of every worker's NATS credentials"),
        ("/etc/fleet/env/x", "is inside /etc/fleet/env, the directory of the workers' env files"),
        ("/etc/fleet/tunnel", "is the directory of the tunnel's SSH key"),
        ("/var/lib/fleetctl", "is the directory of fleetctl's manifest, journal, lock and"),
        ("/var/lib/fleetctl/staging", "is inside /var/lib/fleetctl, the directory of fleetctl's"),
        ("/opt/fleet/llm", "is inside /opt/fleet, the directory of the poller and the LLM CLIs"),
        ("/var/lib/fleet-tunnel", "is the directory of the tunnel user's files"),
        ("/var/lib/nats", "is the directory of nats-server's home and JetStream store"),
        ("/etc/systemd/system", "is the directory of the units fleetctl writes"),
        ("/etc", "is /etc, a directory of the system's"),
        ("/usr/local", "is inside /usr, a directory of the system's"),
        ("/", "holds directories of the system's and of other software"),
        ("/var/lib", "holds directories of the system's and of other software"),
        ("/opt", "holds directories of the system's and of other software"),
    ],
)
def test_a_work_base_that_reaches_what_is_not_the_workers_is_refused(
    tmp_path: Path, base: str, why: str
) -> None:
    found = problems(
        tmp_path, [{"worker_id": "w1"}, {"worker_id": "w2"}], defaults={"work_base": base}
    )
    assert len(found) == 1, found  # once, at defaults.work_base, not once per worker
    assert found[0].startswith(f"defaults.work_base: {base!r} {why}"), found[0]
    assert found[0].endswith("(use a directory of its own, like /var/lib/fleet, the default)")


@pytest.mark.parametrize(
    # /ETC/fleet: another directory than /etc/fleet on a Linux host (paths are case-sensitive)
    "base",
    ["/var/lib/fleet", "/srv/fleet", "/home/fleet", "/data", "/opt/workers", "/ETC/fleet"],
)
def test_a_work_base_of_the_workers_own_is_taken(tmp_path: Path, base: str) -> None:
    fleet = load(tmp_path, [{"worker_id": "w1"}], defaults={"work_base": base + "/"})
    assert fleet.workers[0].work_base == f"{base}/w1"


def test_a_worker_whose_directory_or_user_is_fleetctls_is_refused(tmp_path: Path) -> None:
    workers = [{"worker_id": "jetstream"}, {"worker_id": "tunnel"}, {"worker_id": "ok"}]
    extra = {"nats": {"store_dir": "/srv/nats/jetstream"}, "defaults": {"work_base": "/srv/nats"}}
    assert problems(tmp_path, workers, **extra) == [
        "workers[0].worker_id: the worker's directory /srv/nats/jetstream (work_base + "
        "worker_id) is the directory of the broker's JetStream store (nats.store_dir): the "
        "worker would own it and may write all below it (choose another worker_id, or another "
        "defaults.work_base)",
        "workers[1].worker_id: 'tunnel' would run as the service user 'fleet-tunnel', the "
        "tunnel's user, which owns the tunnel's SSH key (choose another worker_id)",
    ]
    extra["nats"]["store_dir"] = "/srv/nats"  # the store would hold the worker's directory
    assert problems(tmp_path, workers[:1], **extra)[0].startswith(
        "workers[0].worker_id: the worker's directory /srv/nats/jetstream (work_base + "
        "worker_id) is inside /srv/nats, the directory of the broker's JetStream store"
    )


@pytest.mark.parametrize(
    ("store", "why"),
    [
        ("/etc/fleet", "is the directory of fleetctl's configuration on the host"),
        ("/opt/fleet/venv", "is inside /opt/fleet, the directory of the poller and"),
        ("/var/lib", "holds /var/lib/fleetctl, the directory of fleetctl's manifest, journal"),
        ("/srv", "holds directories of the system's and of other software"),
        ("/run/nats", "is inside /run, a directory of the system's"),
    ],
)
def test_a_store_dir_that_reaches_what_is_not_the_brokers_is_refused(
    tmp_path: Path, store: str, why: str
) -> None:
    found = problems(tmp_path, [{"worker_id": "w1"}], nats={"store_dir": store})
    assert len(found) == 1 and found[0].startswith(f"nats.store_dir: {store!r} {why}"), found
    assert found[0].endswith(
        ": the nats user would own it, mode 0700 (use a directory of its own, like "
        "/var/lib/nats/jetstream, the default)"
    )


def test_an_env_file_is_one_workers_on_its_host(tmp_path: Path) -> None:
    shared = "/etc/fleet/env/zai.env"
    workers = [
        {"worker_id": "a", "env_file": shared},
        {"worker_id": "b", "env_file": shared, "host": "n2"},  # another host: another file
        {"worker_id": "c", "env_file": "/etc/fleet/env/c.env"},
        {"worker_id": "d", "env_file": shared},
        {"worker_id": "e", "env_file": shared},
    ]
    assert problems(tmp_path, workers) == [
        f"workers[3].env_file: {shared!r} is the env file of 3 workers on host 'n1' ('a', "
        "'d', 'e'): each would get the others' provider tokens (give each worker its own "
        "file, like /etc/fleet/env/<id>.env)"
    ]
    fleet = load(tmp_path, [workers[0], workers[1], workers[2]])
    assert [w.env_file for w in fleet.workers] == [shared, shared, "/etc/fleet/env/c.env"]


def test_an_env_file_outside_fleet_env_needs_the_workers_consent(tmp_path: Path) -> None:
    workers: list[dict[str, Any]] = [
        {"worker_id": "a", "env_file": "/root/.config/provider.env"},
        {"worker_id": "b", "env_file": "/etc/fleet/env"},
        {"worker_id": "c", "env_file": "/etc/fleet/environment"},  # a prefix is not inside
    ]
    assert problems(tmp_path, workers) == [
        "workers[0].env_file: '/root/.config/provider.env' is outside /etc/fleet/env/: systemd "
        "reads an env file as root and hands every variable in it to the worker, so it must be "
        "a file meant for it (move it to /etc/fleet/env/<id>.env, or set "
        "env_file_outside_fleet: true on this worker)",
        "workers[1].env_file: '/etc/fleet/env' is the directory of the env files, not one of "
        "them (name the worker's own file in it, like /etc/fleet/env/<id>.env)",
        "workers[2].env_file: '/etc/fleet/environment' is in /etc/fleet, the directory of "
        "fleetctl's configuration on the host: systemd would read it as root and hand what it "
        "finds there to the worker, whatever env_file_outside_fleet says (name the worker's "
        "own file, like /etc/fleet/env/<id>.env)",
    ]
    workers = [workers[0] | {"env_file_outside_fleet": True}, {"worker_id": "d"}]
    fleet = load(tmp_path, workers)
    assert fleet.workers[0].env_file == "/root/.config/provider.env"
    assert fleet.workers[0].env_file_outside_fleet and not fleet.workers[1].env_file_outside_fleet


def test_path_problems_come_with_every_other_problem(tmp_path: Path) -> None:
    workers = [
        {"worker_id": "tunnel", "host": "nowhere"},
        {"worker_id": "b", "env_file": "/tmp/b.env", "concurrency": "lots"},
    ]
    found = problems(tmp_path, workers, defaults={"work_base": "/etc/fleet/creds"})
    assert [f.split(":", 1)[0] for f in found] == [
        "defaults.work_base",
        "workers[0].worker_id",
        "workers[0].host",
        "workers[1].env_file",
        "workers[1].concurrency",
    ]


@pytest.mark.parametrize(
    "env_file",
    [
        "/etc/fleet/creds/w2.creds",  # another worker's NATS identity
        "/etc/fleet/tunnel/id_ed25519",  # the tunnel's SSH key
        "/etc/fleet/fleet.env",  # beside the env files, not among them
        "/etc/nats/nats-server.conf",
        "/var/lib/fleetctl/manifest.json",
        "/etc/ssh/ssh_host_ed25519_key",
    ],
)
def test_an_env_file_in_fleetctls_own_directories_is_refused_whatever_the_worker_says(
    tmp_path: Path, env_file: str
) -> None:
    """`env_file_outside_fleet: true` is a worker's word that a file outside the env files'
    directory is its own; a file fleetctl keeps for itself never is (a hostile pull request
    sets the flag as easily as the path)."""
    workers: list[dict[str, Any]] = [
        {"worker_id": "w1", "env_file": env_file, "env_file_outside_fleet": True},
        {"worker_id": "w2"},
    ]
    [found] = problems(tmp_path, workers)
    assert found.startswith(f"workers[0].env_file: {env_file!r} is in /"), found
    assert found.endswith(
        "systemd would read it as root and hand what it finds there to the worker, whatever "
        "env_file_outside_fleet says (name the worker's own file, like /etc/fleet/env/<id>.env)"
    )
    inherited = [{"worker_id": "w1"}, {"worker_id": "w2", "host": "n2"}]  # said once
    [found] = problems(tmp_path, inherited, defaults={"env_file": env_file})
    assert found.startswith(f"defaults.env_file: {env_file!r} is in /"), found


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("work_base", "/etc/fleet/", "'/etc/fleet' is the directory of fleetctl's configuration"),
        ("work_base", "/etc//fleet", "'/etc//fleet' is not a plain absolute path"),
        ("work_base", "/etc/./fleet", "'/etc/./fleet' contains '.' or '..' components"),
        ("work_base", "/var/lib/fleet/../../../etc", "contains '.' or '..' components"),
        ("work_base", "/etc/fleet\u2028", "'/etc/fleet\\u2028' contains whitespace"),
        ("work_base", "/etc/fleet\x85", "'/etc/fleet\\x85' contains whitespace"),
        ("env_file", "/etc/fleet/env/../creds/w2.creds", "contains '.' or '..' components"),
        ("env_file", "/etc/fleet/env//w1.env", "is not a plain absolute path"),
        ("env_file", "/etc/fleet/env/./w1.env", "contains '.' or '..' components"),
        ("env_file", "/etc/fleet/creds/", "'/etc/fleet/creds' is in /etc/fleet/creds"),
    ],
)
def test_other_spellings_of_fleetctls_directories_are_refused(
    tmp_path: Path, key: str, value: str, why: str
) -> None:
    """The replay of the attack (docs/security.md, "Attack replay"): every spelling of a
    path that names what is not the worker's is refused, or read as the plain path."""
    found = problems(tmp_path, [{"worker_id": "creds"}], defaults={key: value})
    assert len(found) == 1 and found[0].startswith(f"defaults.{key}: "), found
    assert why in found[0], found


def test_an_env_file_shared_under_two_spellings_is_still_shared(tmp_path: Path) -> None:
    workers = [
        {"worker_id": "a", "env_file": "/etc/fleet/env/zai.env"},
        {"worker_id": "b", "env_file": "/etc/fleet/env/zai.env/"},
    ]
    [found] = problems(tmp_path, workers)
    assert "'/etc/fleet/env/zai.env' is the env file of 2 workers on host 'n1'" in found
