"""What counts as a spend counter (poller/spend.py): any worker may write the fleet's, so
everything read there is checked (pure logic; the bus side is tests/integration/test_budgets.py)."""

from __future__ import annotations

import json

import pytest

from poller import spend
from poller.budget import Limits
from poller.spend import Counter


@pytest.mark.parametrize(
    ("data", "headers", "corrupt"),
    [
        (b'{"usd": NaN}', None, "usd is NaN"),
        (b'{"usd": Infinity}', None, "usd is infinite"),
        (b'{"usd": -Infinity}', None, "usd is negative"),
        (b'{"usd": -0.5}', None, "usd is negative"),
        (b'{"usd": 1e300}', None, "usd is more than 1e+09"),
        (b'{"usd": 1' + b"0" * 400 + b"}", None, "usd is more than 1e+09"),
        (b'{"usd": -1' + b"0" * 400 + b"}", None, "usd is negative"),
        (b'{"usd": "5"}', None, "usd is a str, not a number"),
        (b'{"usd": true}', None, "usd is a bool, not a number"),
        (b'{"usd": null}', None, "no usd"),
        (b'{"at": 1}', None, "no usd"),
        (b"[0.5]", None, "a JSON list, not an object"),
        (b"0.5", None, "a JSON float, not an object"),
        (b"", None, "not JSON"),
        (b"\xff", None, "not JSON"),
        (b"[" * 5000 + b"]" * 5000, None, "not JSON"),
        (b"", {"KV-Operation": "DEL"}, "deleted (DEL)"),
        (b'{"usd": 1}', {"KV-Operation": "PURGE"}, "deleted (PURGE)"),
    ],
)
def test_anything_but_a_finite_non_negative_usd_is_corrupt(
    data: bytes, headers: dict[str, str] | None, corrupt: str
) -> None:
    counter = spend.parse(data, headers)
    assert (counter.usd, counter.corrupt) == (0.0, corrupt)
    assert counter.problem == f"is corrupt ({corrupt})"


@pytest.mark.parametrize(
    ("data", "usd"),
    [(b'{"usd": 0}', 0.0), (b'{"usd": 2.75, "at": 1.0}', 2.75), (b'{"usd": 1000000000}', 1e9)],
)
def test_a_counter_as_the_poller_writes_it(data: bytes, usd: float) -> None:
    assert spend.parse(data) == Counter(usd)
    assert spend.parse(data).problem is None


def test_a_reset_marker_is_carried_and_shown_only_through_its_checked_parts() -> None:
    mine = spend.encode(5.0, 1.0, spend.reset_marker("usd is NaN", "w1"))
    assert json.loads(mine) == {
        "usd": 5.0,
        "at": 1.0,
        "reset": {"was": "usd is NaN", "by": "worker w1"},
    }
    counter = spend.parse(mine)
    assert (counter.usd, counter.corrupt) == (5.0, None)
    assert counter.problem == (
        "was reset to its limit by worker w1 after it was found corrupt (usd is NaN)"
    )
    hostile = {"usd": 1, "reset": {"was": "\x1b[2J\nsee http://x", "by": "worker w1\n"}}
    assert spend.parse(json.dumps(hostile).encode()).reset == {
        "was": "unreadable",
        "by": "an unknown poller",
    }
    assert spend.parse(b'{"usd": 1, "reset": 3}').reset == {
        "was": "unreadable",
        "by": "an unknown poller",
    }


def test_the_poller_never_writes_a_value_it_would_call_corrupt() -> None:
    with pytest.raises(ValueError):
        spend.encode(float("nan"), 1.0)


def test_a_tasks_budget_is_capped_by_the_daily_limits() -> None:
    assert Limits(None, None).cap(1e6) == 1e6
    assert Limits(3.0, None).cap(1e6) == 3.0
    assert Limits(3.0, 2.0).cap(1e6) == 2.0
    assert Limits(3.0, 2.0).cap(0.5) == 0.5
