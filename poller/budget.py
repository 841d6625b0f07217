"""Daily spend budgets, kept on the bus so every poller of the fleet sees the same counters.

Before a task runs, the poller reads today's spend (UTC day) of its worker and, when the
fleet has a budget, of the whole fleet, from the NATS KV bucket `<PREFIX>_SPEND` (keys
`worker.<worker_id>.<day>` and `fleet.<day>`). Spent at least the budget: the task is not run
but `rejected` and dead-lettered (`fleetctl dead replay` sends it again another day). After
each result with a cost the poller adds it to both keys with compare-and-set
(`Nats-Expected-Last-Subject-Sequence`, retried when another poller wrote first), so no
spend is lost to a race; concurrent workers can overshoot only by the tasks already running
when the budget ran out.

What the counters do not stop: a worker's own credentials can write its keys and the fleet's
(they have to add to them), so a compromised worker could reset them. Budgets are a guard
against runaway loops and mistakes, not against a hostile worker (docs/security.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import nats.js.errors

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


NO_LIMITS = Limits(None, None)


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class Budget:
    def __init__(self, js: Any, bucket: str, worker_id: str, limits: Limits) -> None:
        self.js, self.bucket, self.worker_id, self.limits = js, bucket, worker_id, limits
        self.stream = f"KV_{bucket}"

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

    async def _read(self, key: str) -> tuple[float, int]:
        """(USD spent, the key's last sequence; 0 when it has none yet)."""
        try:
            msg = await self.js.get_msg(self.stream, subject=self._subject(key), direct=True)
        except nats.js.errors.NotFoundError:
            return 0.0, 0
        try:
            usd = float(json.loads(msg.data or b"{}").get("usd", 0.0))
        except (ValueError, AttributeError, TypeError):
            usd = 0.0
        return usd, int(msg.seq or 0)

    async def over(self) -> str | None:
        """Why the next task must not run, or None. Raises on a bus error: the caller does
        not run a task whose budget it cannot check."""
        if not self.limits.any:
            return None
        day = today()
        for key, whose, limit in self._keys(day):
            if limit is None:
                continue
            spent, _ = await self._read(key)
            if spent >= limit:
                return (
                    f"over budget: {whose} spent {spent:.2f} of its daily_usd {limit:.2f} "
                    f"(UTC day {day}); replay it later with fleetctl dead replay"
                )
        return None

    async def add(self, cost_usd: float) -> None:
        """Add a result's cost to today's counters, each with compare-and-set."""
        if not self.limits.any or cost_usd <= 0:
            return
        for key, _, _ in self._keys(today()):
            await self._add(key, cost_usd)

    async def _add(self, key: str, cost_usd: float) -> None:
        for _ in range(CAS_TRIES):
            spent, seq = await self._read(key)
            value = {"usd": round(spent + cost_usd, 6), "at": time.time()}
            headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
            try:
                await self.js.publish(
                    self._subject(key),
                    json.dumps(value).encode(),
                    timeout=TIMEOUT,
                    stream=self.stream,
                    headers=headers,
                )
                return
            except nats.js.errors.APIError as e:
                if e.err_code not in WRONG_LAST_SEQUENCE:
                    raise
        raise RuntimeError(f"spend counter {key}: still contended after {CAS_TRIES} tries")
