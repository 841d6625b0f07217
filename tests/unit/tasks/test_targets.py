"""Target resolution: pure logic on a loaded fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.tasks.messages import MAX_TASK_BYTES, TaskError, build, check_task_id, dedup_id
from fleetctl.tasks.targets import Ask, TargetError, resolve

SERVERS = {
    "version": 1,
    "servers": [
        {"name": "b", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "n1", "address": "192.0.2.2", "roles": ["worker-host"]},
    ],
}


def fleet_of(tmp_path: Path, workers: list[dict[str, object]], **extra: object) -> Fleet:
    for w in workers:
        w.setdefault("llm", "command")
        w.setdefault("command", ["/bin/true"])
        w.setdefault("host", "n1")
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    body = {"version": 1, "workers": workers} | extra
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(body))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return fleet_of(
        tmp_path,
        [
            {"worker_id": "a", "lang": "go", "labels": {"tier": "cheap"}},
            {"worker_id": "b", "lang": "go"},
            {"worker_id": "c", "lang": "go", "labels": {"tier": "cheap"}},
            {"worker_id": "d", "lang": "go", "enabled": False},
        ],
        routes={"go": {"select": {"lang": "go"}, "pick": "any"}},
    )


def test_any_takes_the_least_loaded_and_hands_ties_to_the_picker(fleet: Fleet) -> None:
    loads = {"a": 2, "b": 0, "c": 0}
    seen: list[list[str]] = []

    def pick(ties: object) -> str:
        seen.append(list(ties))  # type: ignore[call-overload]
        return seen[-1][-1]

    got = resolve(fleet, Ask(route="go"), lambda ids: loads, pick=pick)
    assert got == ["c"] and seen == [["b", "c"]]  # d is disabled: never a candidate
    assert resolve(fleet, Ask(select={"tier": "cheap"}, any=True), lambda ids: {"a": 0, "c": 1})
    assert resolve(fleet, Ask(to=("c", "a"))) == ["a", "c"]  # fleet order, once each
    assert resolve(fleet, Ask(to=("a", "b"), select={"tier": "cheap"})) == ["a"]


def test_every_target_problem_is_reported_at_once(fleet: Fleet) -> None:
    with pytest.raises(TargetError) as e:
        resolve(fleet, Ask(to=("x", "d"), route="goo"))
    assert e.value.problems == [
        "--route 'goo': no such route (did you mean 'go'?)",
        "--to 'x': no such worker in the fleet",
        "--to 'd': the worker is disabled (enabled: false in fleet.yaml), "
        "so nothing would run the task",
    ]


def test_route_problems_are_config_errors_with_file_and_line(tmp_path: Path) -> None:
    from fleetctl.config.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        fleet_of(
            tmp_path,
            [{"worker_id": "a", "lang": "go"}],
            routes={"r": {"select": {"lnag": "go"}}, "s": {"select": {"lang": "py"}}},
        )
    shown = [str(p) for p in e.value.problems]
    assert shown[0].startswith(f"{tmp_path / 'fleet.yaml'}:")
    assert "routes.r.select: select 'lnag': no worker has this label or field" in shown[0]
    assert "(did you mean 'lang'?)" in shown[0]
    assert "routes.s.select: select 'lang=py' matches no worker of the fleet" in shown[1]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("a.b", "routes.a.b: 'a.b' contains '.', which separates NATS subject tokens"),
        ("Go", "routes.Go: 'Go' has upper-case letters (use 'go')"),
        ("go_fast", "routes.go_fast: 'go_fast' is not a valid route name"),
        ("-go", "routes['-go']: '-go' is not a valid route name"),
        ("a>", "routes['a>']: 'a>' contains '>', a NATS wildcard"),
        ("r" * 65, "is not a valid route name (use lower-case letters, digits and '-'"),
    ],
)
def test_a_route_name_is_a_subject_token_checked_with_the_other_problems(
    tmp_path: Path, name: str, needle: str
) -> None:
    """Like a worker id: `<prefix>.route.<name>.inbox` and the consumer `route-<name>`."""
    from fleetctl.config.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        fleet_of(
            tmp_path,
            [{"worker_id": "a", "lang": "go", "host": "n2"}],  # and an unknown host
            routes={name: {"select": {"lang": "go"}, "pick": "any"}},
        )
    route, host = [str(p) for p in e.value.problems]  # fleet.yaml has routes: first
    assert "workers[0].host: unknown host 'n2'" in host
    assert needle in route, route
    assert route.startswith(f"{tmp_path / 'fleet.yaml'}:")


def test_a_route_name_of_64_worker_id_characters_is_taken(tmp_path: Path) -> None:
    name = "r-0" + "x" * 61
    fleet = fleet_of(
        tmp_path, [{"worker_id": "a", "lang": "go"}], routes={name: {"select": {"lang": "go"}}}
    )
    assert list(fleet.routes) == [name]


def test_tasks_carry_one_dedup_id_per_target_and_are_held_to_the_size_limit() -> None:
    assert dedup_id("t1", "w1") != dedup_id("t1", "w2")
    assert json.loads(build("t1", "hi", metadata={"k": "v"}))["metadata"] == {"k": "v"}
    with pytest.raises(TaskError, match="the bus takes at most"):
        build("t1", "x" * MAX_TASK_BYTES)
    for bad in ("a.b", "t1\n", "t1\r\n", "\nt1"):  # `$` let "t1\n" through
        with pytest.raises(TaskError, match="must be 1-128 letters"):
            build(bad, "hi")
        with pytest.raises(TaskError, match="must be 1-128 letters"):
            check_task_id(bad)
    with pytest.raises(TaskError, match="the prompt is empty"):
        build("t1", "  \n")


@pytest.mark.parametrize(
    ("workers", "extra", "says"),
    [
        ([{"worker_id": "a\n"}], {}, "workers[0].worker_id: 'a\\n' contains a line break"),
        (
            [{"worker_id": "a", "lang": "go"}],
            {"routes": {"go\n": {"select": {"lang": "go"}}}},
            "routes['go\\n']: 'go\\n' contains a line break",
        ),
        ([{"worker_id": "a"}], {"nats": {"subject_prefix": "af\n"}}, "'af\\n' contains a line"),
    ],
)
def test_ids_and_names_with_a_trailing_newline_are_refused(
    tmp_path: Path, workers: list[dict[str, object]], extra: dict[str, object], says: str
) -> None:
    """Every id is matched whole (`fullmatch`): a `$` would also match before a final "\\n"."""
    from fleetctl.config.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        fleet_of(tmp_path, workers, **extra)
    assert any(says in str(p) for p in e.value.problems), [str(p) for p in e.value.problems]
