"""Route membership: who a selector matches, each shared queue's members and each worker's
queues, read from a loaded fleet (pure logic)."""

from __future__ import annotations

from pathlib import Path

import yaml

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet, Route
from fleetctl.config.routes import attributes, queues, queues_of, route_problems, select

SERVERS = {
    "version": 1,
    "servers": [
        {"name": "b", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "n1", "address": "192.0.2.2", "roles": ["worker-host"]},
    ],
}


def _fleet(tmp_path: Path) -> Fleet:
    workers: list[dict[str, object]] = [
        {"worker_id": "a", "lang": "go", "labels": {"tier": "cheap"}},
        {"worker_id": "b", "lang": "go"},
        {"worker_id": "c", "lang": "py", "labels": {"tier": "cheap"}},
        {"worker_id": "d", "lang": "go", "labels": {"tier": "old"}, "enabled": False},
    ]
    for w in workers:
        w |= {"llm": "command", "command": ["/bin/true"], "host": "n1"}
    routes = {
        "go": {"select": {"lang": "go"}, "pick": "any"},
        "cheap": {"select": {"tier": "cheap"}, "pick": "any"},
        "all-go": {"select": {"lang": "go"}},  # not a shared queue
    }
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    body = {"version": 1, "workers": workers, "routes": routes}
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(body))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


def test_each_shared_queue_has_its_enabled_members_and_each_worker_its_queues(
    tmp_path: Path,
) -> None:
    fleet = _fleet(tmp_path)
    assert queues(fleet) == {"go": ("a", "b"), "cheap": ("a", "c")}
    # routes in the file's order (yaml.safe_dump sorts them: all-go, cheap, go)
    assert queues_of(fleet) == {"a": ("cheap", "go"), "b": ("go",), "c": ("cheap",)}


def test_a_selector_matches_labels_and_fields_and_says_what_is_wrong(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    assert attributes(fleet.workers[0]) == {
        "tier": "cheap",
        "lang": "go",
        "llm": "command",
        "host": "n1",
    }

    def problems_of(selector: dict[str, str], where: str = "--select") -> list[str]:
        problems: list[str] = []
        assert select(fleet, selector, problems, where) == []
        return problems

    found: list[str] = []
    assert [w.id for w in select(fleet, {"lang": "go"}, found)] == ["a", "b"] and found == []
    assert problems_of({"worker_id": "d"}, "select") == [
        "select 'worker_id': no worker has this label or field "
        "(fields: lang, role, llm, model, host)"
    ]
    assert problems_of({"lang": "rust"}) == ["--select 'lang=rust' matches no worker of the fleet"]
    assert problems_of({"tier": "old"}) == [
        "--select matches only disabled workers (d): nothing would run it"
    ]


def test_a_route_of_disabled_workers_is_valid_and_one_matching_nothing_is_not(
    tmp_path: Path,
) -> None:
    fleet = _fleet(tmp_path)
    origin = fleet.routes["go"].origin
    assert route_problems(fleet, Route("old", {"tier": "old"}, "any", origin)) == []
    assert route_problems(fleet, Route("x", {"lang": "go", "tier": "x"}, "all", origin)) == [
        "select 'lang=go, tier=x' matches no worker of the fleet"
    ]
