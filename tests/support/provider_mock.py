"""A local stand-in for the three LLM providers' HTTP APIs, for contract tests with the real CLIs.

One server answers as the Anthropic Messages API (Claude Code, Z.ai), the OpenAI Responses API
(Codex) and the Gemini API (Gemini CLI), each in its streaming (SSE) shape. A test scripts the
turns of the conversation (`reset`): the next model request the CLI makes gets the next `Turn`
(a text answer, a tool call, or an HTTP error), with the usage numbers it should report.
Requests that are not the agent's own turn (token counting, model lists, Claude Code's side
calls without tools, Gemini's JSON side questions) get a short neutral answer and do not use
up the script. Every request is recorded, so a test can see what the CLI sent. Stdlib only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 10
    output_tokens: int = 5  # the answer's own, reasoning not included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # OpenAI's reasoning, Gemini's thoughts (Anthropic: none)


@dataclass(frozen=True)
class Turn:
    """One model answer: `text`, or a call of `tool` with `args`, or an HTTP `error` status.

    `freeform` makes the call a free-form (custom) tool call with that input, as Codex's
    `apply_patch` expects, instead of one with JSON arguments (OpenAI shape only).
    `delay`: seconds before the answer starts. `hang`: the answer's stream starts (status,
    headers, its first event) and then nothing more comes, the connection held open until
    the mock stops: a provider that stopped answering mid-stream. With `error`, `headers`
    are sent with it (e.g. `retry-after`) and `body`, if given, replaces the error's JSON.
    """

    text: str = ""
    tool: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    freeform: str | None = None
    usage: Usage = Usage()
    error: int | None = None
    delay: float = 0.0
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Seen:
    method: str
    path: str
    body: dict[str, Any]
    main: bool  # an agent turn (took a scripted answer)
    usage: Usage | None = None  # what the answer reported (None: no model answer)


class ProviderMock:
    """`with ProviderMock() as mock:` serves on 127.0.0.1:<mock.port> until the block ends."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.turns: list[Turn] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()  # ends the answers that hang
        self._refusal: tuple[float, Turn] | None = None
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                mock._record("GET", self.path, {}, False)
                self._json(200, {"object": "list", "data": [], "models": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                mock._answer(self, self.path, body if isinstance(body, dict) else {})

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def served(self) -> Usage:
        """The usage of every model answer given since the last `reset`, summed."""
        rows = [s.usage for s in self.seen if s.usage is not None]
        return Usage(
            sum(u.input_tokens for u in rows),
            sum(u.output_tokens for u in rows),
            sum(u.cache_read_tokens for u in rows),
            sum(u.cache_write_tokens for u in rows),
            sum(u.reasoning_tokens for u in rows),
        )

    def reset(self, *turns: Turn) -> None:
        """Forget what was seen and script the next turns."""
        with self._lock:
            self.seen.clear()
            self.turns = list(turns)
            self._refusal = None

    def refuse(self, seconds: float, error: Turn) -> None:
        """For `seconds` from now, answer every agent turn with `error` (an error `Turn`: a
        status, its headers and body), whatever the CLI's retries; the script after that."""
        with self._lock:
            self._refusal = (time.monotonic() + seconds, error)

    def refused(self) -> int:
        """The agent turns refused since the last `reset`."""
        return sum(1 for s in self.seen if s.main and s.usage is None)

    def __enter__(self) -> ProviderMock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    # -- answering ------------------------------------------------------------------------

    def _record(
        self, method: str, path: str, body: dict[str, Any], main: bool, usage: Usage | None = None
    ) -> None:
        with self._lock:
            self.seen.append(Seen(method, path, body, main, usage))

    def _next(self) -> Turn:
        with self._lock:
            if self._refusal is not None and time.monotonic() < self._refusal[0]:
                return self._refusal[1]
            return self.turns.pop(0) if self.turns else Turn(text="done")

    def _answer(self, h: Any, path: str, body: dict[str, Any]) -> None:
        bare = path.split("?", 1)[0]
        if bare.endswith("/count_tokens"):
            self._record("POST", path, body, False)
            h._json(200, {"input_tokens": 10})
            return
        if bare.endswith(":countTokens"):
            self._record("POST", path, body, False)
            h._json(200, {"totalTokens": 10})
            return
        if bare.endswith("/messages"):
            main = bool(body.get("tools"))
            self._reply(h, path, body, main, _anthropic)
        elif bare.endswith("/responses"):
            self._reply(h, path, body, True, _openai)
        elif bare.endswith(":streamGenerateContent"):
            self._reply(h, path, body, True, _gemini)
        elif bare.endswith(":generateContent"):
            # Gemini CLI's side questions (routing, next speaker) want JSON text back.
            text = json.dumps({"next_speaker": "user", "reasoning": "done"})
            turn = Turn(text=text)
            self._record("POST", path, body, False, turn.usage)
            h._json(200, _gemini_chunk(turn, _gemini_model(path)))
        else:
            self._record("POST", path, body, False)
            h._json(404, {"error": {"message": f"mock: no such endpoint {bare}"}})

    def _reply(self, h: Any, path: str, body: dict[str, Any], main: bool, shape: Any) -> None:
        turn = self._next() if main else Turn(text="ok")
        answered = not (turn.error or turn.hang)
        self._record("POST", path, body, main, turn.usage if answered else None)
        if turn.delay:
            self._closing.wait(turn.delay)
        if turn.error is not None:
            message = f"mock provider error {turn.error}"
            error = {"type": "api_error", "message": message, "code": turn.error}
            default = {"type": "error", "error": {**error, "status": "UNAVAILABLE"}}
            h._json(turn.error, turn.body or default, turn.headers)
            return
        stream = body.get("stream", True) or shape is _gemini
        events = list(shape(turn, body, path))
        if not stream and shape is _anthropic:
            h._json(200, _anthropic_message(turn, body))
            return
        if turn.hang:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.end_headers()
            name, obj = events[0]
            h.wfile.write(_sse(name, obj))
            h.wfile.flush()
            self._closing.wait()
            return
        data = b"".join(_sse(name, obj) for name, obj in events)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _sse(name: str | None, obj: dict[str, Any]) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


# -- Anthropic Messages ---------------------------------------------------------------------


def _anthropic_usage(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


def _anthropic_content(turn: Turn) -> list[dict[str, Any]]:
    if turn.tool:
        return [{"type": "tool_use", "id": "toolu_mock1", "name": turn.tool, "input": turn.args}]
    return [{"type": "text", "text": turn.text}]


def _anthropic_message(turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "mock"),
        "content": _anthropic_content(turn),
        "stop_reason": "tool_use" if turn.tool else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(turn.usage),
    }


def _anthropic(turn: Turn, body: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    start = {**_anthropic_message(turn, body), "content": [], "stop_reason": None}
    start["usage"] = {**_anthropic_usage(turn.usage), "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    if turn.tool:
        block = {"type": "tool_use", "id": "toolu_mock1", "name": turn.tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(turn.args)}
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": turn.text}
    yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    stop = "tool_use" if turn.tool else "end_turn"
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": turn.usage.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# -- OpenAI Responses -----------------------------------------------------------------------


def _openai(turn: Turn, body: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    u = turn.usage
    resp = {"id": "resp_mock", "object": "response", "status": "in_progress", "output": []}
    yield "response.created", {"type": "response.created", "response": resp}
    item: dict[str, Any]
    if turn.tool and turn.freeform is not None:
        item = {
            "type": "custom_tool_call",
            "id": "ctc_mock1",
            "call_id": "call_mock1",
            "name": turn.tool,
            "input": turn.freeform,
            "status": "completed",
        }
        added = {**item, "input": ""}
    elif turn.tool:
        item = {
            "type": "function_call",
            "id": "fc_mock1",
            "call_id": "call_mock1",
            "name": turn.tool,
            "arguments": json.dumps(turn.args),
            "status": "completed",
        }
        added = {**item, "arguments": ""}
    else:
        item = {
            "type": "message",
            "id": "msg_mock1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
        }
        added = {**item, "status": "in_progress", "content": []}
    yield (
        "response.output_item.added",
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": added,
        },
    )
    if not turn.tool:
        yield (
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "item_id": "msg_mock1",
                "output_index": 0,
                "content_index": 0,
                "delta": turn.text,
            },
        )
    yield (
        "response.output_item.done",
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": item,
        },
    )
    usage = {
        "input_tokens": u.input_tokens + u.cache_read_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens + u.reasoning_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": (
            u.input_tokens + u.cache_read_tokens + u.output_tokens + u.reasoning_tokens
        ),
    }
    done = {**resp, "status": "completed", "output": [item], "usage": usage}
    yield "response.completed", {"type": "response.completed", "response": done}


# -- Gemini ---------------------------------------------------------------------------------


def _gemini_model(path: str) -> str:
    return path.split("/models/", 1)[-1].split(":", 1)[0]


def _gemini_chunk(turn: Turn, model: str) -> dict[str, Any]:
    u = turn.usage
    call = {"functionCall": {"name": turn.tool, "args": turn.args}}
    part: dict[str, Any] = call if turn.tool else {"text": turn.text}
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": u.input_tokens + u.cache_read_tokens,
            "candidatesTokenCount": u.output_tokens,
            "cachedContentTokenCount": u.cache_read_tokens,
            **({"thoughtsTokenCount": u.reasoning_tokens} if u.reasoning_tokens else {}),
            "totalTokenCount": (
                u.input_tokens + u.cache_read_tokens + u.output_tokens + u.reasoning_tokens
            ),
        },
        "modelVersion": model,
    }


def _gemini(turn: Turn, body: dict[str, Any], path: str) -> Iterator[tuple[None, dict[str, Any]]]:
    yield None, _gemini_chunk(turn, _gemini_model(path))


def main() -> None:
    """`python -m tests.support.provider_mock HOST ANSWER`: serve on HOST (for simulated hosts,
    the LAN's address) with ANSWER as the agent's turns (up to 100); print the port, then, once
    stdin closes, the requests seen as JSON lines (method, path, whether an agent's turn)."""
    import sys

    host, answer = sys.argv[1], sys.argv[2]
    with ProviderMock(host) as mock:
        mock.reset(*[Turn(text=answer)] * 100)
        print(mock.port, flush=True)
        sys.stdin.read()
        for seen in mock.seen:
            print(json.dumps({"method": seen.method, "path": seen.path, "main": seen.main}))


if __name__ == "__main__":
    main()
