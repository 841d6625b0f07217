"""The dashboard's pages from hostile data (rendered by the real templates): whatever a
worker, a label or a comment holds is shown as text, never as markup or a link target;
and the task index's pages and filters."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from fleetctl.dashboard import views
from fleetctl.dashboard.app import _templates
from fleetctl.dashboard.index import Filters, TaskIndex
from fleetctl.status.report import HostStatus, RepoDisk
from fleetctl.tasks.answers import Answers
from fleetctl.tasks.judgments import Judgment
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Sender, Target, TaskRecord

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
PATCH = f"diff --git a/{EVIL} b/{EVIL}\n--- a/{EVIL}\n+++ b/{EVIL}\n@@ -1 +1 @@\n-{EVIL}\n+{EVIL}\n"


def _code() -> dict[str, Any]:
    return {
        "repo": "app",
        "files": [{"path": EVIL, "status": "modified", "insertions": 1, "deletions": 1}],
        "insertions": 1,
        "deletions": 1,
        "patch": PATCH,
        "check": {"passed": False, "exit_code": 1},
        "pull_request_url": "javascript:alert(4)",
    }


def _answers() -> Answers:
    judged = Judgment("t1", "w1", "fail", EVIL, "2026-01-01T00:00:00")
    results = [
        Result("w1", "completed", {"output": EVIL, "code": _code()}, judgment=judged.as_json()),
        Result("w2", "failed", {"output": EVIL, "error": EVIL}),
    ]
    record = TaskRecord(
        "t1",
        "2026-01-01T00:00:00",
        Sender(EVIL, None, EVIL),
        (Target("w1", "m1", 1, False), Target("w2", "m2", 2, False)),
        10,
        repo=EVIL,
        ref=EVIL,
    )
    return Answers("t1", record, results)


class _Tags(HTMLParser):
    """Every tag and attribute a browser would see in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _assert_inert(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    scripts = [dict(a) for t, a in parser.tags if t == "script"]
    assert scripts == [
        {"src": "/static/vendor/hotkeys-js.min.js", "defer": None},
        {"src": "/static/dashboard.js", "defer": None},
    ]
    assert not [t for t, _ in parser.tags if t in ("img", "iframe", "object", "embed")]
    for _, attrs in parser.tags:
        assert not [name for name, _ in attrs if name.startswith("on")]  # no event handler
        for name, value in attrs:
            if name in ("href", "src", "action"):
                assert not (value or "").strip().lower().startswith("javascript:")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_task_page_keeps_outputs_diffs_file_names_and_comments_as_text() -> None:
    answers = _answers()
    html = (
        _templates()
        .get_template("task.html")
        .render(
            answers=answers,
            record=answers.record,
            cells=views.cells(answers, "all"),
            all_workers=["w1", "w2"],
            mode="all",
            modes=views.MODES,
            a="w1",
            b="w2",
            compared=views.compare(answers, "w1", "w2"),
            compare_error=None,
            verdicts=("pick", "pass", "fail"),
            csrf="c",
        )
    )
    _assert_inert(html)
    assert f'data-path="{EVIL}"' not in html  # the file name in an attribute: escaped too
    assert '<span class="l-add">+&lt;script&gt;' in html  # a diff line keeps its colour class


def test_status_and_tasks_pages_keep_labels_senders_and_repos_as_text() -> None:
    status = {
        "problems": [EVIL],
        "hosts_observed": False,
        "workers": [
            {
                "worker_id": "w1",
                "labels": {EVIL: EVIL},
                "state": EVIL,
                "current_tasks": [EVIL, {"task_id": EVIL}],
                "heartbeat_age_s": None,
                "spent_today_usd": None,
                "daily_usd": None,
            }
        ],
        "broker": {
            "reachable": False,
            "error": EVIL,
            "streams": [{"name": EVIL, "messages": 1}],
            "fleet_daily_usd": None,
        },
    }
    _assert_inert(_templates().get_template("status.html").render(status_body=status, csrf="c"))
    index = TaskIndex()
    answers = _answers()
    assert answers.record is not None
    index.add_record(answers.record)
    rows, total = index.page(Filters(), 1, 50)
    html = (
        _templates()
        .get_template("tasks.html")
        .render(
            rows=rows,
            total=total,
            number=1,
            pages=1,
            filters=Filters(text=EVIL),
            workers=["w1"],
            repos=[EVIL],
            statuses=("waiting",),
            prev_url=None,
            next_url=None,
            csrf="c",
        )
    )
    _assert_inert(html)


def _status_page(**body: Any) -> str:
    status: dict[str, Any] = {
        "problems": [],
        "workers": [],
        "broker": {"reachable": True, "streams": [], "fleet_daily_usd": None},
    }
    status |= {"at": 1000.0, "local": False, "hosts_observed": True, "hosts": []} | body
    hosts_at, hosts_every = status.pop("hosts_at", None), status.pop("hosts_every", 30.0)
    return (
        _templates()
        .get_template("status.html")
        .render(status_body=status, csrf="c", hosts_at=hosts_at, hosts_every=hosts_every)
    )


def test_the_status_page_shows_each_host_s_units_and_a_host_it_could_not_reach() -> None:
    up = HostStatus(
        "node-1",
        True,
        units={"w1-poller.service": "active", "w2-poller.service": "stopped (inactive)"},
        repos=RepoDisk({"/srv": 2 * 1024**3}, 5 * 1024**3, 1024**3),
    )
    down = HostStatus(EVIL, False, EVIL, units={EVIL: EVIL})
    html = _status_page(hosts=[up.as_json(), down.as_json()], hosts_at=988.0)
    _assert_inert(html)
    parser = _Tags()
    parser.feed(html)
    rows = [dict(a) for t, a in parser.tags if t == "tr" and "data-host" in dict(a)]
    assert rows == [
        {"data-host": "node-1", "data-reachable": "yes"},
        {"data-host": EVIL, "data-reachable": "no"},
    ]
    attributes = [dict(a) for _, a in parser.tags]
    units = [(a["data-unit"], a["data-status"]) for a in attributes if "data-unit" in a]
    assert units == [
        ("w1-poller.service", "active"),
        ("w2-poller.service", "stopped (inactive)"),
        (EVIL, EVIL),
    ]
    assert "Looked at over SSH 12 s ago, every 30 s." in html
    assert "2.00 GiB used, 5.00 GiB free" in html
    assert "no: &lt;script&gt;" in html


def test_the_status_page_says_why_it_shows_no_hosts() -> None:
    local = _status_page(local=True, hosts_observed=False, hosts_every=None)
    assert "The local fleet (<code>fleetctl up</code>): no hosts over SSH." in local
    bus_only = _status_page(hosts_observed=False, hosts_every=None)
    assert "Not observed (<code>--no-hosts</code>)" in bus_only
    first = _status_page()
    assert "The first look at the hosts over SSH runs (then one every 30 s)." in first
    assert "data-host" not in local + bus_only + first


def test_the_index_pages_newest_first_and_filters() -> None:
    index = TaskIndex()
    for i in range(120):
        record = TaskRecord(
            f"t{i:03d}",
            f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}",
            Sender("pub", None, "me@here"),
            (Target("w1", f"m{i}", i, False), Target("w2", f"n{i}", i, False)),
            10,
            repo="app" if i % 2 else None,
        )
        index.add_record(record)
        index.add_result("w1", record.task_id, {"status": "completed", "cost_usd": 0.5})
        if i % 3 == 0:
            index.add_result("w2", record.task_id, {"status": "failed", "cost_usd": 0.25})
    rows, total = index.page(Filters(), 1, 50)
    assert total == 120 and [r.task_id for r in rows[:2]] == ["t119", "t118"]
    assert rows[0].targets == (("w1", "completed"), ("w2", "waiting"))
    last, _ = index.page(Filters(), 3, 50)
    assert [r.task_id for r in last][-1] == "t000" and len(last) == 20
    failed, total = index.page(Filters(status="failed"), 1, 50)
    assert total == 40 and all(r.cost_usd == 0.75 for r in failed)
    repo, total = index.page(Filters(repo="app", text="T11"), 1, 50)
    assert [r.task_id for r in repo] == ["t119", "t117", "t115", "t113", "t111"]
    # an answer from a worker never sent the task is listed as unsolicited
    index.add_result("w9", "t000", {"status": "completed"})
    assert index.row("t000") is not None and index.row("t000").unsolicited == (  # type: ignore[union-attr]
        ("w9", "completed"),
    )


def test_diff_lines_are_coloured_by_their_file_s_language_and_stay_text() -> None:
    patch = (
        "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n"
        ' import os\n+def f(): return "<script>alert(1)</script>"  # note\n'
        "diff --git a/notes.unknownext b/notes.unknownext\n+++ b/notes.unknownext\n+def x\n"
    )
    lines = views.classify(patch.splitlines())
    py = lines[5]
    assert py.kind == "add" and py.tokens[0] == ("add", "+")
    assert ("k", "def") in py.tokens and ("nf", "f") in py.tokens
    assert ("s2", '"<script>alert(1)</script>"') in py.tokens  # the string, as text
    assert any(cls.startswith("c") for cls, _ in py.tokens)  # the comment
    assert "".join(text for _, text in py.tokens) == py.text  # nothing added or lost
    assert lines[-1].tokens == ()  # a language not known: the +/- colour only
    answers = Answers(
        "t1",
        None,
        [Result("w1", "completed", {"code": {"files": [], "patch": patch}, "output": ""})],
    )
    html = (
        _templates()
        .get_template("task.html")
        .render(
            answers=answers,
            record=None,
            cells=views.cells(answers, "all"),
            all_workers=["w1"],
            mode="all",
            modes=views.MODES,
            a="",
            b="",
            compared=None,
            compare_error=None,
            verdicts=("pick",),
            csrf="c",
        )
    )
    assert '<span class="t-k">def</span>' in html
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in html
    assert "<script>alert" not in html
