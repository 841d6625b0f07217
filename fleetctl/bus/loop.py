"""One asyncio loop in a thread of its own, so synchronous callers (the CLI, a coordinator's
script) keep one bus connection open across many calls instead of one per call."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
UNWIND = 2.0  # seconds a call interrupted by Ctrl-C may take to run its cleanup


class Loop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for it; its exception is raised here. A
        Ctrl-C cancels it on the loop too (a wait stops there as well) and lets it unwind
        before the KeyboardInterrupt goes on, so the connection can be closed after it with
        nothing of the call left pending; wherever in here the Ctrl-C lands, even before
        the wait began. The call's task is found by its coroutine: other threads' calls may
        be running on the loop at the same time."""
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                unwound = self._unwound({coroutine})
                asyncio.run_coroutine_threadsafe(unwound, self._loop).result(UNWIND + 1)
            raise

    async def _unwound(self, coroutines: set[Coroutine[Any, Any, Any]] | None) -> None:
        """Cancel the tasks running `coroutines` (with None, every task but this one) and
        wait up to UNWIND for them to unwind. A coroutine no task runs (the Ctrl-C came
        before it was handed to the loop) is closed, never to be run."""
        me = asyncio.current_task()
        tasks = {
            t
            for t in asyncio.all_tasks()
            if t is not me and (coroutines is None or t.get_coro() in coroutines)
        }
        for c in (coroutines or set()) - {t.get_coro() for t in tasks}:
            c.close()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=UNWIND)

    def close(self) -> None:
        """Stop the loop with no task left pending on it (a call cut short by Ctrl-C whose
        cleanup outlived its unwind, a client's background task): destroying a loop with
        tasks pending prints 'Task was destroyed but it is pending!' to the user."""
        with contextlib.suppress(Exception):
            swept = asyncio.run_coroutine_threadsafe(self._unwound(None), self._loop)
            swept.result(UNWIND + 1)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
