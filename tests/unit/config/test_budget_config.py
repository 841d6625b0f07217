"""fleet.yaml budgets reach each worker's unit: daily limits for the poller, the per-task
limit as Claude Code's --max-budget-usd."""

from __future__ import annotations

from pathlib import Path

from fleetctl.config.loader import load_fleet
from fleetctl.reconcile.desired.poller_env import poller_unit_environment
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS


def _env(tmp_path: Path, extra: str) -> dict[str, dict[str, str]]:
    text = EXAMPLE_FLEET.read_text().replace("defaults:\n", "defaults:\n" + extra, 1)
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    fleet = load_fleet(path, EXAMPLE_SERVERS)
    return {w.id: dict(poller_unit_environment(fleet, w)) for w in fleet.workers}


def test_budgets_merge_worker_over_defaults_and_the_fleet_applies_to_all(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, "  budget: {daily_usd: 10, per_task_usd: 2}\n")
    go = env["cc-go-dev-01"]
    assert (go["BUDGET_DAILY_USD"], go["NATS_SPEND_BUCKET"]) == ("10", "AF_SPEND")
    assert float(go["CLAUDE_MAX_BUDGET_USD"]) == 2
    assert "BUDGET_FLEET_DAILY_USD" not in go
    assert "CLAUDE_MAX_BUDGET_USD" not in env["codex-py-dev-01"]  # codex cannot bound a task
    assert env["codex-py-dev-01"]["BUDGET_DAILY_USD"] == "10"


def test_the_fleet_budget_and_the_lowest_per_task_limit(tmp_path: Path) -> None:
    fleet_level = "budget: {daily_usd: 50, per_task_usd: 1.5}\n"
    text = EXAMPLE_FLEET.read_text().replace("defaults:\n", fleet_level + "defaults:\n", 1)
    text = text.replace(
        "    llm: zai ", "    budget: {daily_usd: 1, per_task_usd: 3}\n    llm: zai ", 1
    )
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    fleet = load_fleet(path, EXAMPLE_SERVERS)
    env = {w.id: dict(poller_unit_environment(fleet, w)) for w in fleet.workers}
    zai = env["cc-zai-high-dev-01"]
    assert zai["BUDGET_DAILY_USD"] == "1" and zai["BUDGET_FLEET_DAILY_USD"] == "50"
    assert float(zai["CLAUDE_MAX_BUDGET_USD"]) == 1.5  # the fleet's is lower than its own 3
    assert env["cmd-wordcount-01"]["BUDGET_FLEET_DAILY_USD"] == "50"
    assert "BUDGET_DAILY_USD" not in env["cmd-wordcount-01"]


def test_no_budget_renders_nothing(tmp_path: Path) -> None:
    """Without a budget each worker's environment is the budgeted one less exactly the
    budget's variables: nothing budget-related under any name, nothing else lost."""
    from tests.support.example import example_fleet

    fleet = example_fleet()
    plain = {w.id: dict(poller_unit_environment(fleet, w)) for w in fleet.workers}
    budgeted = _env(tmp_path, "  budget: {daily_usd: 10, per_task_usd: 2}\n")
    daily = {"NATS_SPEND_BUCKET", "BUDGET_DAILY_USD"}
    per_task = {"CLAUDE_MAX_BUDGET_USD"}  # kept only by the claude CLI (claude-code, zai)
    claude = {"cc-go-dev-01", "cc-zai-high-dev-01", "cc-haiku-multi-01"}
    assert plain.keys() == budgeted.keys()
    for worker, env in plain.items():
        added = budgeted[worker].keys() - env.keys()
        assert added == (daily | per_task if worker in claude else daily), worker
        assert env == {k: v for k, v in budgeted[worker].items() if k not in added}, worker


def test_a_per_task_limit_on_a_worker_that_cannot_keep_it_is_refused(tmp_path: Path) -> None:
    from fleetctl.config.errors import ConfigError

    text = EXAMPLE_FLEET.read_text().replace(
        "    llm: codex\n", "    llm: codex\n    budget: {per_task_usd: 1}\n", 1
    )
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    try:
        load_fleet(path, EXAMPLE_SERVERS, fleet_name="fleet.yaml")
    except ConfigError as e:
        [problem] = e.problems
    else:
        raise AssertionError("accepted")
    line = text.splitlines().index("    budget: {per_task_usd: 1}") + 1
    assert str(problem).startswith(f"fleet.yaml:{line}:")
    assert "budget.per_task_usd` is only kept by the claude backend, not codex" in str(problem)
