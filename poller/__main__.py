"""`python -m poller` / `fleet-poller`: read the environment, run until SIGTERM or SIGINT.

Exit codes: 0 after a clean stop, 2 for a bad environment (one line on stderr, no traceback).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from poller import __version__, config
from poller.logs import Logger
from poller.worker import Worker


async def _serve(cfg: config.Config, log: Logger) -> None:
    worker = Worker(cfg, log)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        loop.add_signal_handler(sig, _stop, worker, log, sig)
    await worker.run()


def _stop(worker: Worker, log: Logger, sig: signal.Signals) -> None:
    """SIGTERM, SIGINT: drain (stop fetching, let running tasks finish for DRAIN_TIMEOUT).
    SIGUSR1, or a second SIGTERM or SIGINT: hand running tasks back now (docs/poller.md)."""
    now = sig == signal.SIGUSR1 or worker.stop.is_set()
    log.info("signal", signal=sig.name, then="hand back now" if now else "drain")
    if now:
        worker.hand_back_now()
    else:
        worker.drain()


def main() -> int:
    try:
        cfg = config.load()
    except config.ConfigError as e:
        print(f"fleet-poller: configuration error: {e}", file=sys.stderr)
        return 2
    log = Logger(cfg.log_level, worker_id=cfg.worker_id)
    log.info(
        "starting",
        version=__version__,
        backend=cfg.backend,
        llm=cfg.llm,
        concurrency=cfg.concurrency,
        task_timeout_s=cfg.task_timeout,
    )
    asyncio.run(_serve(cfg, log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
