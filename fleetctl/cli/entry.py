"""The `fleetctl` command's entry point: the collector's policy, set before any import.

fleetctl runs for seconds, or minutes for a large apply, and then exits. With CPython's
default policy (a pass every 700 allocations) a no-op plan of 21 hosts ran ~166
collections, 30-40 ms with every thread stopped, mostly walking imported modules and
connection state that live until exit anyway (see docs/performance.md). A pass every
100,000 allocations runs none in that plan (peak memory 66 MB against 65) and still
bounds what a long apply leaves behind.
"""

from __future__ import annotations

import atexit
import gc

ALLOCATIONS_PER_PASS = 100_000


def configure_collector() -> None:
    gc.set_threshold(ALLOCATIONS_PER_PASS, 50, 100)


def freeze_survivors() -> None:
    """Exclude everything alive now from the collector's passes, now and again at exit.

    A live plan holds the imported libraries plus 21 hosts' worth of connections and plan
    data; the interpreter's final collection walked all of it (~0.12 s of a 1.5 s no-op plan
    on 20 hosts) and full collections during the run walked the imports again and again.
    Nothing frozen is leaked: the process ends."""
    gc.freeze()  # the imports
    atexit.register(gc.freeze)  # and the rest, at the end


def main() -> None:
    configure_collector()
    from fleetctl.cli.main import main as run  # the imports come after the policy

    freeze_survivors()
    run()
