"""Recognising a provider's rate limit, exhausted quota or overload in what a CLI printed,
and when it said the limit resets. Pure: text in, a `Limit` out.

Each CLI words them its own way (measured with the real CLIs against a provider mock
answering 429 with and without `retry-after`, 429 quota errors, 503 and 529: docs/poller.md,
"Rate limits and provider outages"); the stream readers (poller/streams.py) hand over the
error text a failed run ended with, and this module reads it:

- Claude Code: `API Error: Request rejected (429) · <the provider's message>`, its result's
  `api_error_status` (429; 529 and 503 are `server_error`), `billing_error` for a spent
  credit balance; the provider's own message may name the reset (Z.ai: `Your limit will
  reset at 2026-09-04 19:01:25`, in Beijing time).
- Codex: `exceeded retry limit, last status: 429 Too Many Requests`, `Quota exceeded. Check
  your plan and billing details.`, `You've hit your usage limit. ... try again at Dec 7th,
  2026 1:02 AM.` (the host's local time), `unexpected status 503 Service Unavailable: ...`.
- Gemini CLI: `[API Error: Resource has been exhausted (e.g. check quota). Suggested retry
  after 33s.]`, `You have exhausted your daily quota on this model.`, `The model is
  overloaded.`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

Kind = Literal["rate limited", "quota exhausted", "provider overloaded"]

# Z.ai writes its reset times without a zone, in Beijing time.
BEIJING = timezone(timedelta(hours=8))
# A reset further away than this is not believed (a misread date): a backoff instead.
MAX_RESET = 8 * 86400

_QUOTA = re.compile(
    r"quota exceeded|exceeded your current quota|exhausted your (?:daily |monthly )?quota"
    r"|insufficient_quota|credit balance is too low|billing_error",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"\b429\b|too many requests|rate[ _-]?limit|usage limit|resource has been exhausted"
    r"|resource_exhausted",
    re.IGNORECASE,
)
_OVERLOADED = re.compile(
    r"\b(?:529|503)\b|overloaded|service unavailable|server is overloaded",
    re.IGNORECASE,
)
_IN = re.compile(
    r"(?:retry after|try again in|retry in|retryDelay\W+)\s*(\d+(?:\.\d+)?)\s*"
    r"(ms|s|sec|seconds?|m|min|minutes?)?\b",
    re.IGNORECASE,
)
_ISO = re.compile(r"\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))")
_NAIVE = re.compile(r"reset at (\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})", re.IGNORECASE)
_CODEX_AT = re.compile(
    r"try again at ([A-Z][a-z]{2}) (\d{1,2})(?:st|nd|rd|th)?, (\d{4}) (\d{1,2}):(\d{2}) ([AP]M)"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Limit:
    """Why the provider turned the CLI away, and when it said that ends (Unix seconds),
    if it did; `detail` is the CLI's own words (shortened)."""

    kind: Kind
    until: float | None
    detail: str


def recognise(text: str, now: float) -> Limit | None:
    """The limit `text` (a failed run's error) tells of, if any."""
    kind: Kind | None = None
    if _QUOTA.search(text):
        kind = "quota exhausted"
    elif _RATE.search(text):
        kind = "rate limited"
    elif _OVERLOADED.search(text):
        kind = "provider overloaded"
    if kind is None:
        return None
    return Limit(kind, reset_time(text, now), " ".join(text.split())[:300])


def reset_time(text: str, now: float) -> float | None:
    """When `text` says the limit resets: `retry after 33s`, `try again in 20s`, an ISO time
    with its zone, Z.ai's `reset at <date time>` (Beijing time), Codex's `try again at Dec 7th,
    2026 1:02 AM` (local time). None when it says nothing usable (or something in the past,
    or too far off to believe)."""
    found = _reset(text, now)
    if found is None or not now < found <= now + MAX_RESET:
        return None
    return found


def _reset(text: str, now: float) -> float | None:
    m = _IN.search(text)
    if m:
        unit = (m.group(2) or "s").lower()
        scale = 0.001 if unit == "ms" else 60.0 if unit.startswith("m") else 1.0
        return now + float(m.group(1)) * scale
    m = _ISO.search(text)
    if m:
        try:
            return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    m = _NAIVE.search(text)
    if m:
        try:
            naive = datetime.fromisoformat(m.group(1).replace(" ", "T"))
        except ValueError:
            return None
        return naive.replace(tzinfo=BEIJING).timestamp()
    m = _CODEX_AT.search(text)
    if m and m.group(1) in _MONTHS:
        hour = int(m.group(4)) % 12 + (12 if m.group(6) == "PM" else 0)
        month = _MONTHS.index(m.group(1)) + 1
        try:
            local = datetime(int(m.group(3)), month, int(m.group(2)), hour, int(m.group(5)))
        except ValueError:
            return None
        return local.astimezone().timestamp()  # the host's zone: the CLI's
    return None


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
