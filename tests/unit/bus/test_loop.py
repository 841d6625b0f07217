"""The bus loop's thread: a call cut short by Ctrl-C unwinds before the interrupt goes on,
whatever other threads run on the loop meanwhile."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from fleetctl.bus.loop import Loop


def _long_call(
    started: threading.Event, cleaned: list[str]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A call that waits for ever once `started`; its cleanup takes a moment (as closing a
    wait does), then says so in `cleaned`."""

    async def interrupted() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)
            cleaned.append("done")

    return interrupted


def test_ctrl_c_unwinds_its_own_call_although_another_thread_called_since() -> None:
    """The interrupted call's cleanup has run when KeyboardInterrupt reaches the caller, even
    though another thread's call started (and ended) on the loop after it."""
    loop = Loop()
    cleaned: list[str] = []
    started = threading.Event()
    interrupted = _long_call(started, cleaned)

    def meanwhile() -> None:
        started.wait(5)
        loop.call(asyncio.sleep(0))  # another caller's short call
        # Ctrl-C, as the terminal sends it: a real SIGINT wakes the blocked wait.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    other = threading.Thread(target=meanwhile)
    other.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.call(interrupted())
        assert cleaned == ["done"]
    finally:
        other.join(5)
        loop.close()


def test_ctrl_c_before_the_wait_began_still_unwinds_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interrupt can land anywhere in `call`: here just after the coroutine was handed to
    the loop (and began), before the wait for it. It is cancelled and unwound all the same."""
    loop = Loop()
    cleaned: list[str] = []
    started = threading.Event()
    interrupted = _long_call(started, cleaned)

    call = interrupted()
    handed = asyncio.run_coroutine_threadsafe

    def handed_then_ctrl_c(coroutine: Any, on: asyncio.AbstractEventLoop) -> Any:
        future = handed(coroutine, on)
        if coroutine is call:
            started.wait(5)
            raise KeyboardInterrupt
        return future

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", handed_then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.call(call)
        assert cleaned == ["done"]
    finally:
        loop.close()
