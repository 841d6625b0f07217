"""Who may use the dashboard, and what a page may do.

Bound to loopback, anyone on this machine may (as with `fleetctl` itself). Bound anywhere
else, every request must carry the token: `Authorization: Bearer TOKEN`, or the cookie a
first `?token=TOKEN` visit sets (HttpOnly, SameSite=Strict). Every response forbids inline
script, plugins, framing and other origins (the Content Security Policy): an answer that
holds `<script>` is escaped by the templates, and would not run even if it were not.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
COOKIE = "fleetctl_dashboard"


class TokenError(ValueError):
    """A token file that cannot be used; the message says which and why."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def read_token(path: Path) -> str:
    """The token in `path` (its first line); a file others may read is refused."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as e:
        raise TokenError(f"--token-file {path}: {e.strerror}") from None
    if mode & 0o077:
        raise TokenError(f"--token-file {path}: readable by others (chmod 600 {path})")
    token = text.splitlines()[0].strip() if text else ""
    if len(token) < 16:
        raise TokenError(f"--token-file {path}: the token must be at least 16 characters")
    return token


class Guard:
    """ASGI middleware: the token check (when there is a token) and the security headers
    on every response, errors included."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if self.token is not None:
            given = self._given(scope)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                await _refuse(send_with_headers)
                return
            if _query_token(scope) is not None:  # first visit: keep it in a cookie
                await _set_cookie(scope, send_with_headers, self.token)
                return
        await self.app(scope, receive, send_with_headers)

    def _given(self, scope: Scope) -> str | None:
        headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.startswith("Bearer "):
            return auth.removeprefix("Bearer ").strip()
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:
            cookie = SimpleCookie()
        if COOKIE in cookie:
            return str(cookie[COOKIE].value)
        return _query_token(scope)


def _query_token(scope: Scope) -> str | None:
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
    return next((v for k, v in query if k == "token"), None)


async def _refuse(send: Send) -> None:
    body = b"401: this dashboard needs its token (see `fleetctl dashboard --help`)\n"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"www-authenticate", b'Bearer realm="fleetctl dashboard"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _set_cookie(scope: Scope, send: Send, token: str) -> None:
    """Keep the token in a cookie and send the browser back without it in the URL."""
    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode()) if k != "token"]
    location = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
        }
    )
    await send({"type": "http.response.body", "body": b""})
