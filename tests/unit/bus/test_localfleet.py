"""The reach order's local step: a running local fleet found through its up.json (pure
logic on files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fleetctl.bus.localfleet import local_fleet, up_file, up_record
from fleetctl.tasks.reach import BusOptions, how


def test_a_local_fleet_is_used_only_while_its_supervisor_lives(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    assert local_fleet(path) is None
    up = up_file(path)
    up.parent.mkdir()
    body = {
        "version": 1,
        "fleet": str(path.resolve()),
        "pid": os.getpid(),
        "nats_url": "nats://127.0.0.1:4999",
        "creds": {"fleet-publisher": "/x/pub.creds"},
        "workers": ["a"],
    }
    up.write_text(json.dumps(body))
    local = local_fleet(path)
    assert local is not None and local.nats_url == "nats://127.0.0.1:4999"
    assert local.creds["fleet-publisher"] == Path("/x/pub.creds")
    assert how(path, BusOptions()) == "the local fleet"
    assert how(path, BusOptions(server="nats://h:1")) == "the bus at nats://h:1"
    up.write_text(json.dumps(body | {"fleet": "/elsewhere/fleet.yaml"}))
    assert local_fleet(path) is None
    up.write_text(json.dumps(body | {"pid": 2**22 + 12345}))  # beyond pid_max: not alive
    assert local_fleet(path) is None
    assert how(path, BusOptions()) == "an SSH forward to the broker"


def test_what_the_supervisor_writes_is_what_the_reader_takes(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    up = up_file(path)
    up.parent.mkdir()
    creds = {"fleet-publisher": "/x/pub.creds"}
    record = up_record(path, os.getpid(), "nats://127.0.0.1:4999", creds, ["a", "b"])
    up.write_text(json.dumps(record))
    local = local_fleet(path)
    assert local is not None
    assert (local.nats_url, local.pid, local.workers) == (
        "nats://127.0.0.1:4999",
        os.getpid(),
        ("a", "b"),
    )
    assert local.creds == {"fleet-publisher": Path("/x/pub.creds")}
    assert up == tmp_path / ".fleetctl" / "up.json"


def test_reaching_the_bus_needs_nothing_of_how_a_local_fleet_is_run() -> None:
    from tests.unit.test_import_cycles import graph

    edges = graph()
    upward = {
        (m, i)
        for m, imports in edges.items()
        if m.startswith("fleetctl.bus.")
        for i in imports
        if i.startswith("fleetctl.local")
    }
    assert upward == set()
    assert "fleetctl.bus.localfleet" in edges["fleetctl.local.state"]
