"""The `nats:` block's store limits must nest: streams in the account, the account in the broker.

Both failures are silent or late at the broker: an account whose JetStream limits exceed the
server's store gets JetStream disabled ("insufficient resources", the fleet cannot start), and
streams whose max bytes add up to more than the account may hold are refused when apply
creates them. So `validate` says so, at the key the user wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl.config.errors import BadValue, Problem
from fleetctl.config.schema import NatsSettings
from fleetctl.config.values import parse_size
from fleetctl.config.yamlsource import PathKey, SourceMap, dotted

STREAMS = (
    "tasks_max_bytes",
    "results_max_bytes",
    "dead_max_bytes",
    "leases_max_bytes",
    "spend_max_bytes",
    "records_max_bytes",
    "judgments_max_bytes",
    "cancels_max_bytes",
)
_DEFAULTS = NatsSettings()


def _size(nats: dict[str, Any], key: str) -> int:
    if key not in nats:
        return int(getattr(_DEFAULTS, key))
    return parse_size(nats[key])


def _human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def problems(nats: dict[str, Any], fmap: SourceMap, ok: Callable[[PathKey], bool]) -> list[Problem]:
    """Every limit that does not fit in the one above it (values that failed their own check
    are skipped: they are reported once, by the schema)."""
    keys: tuple[str, ...] = (*STREAMS, "account_max_file_store", "account_max_memory_store")
    keys += ("max_file_store", "max_memory_store")
    if not all(ok(("nats", k)) for k in keys):
        return []
    try:
        size = {k: _size(nats, k) for k in keys}
    except BadValue:
        return []
    out: list[Problem] = []

    def add(written: tuple[str, ...], what: str, fix: str) -> None:
        key = next((k for k in written if k in nats), None)
        path: PathKey = ("nats", key) if key else ("nats",)
        out.append(Problem(fmap.value(path), dotted(path), what, fix))

    for account, broker in (
        ("account_max_file_store", "max_file_store"),
        ("account_max_memory_store", "max_memory_store"),
    ):
        if size[account] > size[broker]:
            add(
                (account, broker),
                f"{account} ({_human(size[account])}) is more than the broker's {broker} "
                f"({_human(size[broker])}): nats-server would turn JetStream off for the "
                'fleet\'s account ("insufficient resources") and nothing could be queued',
                f"lower {account} or raise {broker}",
            )
    total = sum(size[k] for k in STREAMS)
    if total > size["account_max_file_store"]:
        add(
            ("account_max_file_store", *STREAMS),
            f"the streams' max bytes add up to {_human(total)} ({' + '.join(STREAMS)}), more "
            f"than account_max_file_store ({_human(size['account_max_file_store'])}): the "
            "broker would refuse to create them",
            "raise account_max_file_store or lower the streams' max bytes",
        )
    return out
