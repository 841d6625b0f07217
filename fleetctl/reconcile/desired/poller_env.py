"""The poller's environment: what every poller reads (its unit's Environment= lines, and
`fleetctl up`'s local pollers, paths remapped: fleetctl/local/workers.py)."""

from __future__ import annotations

import json

from fleetctl import layout
from fleetctl.bus.names import NatsNames
from fleetctl.config.model import Fleet, Worker
from fleetctl.config.routes import queues_of
from fleetctl.config.tunnels import nats_urls
from fleetctl.reconcile import backend_units as backends


def poller_environment(fleet: Fleet, worker: Worker) -> list[tuple[str, str]]:
    """What every poller reads, whatever its backend (docs/poller.md has the contract)."""
    names = NatsNames(fleet.nats.subject_prefix)
    urls = nats_urls(fleet, fleet.host(worker.host))
    return [
        ("WORKER_ID", worker.id),
        ("LLM", worker.llm),
        ("MODEL_BACKEND", worker.backend),
        # One URL per broker it reaches (a cluster's: its own, then its tunnels).
        ("NATS_URL", ",".join(urls)),
        ("NATS_CREDS", layout.creds_path(worker.id)),
        ("NATS_SUBJECT_PREFIX", fleet.nats.subject_prefix),
        ("NATS_TASK_STREAM", names.task_stream),
        ("NATS_CONSUMER", names.consumer(worker.id)),
        ("NATS_RESULTS_STREAM", names.results_stream),
        ("NATS_DEAD_STREAM", names.dead_stream),
        ("NATS_LEASE_BUCKET", names.lease_bucket),
        ("NATS_INBOX_PREFIX", names.inbox_prefix(worker.id)),
        ("CONCURRENCY", str(worker.concurrency)),
        ("TASK_TIMEOUT", str(worker.task_timeout)),
        ("DRAIN_TIMEOUT", str(worker.drain_timeout)),
        ("STALL_TIMEOUT", str(worker.stall_timeout)),
        ("HOME", worker.work_base),
        ("WORK_BASE", worker.work_base),
        *([("REPOS_FILE", layout.repos_file(worker.id))] if worker.repos else []),
        *([("PRICE_USD_PER_MTOK", worker.price.render())] if worker.price else []),
        *([] if worker.trusts_reported_cost else [("REPORTED_COST", "ignore")]),
        *_budget_environment(names, worker),
        *_labels_environment(worker),
        *_queues_environment(fleet, worker),
    ]


def _queues_environment(fleet: Fleet, worker: Worker) -> list[tuple[str, str]]:
    """The shared queues (`pick: any` routes) the poller pulls from besides its inbox."""
    routes = queues_of(fleet).get(worker.id, ())
    if not routes:
        return []
    names = NatsNames(fleet.nats.subject_prefix)
    return [("NATS_ROUTE_CONSUMERS", ",".join(names.route_consumer(r) for r in routes))]


def _labels_environment(worker: Worker) -> list[tuple[str, str]]:
    """The labels, for the poller to put in heartbeats and results (none: no variable)."""
    if not worker.labels:
        return []
    return [
        ("WORKER_LABELS", json.dumps(dict(sorted(worker.labels.items())), separators=(",", ":")))
    ]


def _budget_environment(names: NatsNames, worker: Worker) -> list[tuple[str, str]]:
    """Only for a worker with a budget (its own or the fleet's): poller/budget.py."""
    if worker.daily_usd is None and worker.fleet_daily_usd is None:
        return []
    env = [("NATS_SPEND_BUCKET", names.spend_bucket)]
    if worker.daily_usd is not None:
        env.append(("BUDGET_DAILY_USD", f"{worker.daily_usd:g}"))
    if worker.fleet_daily_usd is not None:
        env.append(("BUDGET_FLEET_DAILY_USD", f"{worker.fleet_daily_usd:g}"))
    return env


def poller_unit_environment(fleet: Fleet, worker: Worker) -> list[tuple[str, str]]:
    """Every Environment= line of the worker's unit: the poller's and its backend's
    (`fleetctl up` starts the local poller with exactly these, paths remapped)."""
    return [*poller_environment(fleet, worker), *backends.unit_environment(worker)]
