"""Daily spend budgets, kept on the bus so every poller of the fleet sees the same counters.

Before a task runs, the poller reads today's spend (UTC day) of its worker and, when the
fleet has a budget, of the whole fleet, from the NATS KV bucket `<PREFIX>_SPEND` (keys
`worker.<worker_id>.<day>` and `fleet.<day>`). Spent at least the budget: the task is not run
but `rejected` and dead-lettered (`fleetctl dead replay` sends it again another day). After
each result with a cost the poller adds it to both keys with compare-and-set
(`Nats-Expected-Last-Subject-Sequence`, retried when another poller wrote first), so no
spend is lost to a race. Concurrent pollers overshoot only by the tasks already running when
the budget ran out: at most (the slots sharing the budget) x (the most one task costs), which
a worker's `per_task_usd` bounds (docs/security.md).

A counter that is not a finite, non-negative number (poller/spend.py: NaN, a negative, a
string, a delete marker) fails closed: the budget counts as spent, and the poller resets the
counter to its limit with a `reset` marker that `fleetctl status --check` reports until the
UTC day ends. NaN would otherwise disable the budget for the day (nothing is >= NaN).

What the counters do not stop: a worker's own credentials can write its keys and the fleet's
(they have to add to them), so a compromised worker could reset them. Budgets are a guard
against runaway loops and mistakes, not against a hostile worker (docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nats.js.errors

from poller import spend
from poller.logs import Logger
from poller.spend import Counter

WRONG_LAST_SEQUENCE = (10071, 10164)
TIMEOUT = 5.0
CAS_TRIES = 50


@dataclass(frozen=True)
class Limits:
    daily_usd: float | None  # this worker's, per UTC day
    fleet_daily_usd: float | None  # the whole fleet's, per UTC day

    @property
    def any(self) -> bool:
        return self.daily_usd is not None or self.fleet_daily_usd is not None

    def cap(self, usd: float) -> float:
        """A task's own budget, lowered to the daily limits: one task never gets more than
        a whole day's budget."""
        return min([usd, *(x for x in (self.daily_usd, self.fleet_daily_usd) if x is not None)])


NO_LIMITS = Limits(None, None)


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class Budget:
    def __init__(
        self, js: Any, bucket: str, worker_id: str, limits: Limits, log: Logger | None = None
    ) -> None:
        self.js, self.bucket, self.worker_id, self.limits = js, bucket, worker_id, limits
        self.stream = f"KV_{bucket}"
        self.log = log or Logger("error")

    def _subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"

    def _keys(self, day: str) -> list[tuple[str, str, float | None]]:
        """(key, whose, limit) for the counters this worker adds to."""
        keys = [
            (f"worker.{self.worker_id}.{day}", f"worker {self.worker_id}", self.limits.daily_usd)
        ]
        if self.limits.fleet_daily_usd is not None:
            keys.append((f"fleet.{day}", "the fleet", self.limits.fleet_daily_usd))
        return keys

    async def _read(self, key: str) -> tuple[Counter, int]:
        """The counter, checked, and the key's last sequence (0 when it has none yet)."""
        try:
            msg = await self.js.get_msg(self.stream, subject=self._subject(key), direct=True)
        except nats.js.errors.NotFoundError:
            return Counter(0.0), 0
        return spend.parse(msg.data, msg.headers), int(msg.seq or 0)

    async def over(self) -> str | None:
        """Why the next task must not run, or None. Raises on a bus error: the caller does
        not run a task whose budget it cannot check."""
        if not self.limits.any:
            return None
        day = today()
        for key, whose, limit in self._keys(day):
            if limit is None:
                continue
            counter, seq = await self._read(key)
            if counter.corrupt is not None:
                await self._reset(key, counter.corrupt, seq, limit)
                return (
                    f"over budget: the spend counter of {whose} ({key}) was corrupt "
                    f"({counter.corrupt}), so it counts as spent: reset to its daily_usd "
                    f"{limit:.2f} for the rest of the UTC day (fleetctl status --check reports "
                    "it); replay it later with fleetctl dead replay"
                )
            if counter.usd >= limit:
                reset = " (reset after it was found corrupt)" if counter.reset else ""
                return (
                    f"over budget: {whose} spent {counter.usd:.2f}{reset} of its daily_usd "
                    f"{limit:.2f} (UTC day {day}); replay it later with fleetctl dead replay"
                )
        return None

    async def add(self, cost_usd: float) -> None:
        """Add a result's cost to today's counters, each with compare-and-set."""
        if not self.limits.any or cost_usd <= 0:
            return
        problem = spend.check_usd(cost_usd)
        if problem is not None:  # never written: the counter would turn corrupt
            raise ValueError(f"a result's cost_usd is not a cost: {problem}")
        for key, _, limit in self._keys(today()):
            await self._add(key, cost_usd, limit)

    async def _add(self, key: str, cost_usd: float, limit: float | None) -> None:
        for _ in range(CAS_TRIES):
            counter, seq = await self._read(key)
            base, reset = counter.usd, counter.reset
            if counter.corrupt is not None:
                base, reset = self._corrupt(key, counter.corrupt, limit)
            if await self._write(key, seq, base + cost_usd, reset):
                return
        raise RuntimeError(f"spend counter {key}: still contended after {CAS_TRIES} tries")

    async def _reset(self, key: str, why: str, seq: int, limit: float | None) -> None:
        """Once: a poller that wrote in between has replaced the corrupt value anyway."""
        usd, reset = self._corrupt(key, why, limit)
        await self._write(key, seq, usd, reset)

    def _corrupt(self, key: str, why: str, limit: float | None) -> tuple[float, dict[str, str]]:
        """What a corrupt counter is reset to: its limit (no task runs on it today), or 0
        when it has none (a worker's own counter, only the fleet's budget is enforced)."""
        usd = limit if limit is not None else 0.0
        self.log.warning("spend_counter_corrupt", key=key, problem=why, reset_to=usd)
        return usd, spend.reset_marker(why, self.worker_id)

    async def _write(self, key: str, seq: int, usd: float, reset: Mapping[str, str] | None) -> bool:
        """True once written; False when another poller wrote the key first."""
        try:
            await self.js.publish(
                self._subject(key),
                spend.encode(usd, time.time(), reset),
                timeout=TIMEOUT,
                stream=self.stream,
                headers={"Nats-Expected-Last-Subject-Sequence": str(seq)},
            )
            return True
        except nats.js.errors.APIError as e:
            if e.err_code not in WRONG_LAST_SEQUENCE:
                raise
            return False
