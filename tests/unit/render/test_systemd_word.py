"""The one systemd escaping filter: round trips, and refuses what cannot be carried."""

from __future__ import annotations

import pytest

from fleetctl.render.systemd import UnitValueError, systemd_word


def systemd_unquote(word: str) -> str:
    """What systemd does to one word: unquote with C escapes, then expand %% to %."""
    if len(word) >= 2 and word[0] == word[-1] == '"':
        out, i, inner = [], 0, word[1:-1]
        while i < len(inner):
            if inner[i] == "\\":
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(inner[i])
                i += 1
        word = "".join(out)
    else:
        assert not any(c in word for c in ' \t"\\'), f"unquoted word with specials: {word!r}"
    return word.replace("%%", "%")


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "/opt/fleet/venv/bin/fleet-poller",
        "with space",
        'COMMAND_ARGV=["llm", "--model", "x"]',
        "100%",
        "%n%i",
        "back\\slash",
        "semi;colon",
        "",
        "ALLOWED_TOOLS=Read,Bash(git log:*)",
    ],
)
def test_round_trips_through_systemd_unquoting(value: str) -> None:
    assert systemd_unquote(systemd_word(value)) == value


def test_plain_words_stay_unquoted() -> None:
    assert systemd_word("WORKER_ID=cc-go-dev-01") == "WORKER_ID=cc-go-dev-01"


def test_specifiers_are_doubled() -> None:
    assert systemd_word("%h") == "%%h"


@pytest.mark.parametrize("value", ["a\nExecStart=/bin/sh", "bell\x07", "cr\r", "tab\tinside"])
def test_line_breaks_and_control_characters_are_refused(value: str) -> None:
    with pytest.raises(UnitValueError):
        systemd_word(value)
