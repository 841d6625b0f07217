"""A provider's refusals as each real CLI words them (seen with the real CLIs against the
provider mock: docs/poller.md, "Rate limits and provider outages"), and their reset times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from poller.limits import recognise

NOW = datetime(2026, 12, 6, 23, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("said", "kind", "reset_in"),
    [
        # Claude Code: the result's api_error_status, the assistant's error kind, its text.
        ("429 rate_limit: API Error: Request rejected (429) · rate limited", "rate limited", None),
        (
            "529 server_error: API Error: 529 Overloaded. This is a server-side issue, usually "
            "temporary — try again in a moment.",
            "provider overloaded",
            None,
        ),
        ("503 server_error: API Error: 503 Service Unavailable.", "provider overloaded", None),
        (
            "400 billing_error: Your credit balance is too low to access the Anthropic API.",
            "quota exhausted",
            None,
        ),
        # Z.ai behind Claude Code: its reset, in Beijing time (2026-12-07 08:30 = 00:30 UTC).
        (
            "429 rate_limit: API Error: Request rejected (429) · Usage limit reached for 5 hour. "
            "Your limit will reset at 2026-12-07 08:30:00",
            "rate limited",
            5400,
        ),
        # Codex
        ("exceeded retry limit, last status: 429 Too Many Requests", "rate limited", None),
        ("Quota exceeded. Check your plan and billing details.", "quota exhausted", None),
        (
            "unexpected status 503 Service Unavailable: The server is overloaded or not ready yet.",
            "provider overloaded",
            None,
        ),
        # Gemini CLI
        (
            "[API Error: Resource has been exhausted (e.g. check quota).\nSuggested retry after "
            "33s.]\nPlease wait and try again later.",
            "rate limited",
            33,
        ),
        (
            "[API Error: You have exhausted your daily quota on this model.]",
            "quota exhausted",
            None,
        ),
        (
            "[API Error: The model is overloaded. Please try again later.]",
            "provider overloaded",
            None,
        ),
        # A reset with its zone
        ("429: Weekly limit exhausted, reset at 2026-12-07T00:00:00Z", "rate limited", 3600),
    ],
)
def test_each_clis_words_for_a_refusal(said: str, kind: str, reset_in: int | None) -> None:
    limit = recognise(said, NOW)
    assert limit is not None and limit.kind == kind
    assert (None if limit.until is None else round(limit.until - NOW)) == reset_in


def test_codex_names_its_reset_in_the_hosts_local_time() -> None:
    said = "You've hit your usage limit. ... or try again at Dec 7th, 2026 1:02 AM."
    limit = recognise(said, NOW)
    local = datetime(2026, 12, 7, 1, 2).astimezone().timestamp()
    assert limit is not None and (limit.kind, limit.until) == ("rate limited", local)


def test_other_failures_and_unbelievable_resets_are_not_limits() -> None:
    assert recognise("error_max_turns: Reached maximum number of turns (3)", NOW) is None
    assert recognise("Unable to connect to API (ECONNREFUSED)", NOW) is None
    past = recognise("429 Your limit will reset at 2020-01-01 00:00:00", NOW)
    assert past is not None and past.until is None  # gone by: a backoff instead
    far = recognise("429 rate limited: reset at 2027-06-01T00:00:00Z", NOW)
    assert far is not None and far.until is None
