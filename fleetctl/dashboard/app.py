"""The dashboard's web app: server-side pages, the JSON API (the shapes of the CLI's
`--json`), judging, and the event stream the open pages follow."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fleetctl.bus.client import BusError
from fleetctl.config.errors import BadValue
from fleetctl.config.values import parse_duration
from fleetctl.dashboard import views
from fleetctl.dashboard.index import Filters
from fleetctl.dashboard.security import Guard
from fleetctl.dashboard.source import Source
from fleetctl.tasks import changes
from fleetctl.tasks.answers import Answers, NoSuchTask
from fleetctl.tasks.judgments import VERDICTS
from fleetctl.tasks.ledger import BY, ledger
from fleetctl.tasks.messages import TASK_ID, TaskError

HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_FORM = 16 * 1024  # a judgment's form: a comment of at most 2,000 characters
KEEPALIVE = 15.0  # seconds between comments on an idle event stream


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_url"] = _safe_url
    return env


def _safe_url(value: Any) -> str | None:
    """A link only for http(s) URLs; anything else (javascript:, data:) is shown as text."""
    text = str(value or "")
    return text if text.startswith(("https://", "http://")) else None


def create_app(source: Source, token: str | None = None) -> Starlette:
    env = _templates()
    csrf = secrets.token_urlsafe(24)
    views.warm()
    for name in ("tasks.html", "task.html", "status.html", "costs.html", "error.html"):
        env.get_template(name)  # compiled now, not in a first request's time

    def page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(request=request, csrf=csrf, **context)
        return HTMLResponse(html, status_code=status)

    # ---- pages -------------------------------------------------------------------------

    def home(request: Request) -> Response:
        return RedirectResponse("/tasks", status_code=303)

    def tasks_page(request: Request) -> Response:
        q = request.query_params
        filters = Filters(
            q.get("worker", ""), q.get("status", ""), q.get("repo", ""), q.get("q", "")
        )
        number = _int(q.get("page"), 1)
        rows, total = source.index.page(filters, number, PAGE_SIZE)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        base = {k: v for k, v in q.items() if k != "page" and v}
        return page(
            "tasks.html",
            request,
            rows=rows,
            total=total,
            number=number,
            pages=pages,
            filters=filters,
            workers=source.index.workers(),
            repos=source.index.repos(),
            statuses=("waiting", "completed", "failed", "timeout", "rejected", "dead-lettered"),
            prev_url=f"/tasks?{urlencode(base | {'page': number - 1})}" if number > 1 else None,
            next_url=f"/tasks?{urlencode(base | {'page': number + 1})}" if number < pages else None,
        )

    def task_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        found = _answers(task_id)
        if isinstance(found, Response):
            return found
        q = request.query_params
        mode = q.get("mode", "all") if q.get("mode") in views.MODES else "all"
        a, b = q.get("a", ""), q.get("b", "")
        compared: list[views.Line] | None = None
        compare_error = None
        if a and b:
            try:
                compared = views.compare(found, a, b)
            except changes.ChangeError as e:
                compare_error = str(e)
        return page(
            "task.html",
            request,
            answers=found,
            record=found.record,
            cells=views.cells(found, mode),
            all_workers=[r.worker_id for r in found.results],
            mode=mode,
            modes=views.MODES,
            a=a,
            b=b,
            compared=compared,
            compare_error=compare_error,
            verdicts=VERDICTS,
        )

    async def judge(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        form = await _form(request)
        if form is None:
            return page("error.html", request, 413, message="the form is too large")
        given = str(form.get("csrf", ""))
        if not hmac.compare_digest(given.encode(), csrf.encode()):
            return page("error.html", request, 403, message="the form is stale: reload the page")
        worker, verdict = str(form.get("worker", "")), str(form.get("verdict", ""))
        comment = str(form.get("comment", ""))
        try:
            await run_in_threadpool(source.client.judge, task_id, worker, verdict, comment)
        except TaskError as e:
            return page("error.html", request, 400, message=str(e))
        except BusError as e:
            return page("error.html", request, 502, message=f"not stored: {e}")
        return RedirectResponse(f"/tasks/{task_id}#w-{worker}", status_code=303)

    async def status_page(request: Request) -> Response:
        watch = source.hosts
        return page(
            "status.html",
            request,
            status_body=await source.status(),
            hosts_at=watch.at if watch is not None else None,
            hosts_every=watch.every if watch is not None else None,
        )

    def costs_page(request: Request) -> Response:
        stored = source.index.stored_results()
        books = {
            by: ledger(stored, by, source.labels).as_json() for by in ("day", "worker", "model")
        }
        charts = {by: views.bars(book["rows"]) for by, book in books.items()}
        return page("costs.html", request, books=books, charts=charts, scores=source.index.scores())

    # ---- the JSON API: the CLI's --json shapes -------------------------------------------

    def api_tasks(request: Request) -> Response:
        since = _seconds(request.query_params.get("since", "1h"))
        if since is None:
            return JSONResponse({"error": "since: a duration (30m, 2h, 7d)"}, status_code=400)
        worker = request.query_params.get("worker") or None
        try:
            rows = source.client.tasks(since, worker)
        except BusError as e:
            return JSONResponse({"error": str(e)}, status_code=502)
        return JSONResponse({"version": 1, "tasks": [r.as_json() for r in rows]})

    def api_task(request: Request) -> Response:
        found = _answers(request.path_params["task_id"], as_json=True)
        return found if isinstance(found, Response) else JSONResponse(found.as_json())

    async def api_status(request: Request) -> Response:
        return JSONResponse(await source.status())

    def api_costs(request: Request) -> Response:
        by = request.query_params.get("by", "worker")
        if by not in BY:
            return JSONResponse({"error": f"by: one of {', '.join(BY)}"}, status_code=400)
        book = ledger(source.index.stored_results(), by, source.labels)
        return JSONResponse(book.as_json())

    def api_scores(request: Request) -> Response:
        return JSONResponse({"version": 1, "workers": source.index.scores()})

    def _answers(task_id: str, as_json: bool = False) -> Answers | Response:
        if not TASK_ID.fullmatch(task_id):
            return _error(404, f"not a task id: {task_id!r}", as_json)
        try:
            return source.client.answers(task_id)
        except NoSuchTask as e:
            return _error(404, str(e), as_json)
        except BusError as e:
            return _error(502, str(e), as_json)

    def _error(status: int, message: str, as_json: bool) -> Response:
        if as_json:
            return JSONResponse({"error": message}, status_code=status)
        html = env.get_template("error.html").render(message=message, csrf=csrf)
        return HTMLResponse(html, status_code=status)

    # ---- live ----------------------------------------------------------------------------

    async def events(request: Request) -> Response:
        queue = source.listeners.open()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": idle\n\n"
                        continue
                    body = {"kind": event.kind, "task_id": event.task_id}
                    body["worker_id"] = event.worker_id or ""
                    yield f"event: change\ndata: {json.dumps(body)}\n\n".encode()
            finally:
                source.listeners.close(queue)

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    routes = [
        Route("/", home),
        Route("/tasks", tasks_page),
        Route("/tasks/{task_id}", task_page),
        Route("/tasks/{task_id}/judge", judge, methods=["POST"]),
        Route("/status", status_page),
        Route("/costs", costs_page),
        Route("/api/tasks", api_tasks),
        Route("/api/tasks/{task_id}", api_task),
        Route("/api/status", api_status),
        Route("/api/costs", api_costs),
        Route("/api/scores", api_scores),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])
    app.state.source = source
    return app


async def _form(request: Request) -> dict[str, str] | None:
    """A urlencoded form (what the pages post), at most MAX_FORM bytes; None past that."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def _seconds(value: str) -> float | None:
    """`since` as the CLI's --since takes it (30m, 2h, 7d); None when it is not one."""
    try:
        seconds = parse_duration(value)
    except BadValue:
        return None
    return float(seconds) if seconds > 0 else None
