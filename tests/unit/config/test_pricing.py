"""Prices: fleet.yaml's table reaches each worker's unit, and the poller's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.config.errors import ConfigError
from fleetctl.config.loader import load_fleet
from fleetctl.reconcile.desired.poller_env import poller_environment
from poller import config, pricing
from poller.outputs import Parsed
from tests.support.example import EXAMPLE_SERVERS, example_fleet

USAGE = {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 5000}


def test_tokens_are_priced_per_million_with_cache_reads_at_the_input_price_by_default() -> None:
    assert pricing.Price(3, 15).cost(USAGE) == round((1000 * 3 + 200 * 15 + 5000 * 3) / 1e6, 6)
    assert pricing.Price(3, 15, 0.3).cost(USAGE) == round((3000 + 3000 + 1500) / 1e6, 6)


def test_a_price_wins_over_the_cli_figure_and_untrusted_figures_are_unknown() -> None:
    claude = Parsed("ok", usage=USAGE, cost_usd=0.5)
    price = pricing.Price(1, 1)
    assert pricing.cost(claude, price, True) == (0.0062, "priced")
    assert pricing.cost(claude, None, True) == (0.5, "reported")
    assert pricing.cost(claude, None, False) == (None, "unknown")
    assert pricing.cost(Parsed("no usage"), price, True) == (None, "unknown")


def test_the_rendered_price_reads_back_the_same() -> None:
    price = pricing.Price(0.6, 2.2, 0.11, 0.000001)
    assert pricing.parse(price.render()) == price


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("input=1", "needs both input= and output="),
        ("input=1,output=x", "output='x' is not a number"),
        ("input=1,output=2,cache=3", "'cache=3' is not one of"),
        ("input=-1,output=2", "input=.-1. must be between 0 and 10000"),
    ],
)
def test_a_bad_price_variable_names_itself(raw: str, message: str) -> None:
    env = {"WORKER_ID": "w1", "NATS_URL": "nats://x:1", "MODEL_BACKEND": "codex"}
    with pytest.raises(
        config.ConfigError, match="PRICE_USD_PER_MTOK " + message.replace("(", r"\(")
    ):
        config.load({**env, "PRICE_USD_PER_MTOK": raw})


def test_the_example_prices_its_codex_gemini_and_zai_workers_and_ignores_claudes_zai_figure() -> (
    None
):
    fleet = example_fleet()
    env = {w.id: dict(poller_environment(fleet, w)) for w in fleet.workers}
    assert env["codex-py-dev-01"]["PRICE_USD_PER_MTOK"] == "input=1.25,output=10,cache_read=0.125"
    assert env["gemini-ts-rev-01"]["PRICE_USD_PER_MTOK"] == "input=1.25,output=10,cache_read=0.31"
    assert env["cc-zai-high-dev-01"]["PRICE_USD_PER_MTOK"] == "input=0.6,output=2.2,cache_read=0.11"
    assert env["cc-zai-high-dev-01"]["REPORTED_COST"] == "ignore"
    assert "PRICE_USD_PER_MTOK" not in env["cc-go-dev-01"]  # claude-code: its own figure
    assert "REPORTED_COST" not in env["cc-go-dev-01"]
    # and the poller reads what fleetctl rendered
    cfg = config.load({**env["cc-zai-high-dev-01"], "NATS_CREDS": ""})
    assert cfg.price == pricing.Price(0.6, 2.2, 0.11) and not cfg.trust_reported_cost


def test_a_bad_price_in_fleet_yaml_names_file_line_and_field(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "version: 1\n"
        "prices:\n"
        "  glm-4.6: {input: 0.6}\n"
        "  gpt-x: {input: 1, output: -2}\n"
        "workers: []\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_fleet(fleet, EXAMPLE_SERVERS, fleet_name="fleet.yaml")
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "fleet.yaml:3" in text and "prices.glm-4.6.output" in text
    assert "fleet.yaml:4" in text and "prices.gpt-x.output" in text
