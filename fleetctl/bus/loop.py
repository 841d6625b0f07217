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
        self._running: asyncio.Task[Any] | None = None

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for it; its exception is raised here. A
        Ctrl-C while waiting cancels it on the loop too (a wait stops there as well) and
        lets it unwind before the KeyboardInterrupt goes on, so the connection can be
        closed after it with nothing of the call left pending."""
        future = asyncio.run_coroutine_threadsafe(self._tracked(coroutine), self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._unwound(), self._loop).result(UNWIND)
            raise

    async def _tracked(self, coroutine: Coroutine[Any, Any, T]) -> T:
        self._running = asyncio.current_task()
        return await coroutine

    async def _unwound(self) -> None:
        if self._running is not None:
            await asyncio.wait({self._running}, timeout=UNWIND)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
