"""fleet.yaml `rollout:`: loaded into the fleet in seconds and shares, its defaults, and how a
share of hosts is counted (bad values: tests/corpus/107-rollout-bad-values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Rollout, Share
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS, example_fleet


def test_without_a_rollout_block_every_worker_host_goes_at_once() -> None:
    assert example_fleet().rollout == Rollout(None, Share(count=0), 0, 120)


def test_the_rollout_block_is_read_in_seconds_and_shares(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    text = "\nrollout: {batch: 25%, max_failed: 1, pause: 1m, confirm_timeout: 5m}\n"
    path.write_text(EXAMPLE_FLEET.read_text() + text)
    rollout = load_fleet(path, EXAMPLE_SERVERS).rollout
    assert rollout == Rollout(Share(percent=25), Share(count=1), 60, 300)
    assert (str(rollout.batch), str(rollout.max_failed)) == ("25%", "1")


@pytest.mark.parametrize(
    ("share", "total", "least", "hosts"),
    [
        (Share(count=2), 5, 1, 2),
        (Share(percent=25), 5, 1, 2),  # 1.25 rounds up
        (Share(percent=10), 3, 1, 1),
        (Share(percent=100), 7, 1, 7),
        (Share(count=0), 4, 0, 0),
        (Share(percent=50), 0, 1, 1),
    ],
)
def test_a_share_of_hosts_rounds_up(share: Share, total: int, least: int, hosts: int) -> None:
    assert share.hosts(total, at_least=least) == hosts
