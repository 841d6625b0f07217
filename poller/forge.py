"""Opening a pull request for a task's pushed branch, through the forge's HTTP API.

GitHub's REST API (`POST {api}/repos/{owner}/{name}/pulls`), with the repository's token
(`token_file`), through urllib: the poller depends on nats-py and nkeys only. Tested against a
local stand-in of that API (tests/support/forge_mock.py). The request runs in a thread with
a timeout; any failure is a `ForgeError` with the forge's message.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from poller.git import StepError
from poller.repos import PullRequest

TIMEOUT = 30.0
_KEEP = 500


class ForgeError(StepError):
    pass


def _request(pr: PullRequest, token: str, body: dict[str, Any]) -> str:
    url = f"{pr.api}/repos/{pr.repo}/pulls"
    req = urllib.request.Request(  # noqa: S310 - the api is https (or loopback http), checked
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
            "User-Agent": "fleet-poller",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - checked in repos.py
            answer = json.loads(resp.read(1024 * 1024))
    except urllib.error.HTTPError as e:
        raise ForgeError(f"{url}: {e.code} {_message(e)}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ForgeError(f"{url}: {getattr(e, 'reason', e)}") from None
    link = answer.get("html_url") if isinstance(answer, dict) else None
    if not isinstance(link, str):
        raise ForgeError(f"{url}: the answer has no html_url")
    return link


def _message(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(64 * 1024))
    except (OSError, ValueError):
        return str(e.reason)
    if not isinstance(body, dict):
        return str(e.reason)
    text = str(body.get("message", e.reason))
    errors = body.get("errors")
    if isinstance(errors, list):
        details = [str(x.get("message", x)) if isinstance(x, dict) else str(x) for x in errors]
        text += ": " + "; ".join(details)
    return text[:_KEEP]


async def open_pull_request(
    pr: PullRequest, token: str | None, *, head: str, base: str, title: str, body: str
) -> str:
    """The new pull request's URL; ForgeError when it could not be opened."""
    if not token:
        raise ForgeError("no token: the repository's token_file is needed for pull requests")
    payload = {"title": title, "head": head, "base": base, "body": body}
    return await asyncio.to_thread(_request, pr, token, payload)
