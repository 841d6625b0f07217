"""`fleetctl dashboard` on a real broker with real pollers (stand-in CLIs), reached with
fleet-dashboard's own creds: its JSON API answers what the CLI's --json says, its pages
keep hostile answers as text, a judgment it stores shows in `fleetctl results --json`, a
new result reaches an open event stream, and beyond loopback every request needs the token."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import nats.errors
import pytest

from fleetctl.identity import natsaccess as na
from tests.support.dashboard import Dashboard, running_dashboard
from tests.support.nscfleet import DENIED_TIMEOUT, connect
from tests.support.poller_harness import directive
from tests.support.taskfleet import TaskFleet, task_fleet

pytestmark = pytest.mark.integration
HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
)
WORKERS: dict[str, dict[str, Any]] = {"w1": {}, "w2": {}}


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskFleet]:
    with task_fleet(tmp_path_factory.mktemp("dash"), WORKERS) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def dash(tf: TaskFleet) -> Iterator[Dashboard]:
    _send(tf, "before", "ok")  # stored before the dashboard starts: read when it loads
    with running_dashboard(tf) as d:
        yield d


def _send(tf: TaskFleet, task_id: str, output: str, *workers: str) -> None:
    targets = [a for w in (workers or tuple(WORKERS)) for a in ("--to", w)]
    done = tf.fleetctl("task", "send", directive(print=output), *targets, "--id", task_id, "--wait")
    assert done.returncode == 0, done.stderr


def _cli_json(tf: TaskFleet, *args: str) -> Any:
    done = tf.fleetctl(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_api_answers_what_the_cli_prints(tf: TaskFleet, dash: Dashboard) -> None:
    _send(tf, "api-1", "hello")
    assert dash.get("/api/tasks/api-1").json() == _cli_json(tf, "results", "api-1")
    assert dash.get("/api/tasks?since=1h").json() == _cli_json(tf, "tasks", "--since", "1h")
    # the costs page reads the dashboard's index, kept from the bus's own messages: the
    # same ledger as `costs`, which reads the results stream
    for by in ("worker", "day", "model"):
        assert dash.get(f"/api/costs?by={by}").json() == _cli_json(tf, "costs", "--by", by)
    status = dash.get("/api/status").json()
    assert [w["worker_id"] for w in status["workers"]] == ["w1", "w2"]
    assert status["broker"]["reachable"] is True
    cli = json.loads(tf.fleetctl("status", "--no-hosts", "--json", admin=True).stdout)
    assert status.keys() == cli.keys()
    assert (status["local"], status["hosts_observed"], status["hosts"]) == (False, False, [])
    assert (cli["local"], cli["hosts_observed"], cli["hosts"]) == (False, False, [])
    assert dash.get("/api/tasks/nope").status_code == 404
    assert dash.get("/api/costs?by=planet").status_code == 400


def test_pages_list_tasks_and_show_each_worker_s_answer(tf: TaskFleet, dash: Dashboard) -> None:
    _send(tf, "page-1", "same answer")
    tasks = dash.get("/tasks").text
    for task_id in ("before", "page-1"):
        assert f'data-task-id="{task_id}"' in tasks
    assert 'data-worker="w1" data-status="completed"' in tasks
    filtered = dash.get("/tasks", params={"q": "page-1"}).text
    assert 'data-task-id="page-1"' in filtered and 'data-task-id="before"' not in filtered
    page = dash.get("/tasks/page-1").text
    assert page.count('class="answer status-completed"') == 2
    assert 'id="w-w1" data-worker="w1" data-status="completed"' in page
    different = dash.get("/tasks/page-1", params={"mode": "different"}).text
    assert "No answers in this mode." in different  # both printed the same
    assert dash.get("/status").status_code == dash.get("/costs").status_code == 200


def test_hostile_answers_and_comments_stay_text(tf: TaskFleet, dash: Dashboard) -> None:
    _send(tf, "hostile-1", HOSTILE, "w1")
    csrf = _csrf(dash.get("/tasks/hostile-1").text)
    posted = httpx.post(
        f"{dash.url}/tasks/hostile-1/judge",
        data={"csrf": csrf, "worker": "w1", "verdict": "fail", "comment": HOSTILE},
        timeout=10,
    )
    assert posted.status_code == 303
    for path in ("/tasks/hostile-1", "/tasks/hostile-1?a=w1&b=w1", "/tasks"):
        response = dash.get(path)
        html = response.text
        assert "<script>alert" not in html and "<img" not in html
        assert 'href="javascript:' not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or path == "/tasks"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert re.findall(r"<script[^>]*>", dash.get("/tasks/hostile-1").text) == [
        '<script src="/static/vendor/hotkeys-js.min.js" defer>',
        '<script src="/static/dashboard.js" defer>',
    ]


def test_a_pick_is_stored_and_shown_by_results(tf: TaskFleet, dash: Dashboard) -> None:
    _send(tf, "judge-1", "answer")
    csrf = _csrf(dash.get("/tasks/judge-1").text)

    def judge(worker: str, verdict: str, comment: str, token: str = csrf) -> int:
        data = {"csrf": token, "worker": worker, "verdict": verdict, "comment": comment}
        return httpx.post(f"{dash.url}/tasks/judge-1/judge", data=data, timeout=10).status_code

    assert judge("w1", "pick", "the tidy one") == 303
    assert judge("w2", "pick", "no: this one") == 303  # one pick a task: w1's becomes a pass
    assert judge("w2", "pick", "forged", token="x" * 32) == 403
    assert judge("w2", "great", "") == 400
    got = {r["worker_id"]: r["judgment"] for r in _cli_json(tf, "results", "judge-1")["results"]}
    assert {w: (j["verdict"], j["comment"]) for w, j in got.items()} == {
        "w1": ("pass", "the tidy one"),
        "w2": ("pick", "no: this one"),
    }
    shown = tf.fleetctl("results", "judge-1")
    assert "judged    pick: no: this one" in shown.stdout
    scores = {s["worker_id"]: s for s in dash.get("/api/scores").json()["workers"]}
    assert (scores["w2"]["picks"], scores["w1"]["passes"]) == (1, 1)


def test_a_new_result_and_heartbeats_reach_an_open_event_stream(
    tf: TaskFleet, dash: Dashboard
) -> None:
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{dash.url}/events", timeout=20) as response:
            for line in response.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    mine = {e["kind"] for e in seen if e["task_id"] == "live-1"}
                    if "result" in mine and any(e["kind"] == "status" for e in seen):
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    _send(tf, "live-1", "fresh", "w1")
    thread.join(20)
    kinds = [(e["kind"], e["worker_id"]) for e in seen if e["task_id"] == "live-1"]
    assert ("record", "") in kinds and ("result", "w1") in kinds
    # and the workers' heartbeats, which the Status page follows
    assert {e["worker_id"] for e in seen if e["kind"] == "status"} <= {"w1", "w2"}
    assert any(e["kind"] == "status" for e in seen)


def test_no_worker_may_write_or_read_judgments(tf: TaskFleet) -> None:
    async def go() -> None:
        n = tf.fleet.names
        async with connect(tf.url, tf.fleet.workers["w1"], n.inbox_prefix("w1")) as w1:
            key = n.judgment("t1", "w1")
            await w1.nc.publish(key, b'{"verdict": "pick"}')
            await w1.wait_violation(key)
            with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
                await w1.nc.request(
                    f"$JS.API.DIRECT.GET.{n.judgment_stream}", b"{}", timeout=DENIED_TIMEOUT
                )
        async with connect(tf.url, tf.fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub:
            await pub.nc.publish(n.judgment("t1", "w1"), b"{}")
            await pub.wait_violation(n.judgment("t1", "w1"))

    asyncio.run(go())


def test_beyond_loopback_every_request_needs_the_token(tf: TaskFleet) -> None:
    with running_dashboard(tf, "--bind", "0.0.0.0") as d:
        assert d.token is not None and len(d.token) >= 32
        for path in ("/tasks", "/api/tasks", "/events", "/static/dashboard.css"):
            refused = d.get(path)
            assert refused.status_code == 401, path
            assert "content-security-policy" in refused.headers
        wrong = d.get("/api/scores", headers={"authorization": "Bearer " + "x" * 43})
        assert wrong.status_code == 401
        ok = d.get("/api/scores", headers={"authorization": f"Bearer {d.token}"})
        assert ok.status_code == 200
        first = d.get(f"/tasks?token={d.token}&page=1")
        assert first.status_code == 303 and first.headers["location"] == "/tasks?page=1"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert d.get("/tasks", cookies={"fleetctl_dashboard": d.token}).status_code == 200


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)
