"""Shared test settings: under CI, a test that would skip for a missing environment fails."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    expected_failure = hasattr(report, "wasxfail")  # an xfail reports as skipped
    if (
        os.environ.get("CI")
        and report.skipped
        and not expected_failure
        and call.when
        in (
            "setup",
            "call",
        )
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI, where nothing may skip: {reason}"
    return None


@pytest.fixture(autouse=True)
def _isolated_nsc_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nsc's default store is under the user's home: tests must never read or write it."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NKEYS_PATH", raising=False)
