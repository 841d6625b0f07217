"""`fleetctl dashboard` in a real browser: Debian's headless Chromium driven by Playwright
(its own browser downloads are never used: `executable_path` is the system's chromium),
against a fleet on this machine (a real nats-server, real pollers running the STAND-IN
command CLI on a local git repository). A fan-out task appears with each worker's cell, its
results arrive while the page is open, the diff view shows the files each worker changed,
a pick made in the page is what `fleetctl results --json` shows, the narrow layout does not
scroll sideways, and beyond loopback a request without the token is refused.

With DASHBOARD_SCREENSHOTS=DIR the run's screenshots are kept there (docs/img/ holds those
docs/dashboard.md shows)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import gitrepos
from tests.support.dashboard import Dashboard, running_dashboard
from tests.support.poller_harness import directive
from tests.support.taskfleet import TaskFleet, task_fleet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (./dev setup)")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (./dev test installs it)"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]
EDITS = directive(
    append_by_worker={"w1": {"a.txt": "good by w1\n"}, "w2": {"a.txt": "bad by w2\n"}},
    files={"shared.txt": "same\n"},
)
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 375, "height": 800}


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskFleet]:
    root = tmp_path_factory.mktemp("dash-browser")
    up = gitrepos.upstream(root, {"a.txt": "one\n", "b.txt": "bee\n"})
    repos = {"app": {"url": up.url, "ref": "main", "check": ["sh", "-c", "grep -q good a.txt"]}}
    workers: dict[str, dict[str, Any]] = {"w1": {"repo": "app"}, "w2": {"repo": "app"}}
    fleet_dir = root / "fleet"
    fleet_dir.mkdir()
    with task_fleet(fleet_dir, workers, top={"repos": repos}, repos=root / "host") as fleet:
        yield fleet


@pytest.fixture(scope="module")
def dash(tf: TaskFleet) -> Iterator[Dashboard]:
    with running_dashboard(tf) as d:
        yield d


@pytest.fixture(scope="module")
def fan(tf: TaskFleet) -> str:
    """A fan-out code task both workers answered (each test that reads it asks for it, so
    none depends on another having run first)."""
    sent = tf.fleetctl("task", "send", EDITS, "--to", "w1", "--to", "w2", "--repo", "app",
                       "--id", "fan-1", "--wait", timeout=90)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return "fan-1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def _shot(page: Any, name: str) -> None:
    keep = os.environ.get("DASHBOARD_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(keep) / f"dashboard-{name}.png"))


def _shown(page: Any, selector: str) -> None:
    """Wait for `selector`; a page without it fails with what the page showed instead."""
    try:
        page.wait_for_selector(selector, timeout=15_000)
    except playwright.Error:
        raise AssertionError(f"no {selector} in {page.url}:\n{page.content()[:3000]}") from None


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]}px wide in a {width[1]}px window"


def test_a_fan_out_task_appears_and_its_results_arrive_without_reload(
    tf: TaskFleet, dash: Dashboard, browser: Any
) -> None:
    page = browser.new_page(viewport=WIDE)
    page.goto(f"{dash.url}/tasks")
    page.wait_for_selector("#live[data-state=on]")
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    sent = tf.fleetctl("task", "send", EDITS, "--to", "w1", "--to", "w2", "--repo", "app",
                       "--id", "live-1")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    page.wait_for_selector('tr[data-task-id="live-1"]', timeout=20_000)
    for worker in ("w1", "w2"):
        page.wait_for_selector(
            f'tr[data-task-id="live-1"] [data-worker="{worker}"][data-status="completed"]',
            timeout=60_000,
        )
    assert page.evaluate("window.stillHere") is True
    assert page.is_visible('tr[data-task-id="live-1"]')
    _shot(page, "tasks")
    page.close()


def test_the_task_page_shows_each_change_and_the_diff_between_two(
    fan: str, dash: Dashboard, browser: Any
) -> None:
    page = browser.new_page(viewport=WIDE)
    page.goto(f"{dash.url}/tasks/fan-1")
    _shown(page, 'section.answer[data-worker="w2"]')
    cells = page.query_selector_all("section.answer")
    assert [c.get_attribute("data-worker") for c in cells] == ["w1", "w2"]
    for worker in ("w1", "w2"):
        files = page.eval_on_selector_all(
            f'section[data-worker="{worker}"] li.file', "els => els.map(e => e.dataset.path)"
        )
        assert files == ["a.txt", "shared.txt"]
    assert page.inner_text('section[data-worker="w1"] dd.check') == "passed"
    assert page.inner_text('section[data-worker="w2"] dd.check').startswith("failed")
    added = page.eval_on_selector_all(
        'section[data-worker="w1"] pre.diff span.l-add', "els => els.map(e => e.textContent)"
    )
    assert "+good by w1" in added
    _shot(page, "task")
    page.goto(f"{dash.url}/tasks/fan-1?a=w1&b=w2")
    compared = page.inner_text("#compared")
    assert "a.txt" in compared and "good by w1" in compared and "bad by w2" in compared
    assert "shared.txt" not in compared  # both changed it alike
    page.goto(f"{dash.url}/tasks/fan-1?mode=failed")
    failed = page.eval_on_selector_all("section.answer", "els => els.map(e => e.dataset.worker)")
    assert failed == ["w2"]  # its check failed
    page.close()


def test_a_pick_made_in_the_page_is_what_results_shows(
    tf: TaskFleet, fan: str, dash: Dashboard, browser: Any
) -> None:
    page = browser.new_page(viewport=WIDE)
    page.goto(f"{dash.url}/tasks/fan-1")
    form = 'section[data-worker="w1"] form.judge'
    page.fill(f"{form} input[name=comment]", "tidy, and its check")
    # a change to the task meanwhile (sent again: its record rewritten, a live event) does
    # not swap the half-written comment away
    page.evaluate("window.beforeResult = document.getElementById('grid')")
    sent = tf.fleetctl("task", "send", EDITS, "--to", "w1", "--id", "fan-1", "--wait", timeout=90)
    assert sent.returncode == 0, sent.stderr
    page.wait_for_timeout(1000)
    assert page.evaluate("window.beforeResult === document.getElementById('grid')")
    page.type(f"{form} input[name=comment]", " passed")
    with page.expect_navigation():
        page.click(f'{form} button[value="pick"]')
    assert page.get_attribute('section[data-worker="w1"] [data-verdict]', "data-verdict") == "pick"
    shown = json.loads(tf.fleetctl("results", "fan-1", "--json").stdout)
    judged = {r["worker_id"]: r["judgment"] for r in shown["results"]}
    assert judged["w1"]["verdict"] == "pick"
    assert judged["w1"]["comment"] == "tidy, and its check passed"
    assert judged["w2"] is None
    page.close()


def test_keys_move_through_the_tasks_and_open_one(fan: str, dash: Dashboard, browser: Any) -> None:
    """j selects the newest task, Enter opens it, 2 switches the Task page to Failed."""
    page = browser.new_page(viewport=WIDE)
    page.goto(f"{dash.url}/tasks?q=fan-1")
    _shown(page, 'tr[data-task-id="fan-1"]')
    page.wait_for_function("window.hotkeys !== undefined")
    page.keyboard.press("j")
    assert page.get_attribute("tr.task-row.selected", "data-task-id") == "fan-1"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{dash.url}/tasks/fan-1"
    with page.expect_navigation():
        page.keyboard.press("2")
    assert page.url == f"{dash.url}/tasks/fan-1?mode=failed"
    page.close()


def test_the_narrow_layout_does_not_scroll_sideways(
    fan: str, dash: Dashboard, browser: Any
) -> None:
    page = browser.new_page(viewport=NARROW)
    for path, name in (("/tasks", "narrow-tasks"), ("/tasks/fan-1", "narrow-task"),
                       ("/status", None), ("/costs", None)):  # fmt: skip
        page.goto(dash.url + path)
        _no_sideways_scroll(page)
        if name:
            _shot(page, name)
    page.close()


def test_beyond_loopback_a_request_without_the_token_is_refused(
    tf: TaskFleet, fan: str, browser: Any
) -> None:
    with running_dashboard(tf, "--bind", "0.0.0.0") as d:
        page = browser.new_page(viewport=WIDE)
        refused = page.goto(f"{d.url}/tasks")
        assert refused is not None and refused.status == 401
        assert "needs its token" in page.inner_text("body")
        page.goto(f"{d.url}/tasks?token={d.token}")  # the printed link: a cookie, then the page
        assert page.url == f"{d.url}/tasks"
        assert page.query_selector('tr[data-task-id="fan-1"]') is not None
        page.close()
