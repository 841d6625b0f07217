"""Duration options (`--since`, `--timeout`, `--wait-timeout`): one parser for every command."""

from __future__ import annotations

import pytest

from fleetctl.cli.params import duration


def test_a_duration_is_seconds_and_an_absent_one_is_none() -> None:
    assert duration("1h30m", "--since") == 5400.0
    assert duration("2d", "--timeout") == 172800.0
    assert duration(None, "--since") is None
    assert duration("5", "--timeout") == 5.0  # bare seconds, as fleet.yaml takes them
    assert duration(" 90 ", "--wait-timeout") == 90.0


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("soon", "error: --since 'soon' is not a duration (write it like 60s, 5m, 2h or 7d)"),
        ("0s", "error: --since must be longer than 0s"),
    ],
)
def test_a_bad_duration_is_one_line_and_exit_1(
    value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        duration(value, "--since")
    assert e.value.code == 1
    assert capsys.readouterr().err.strip() == says
