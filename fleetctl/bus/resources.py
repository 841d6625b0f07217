"""The JetStream streams and consumers a fleet needs, as pure data.

`api_config()` gives the exact JSON the JetStream API takes (durations in nanoseconds), so
fleetctl can create and diff them and tests can declare them the same way. Each is a bus
resource kind of the plan (fleetctl/reconcile/resources/base.py, `BusKind`): besides its key,
fingerprint and description, it says which API request observes it, how the reply reads as
its fingerprint, and which request makes, updates or deletes it (reconcile/jetstream.py
sends them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from fleetctl.bus.names import JS_API, NatsNames
from fleetctl.config.schema import MAX_PAYLOAD, NatsSettings
from nsc.claims import JetStreamLimits

_NS = 1_000_000_000
TASK_MAX_BYTES = MAX_PAYLOAD
# A stream this full is shown in the plan's warnings.
NEAR_LIMIT = 0.8
# A lease is a few hundred bytes of JSON; it is rewritten every few seconds while a task runs,
# and each write carries its own TTL: the bucket's max_age only bounds a key written without.
LEASE_MAX_MSG_SIZE = 4096
LEASE_MAX_AGE = 86400
LEASE_DUPLICATE_WINDOW = 60
# A spend counter is a few dozen bytes, one key per worker and per day (and one for the fleet):
# yesterday's keys go by themselves.
SPEND_MAX_AGE = 2 * 86400
# A task record (fleetctl/tasks/record.py) is kept twice the results' max_age, so it outlives
# every result of its task: a task may wait in the queue up to max_age before it runs, and
# its result is then kept max_age from when it was stored.
RECORD_AGE_FACTOR = 2
# Stream settings that copy messages to other subjects or streams: with them, whoever may
# update a stream could read every task (republish to its inbox) or inject tasks (a stream
# that republishes into a worker's inbox). fleetctl never declares them.
COPYING_STREAM_KEYS = ("republish", "sources", "mirror")
# A push consumer delivers to any subject its config names, past subscribe permissions.
PUSH_CONSUMER_KEYS = ("deliver_subject",)
# Settings fleetctl never declares but whoever holds the admin's creds can set with an update
# (permissions cannot see a request's body): copies of a stream's messages elsewhere
# (republish to the admin's inbox, a source transformed into a worker's inbox), subjects
# rewritten, headers that purge or rewrite messages; a push consumer's deliver subject.
UNDECLARED = {
    "stream": (
        *COPYING_STREAM_KEYS,
        "subject_transform",
        "allow_rollup_hdrs",
        "allow_msg_ttl",
        "allow_msg_counter",
        "allow_atomic",
        "allow_msg_schedules",
    ),
    "consumer": PUSH_CONSUMER_KEYS,
}
# Consumers fleetctl makes on the task stream (and removes when nothing needs them).
OWNED_CONSUMERS = (NatsNames.consumer(""), NatsNames.route_consumer(""))
# An API request: its subject, and its JSON body (None: empty).
Request = tuple[str, dict[str, Any] | None]


class DeclarationError(ValueError):
    """A stream or consumer config fleetctl refuses to send to the broker."""


def declarable(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """`config` if fleetctl may declare it; refuses copying streams, push consumers, and a
    KV bucket that allows rollups or purges."""
    refused = COPYING_STREAM_KEYS if kind == "stream" else PUSH_CONSUMER_KEYS
    bad = [k for k in refused if config.get(k)]
    name = config.get("name") or config.get("durable_name") or "?"
    if bad:
        raise DeclarationError(f"{kind} {name}: fleetctl never declares {', '.join(bad)}")
    if kind == "stream" and is_kv_bucket(config):
        loose = [k for k in KV_GUARDS if config.get(k) != KV_BUCKET[k]]
        if loose:
            raise DeclarationError(
                f"stream {name}: a KV bucket is always declared with "
                + ", ".join(f"{k}: {str(KV_BUCKET[k]).lower()}" for k in loose)
            )
    return config


def fingerprint_of(
    server_config: dict[str, Any], wanted: dict[str, Any], kind: str = "stream"
) -> dict[str, object]:
    """The server's config restricted to the keys fleetctl sets (it fills in many defaults),
    and any setting fleetctl never declares that is on: the plan shows that as an update,
    and apply, sending only the declared config, turns it off (docs/security.md)."""
    found = {k: server_config.get(k) for k in wanted}
    found |= {
        k: server_config[k] for k in UNDECLARED[kind] if server_config.get(k) and k not in wanted
    }
    return found


def is_kv_bucket(config: dict[str, Any]) -> bool:
    """A KV bucket by the KV clients' conventions: stream `KV_<bucket>`, subjects `$KV.`."""
    subjects = config.get("subjects") or []
    return str(config.get("name", "")).startswith("KV_") or any(
        str(s).startswith("$KV.") for s in subjects
    )


@dataclass(frozen=True)
class StreamSpec:
    """A stream (a KV bucket is one too: `kv_bucket`). The plan's `stream` kind
    (fleetctl/reconcile/resources/base.py, `BusKind`)."""

    kind: ClassVar[str] = "stream"

    name: str
    subjects: tuple[str, ...]
    retention: str
    max_age: int
    duplicate_window: int
    max_msg_size: int = TASK_MAX_BYTES
    storage: str = "file"
    # One message per subject (last one wins), and reads by subject: the results stream.
    max_msgs_per_subject: int = -1
    allow_direct: bool = False
    max_bytes: int = -1
    # "new": refuse a publish once full (tasks); "old": drop the oldest (results, dead).
    discard: str = "old"
    # A KV bucket: per-message TTLs; no rollups, no purges, no message deletes by API.
    kv_bucket: bool = False
    # Copies on as many brokers (a cluster's `nats.replicas`): written while a majority is up.
    replicas: int = 1

    @property
    def key(self) -> str:
        return f"stream {self.name}"

    def fingerprint(self) -> dict[str, object]:
        return self.api_config()

    def describe(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        many = len(self.subjects) > 2  # the task stream: one inbox per worker
        subjects = f"{len(self.subjects)} subjects" if many else " ".join(self.subjects)
        return self.name, (("subjects", subjects), ("retention", self.retention))

    def info_request(self) -> Request:
        """What observes it: its info (an error reply: there is no such stream)."""
        return f"{JS_API}.STREAM.INFO.{self.name}", None

    def read(self, info: dict[str, Any]) -> dict[str, object]:
        """Its fingerprint on the server, from the info reply."""
        return fingerprint_of(info["config"], self.api_config(), self.kind)

    def write_request(self, action: str, config: dict[str, Any]) -> Request:
        """What creates it, or updates it (`action`: create, update), to `config`: its
        `api_config()` once checked `declarable`."""
        verb = "CREATE" if action == "create" else "UPDATE"
        return f"{JS_API}.STREAM.{verb}.{self.name}", config

    @staticmethod
    def delete_request(name: str) -> Request:
        return f"{JS_API}.STREAM.DELETE.{name}", None

    @staticmethod
    def apply_rank(action: str) -> int:
        """Made before the consumers it holds, deleted after every other bus change."""
        return 3 if action == "delete" else 1

    def api_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subjects": list(self.subjects),
            "retention": self.retention,
            "storage": self.storage,
            "max_age": self.max_age * _NS,
            "duplicate_window": self.duplicate_window * _NS,
            "max_msg_size": self.max_msg_size,
            "max_msgs_per_subject": self.max_msgs_per_subject,
            "allow_direct": self.allow_direct,
            "max_bytes": self.max_bytes,
            "discard": self.discard,
            "num_replicas": self.replicas,
        } | (KV_BUCKET if self.kv_bucket else {})


# Every KV bucket's shape beyond the plain stream keys (only sent for a bucket, so the other
# streams' fingerprints stay as they were). Unlike `nats kv add`: no rollup headers and purge
# denied, because a `Nats-Rollup: all` published on any key a worker may write purges the
# whole bucket (every worker's leases, the fleet's spend). A key is still deleted by a
# `KV-Operation: DEL` marker, an ordinary message on that key; per-message TTLs for leases.
# nats-server takes both changes on the update of an existing bucket, and never lets
# `deny_purge` be turned off again (docs/security.md).
KV_BUCKET = {
    "allow_rollup_hdrs": False,
    "deny_delete": True,
    "deny_purge": True,
    "allow_msg_ttl": True,
}
# What `declarable` insists on for any KV bucket, whoever built its config.
KV_GUARDS = ("allow_rollup_hdrs", "deny_delete", "deny_purge")


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer on the task stream. The plan's `consumer` kind."""

    kind: ClassVar[str] = "consumer"

    stream: str
    durable: str
    filter_subject: str
    ack_wait: int
    max_deliver: int
    max_ack_pending: int

    @property
    def key(self) -> str:
        return f"consumer {self.stream}/{self.durable}"

    def fingerprint(self) -> dict[str, object]:
        return self.api_config()

    def describe(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        name = f"{self.stream}/{self.durable}"
        return name, (("filter", self.filter_subject), ("ack_wait", f"{self.ack_wait}s"))

    @staticmethod
    def list_request(stream: str, offset: int) -> Request:
        """What observes them: a page of every consumer on `stream` (fleetctl's, and any
        other, which is how orphans are found)."""
        return f"{JS_API}.CONSUMER.LIST.{stream}", {"offset": offset}

    @staticmethod
    def key_of(stream: str, durable: str) -> str:
        return f"consumer {stream}/{durable}"

    @staticmethod
    def read(config: dict[str, Any], wanted: ConsumerSpec | None) -> dict[str, object]:
        """A listed consumer's fingerprint: in the terms of the one fleetctl wants under its
        name, if any (else its whole config)."""
        declared = wanted.api_config() if wanted is not None else config
        return fingerprint_of(config, declared, ConsumerSpec.kind)

    @staticmethod
    def owned(durable: str) -> bool:
        """One fleetctl made (a worker's or a route's), so removed once nothing needs it."""
        return durable.startswith(OWNED_CONSUMERS)

    def write_request(self, action: str, config: dict[str, Any]) -> Request:
        """What creates it, or updates it (`action`: create, update), to `config`: its
        `api_config()` once checked `declarable`."""
        body = {"stream_name": self.stream, "config": config}
        if action == "update":
            body["action"] = "update"
        return f"{JS_API}.CONSUMER.CREATE.{self.stream}.{self.durable}", body

    @staticmethod
    def delete_request(name: str) -> Request:
        """`name` as the plan shows it: `<stream>/<durable>`."""
        stream, _, durable = name.partition("/")
        return f"{JS_API}.CONSUMER.DELETE.{stream}.{durable}", None

    @staticmethod
    def apply_rank(action: str) -> int:
        """A departed consumer goes first (the task stream then stops taking its inbox); the
        others are made once their stream is."""
        return 0 if action == "delete" else 2

    def api_config(self) -> dict[str, Any]:
        return {
            "durable_name": self.durable,
            "filter_subject": self.filter_subject,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": self.ack_wait * _NS,
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "replay_policy": "instant",
        }


def streams(
    settings: NatsSettings, inboxes: Sequence[str] | None = None, replicas: int = 1
) -> list[StreamSpec]:
    """Tasks (work queue: a task is gone once acked), results, dead letters, the KV
    bucket of task leases (one key per (worker, task), each write with its TTL), the KV
    bucket of spend counters for budgets (one key per worker and day, one per day for the
    fleet; poller/budget.py), the KV bucket of task records (one key per task id,
    written by the publisher when it sends a task; fleetctl/tasks/record.py), and the KV bucket
    of judgments (one key per task and worker, written from the dashboard; kept as long as
    the records), and the KV bucket of cancel marks (one key per (worker, task) to cancel,
    written by the publisher, read by that worker only; fleetctl/tasks/cancelling.py).

    Tasks: with `inboxes` (the fleet's enabled workers' inboxes and its route queues) the
    task stream captures exactly those subjects, so a task published to any other worker's
    inbox is refused at once (no stream answers: the publisher sees an error) instead of
    sitting in the queue until `max_age` and running when a worker of that name returns.
    Without, every inbox (what tests that declare a bare bus use).

    Results: one per (worker, task) subject, the last one kept, so a retried publish or a
    corrected task replaces the earlier result and no Nats-Msg-Id (stream-wide, so
    forgeable) is needed; direct gets by subject, so a worker can be allowed to read
    back only its own subjects (docs/messages.md).

    Each is kept on `replicas` brokers (`Fleet.replicas`), KV buckets included: a lease or a
    spend counter lost with one broker would let a task run twice or a budget overrun."""
    n = NatsNames(settings.subject_prefix)
    age, window, size = settings.max_age, settings.duplicate_window, settings.max_msg_size
    return [
        replace(s, replicas=replicas) for s in _streams(n, settings, inboxes, age, window, size)
    ]


def _streams(
    n: NatsNames,
    settings: NatsSettings,
    inboxes: Sequence[str] | None,
    age: int,
    window: int,
    size: int,
) -> list[StreamSpec]:
    return [
        StreamSpec(
            n.task_stream,
            tuple(inboxes) if inboxes else (n.all_inboxes, n.all_route_inboxes),
            "workqueue",
            age,
            window,
            size,
            max_bytes=settings.tasks_max_bytes,
            discard="new",  # a full queue refuses new tasks; dropping queued ones loses work
        ),
        StreamSpec(
            n.results_stream,
            (n.all_results,),
            "limits",
            age,
            window,
            size,
            max_msgs_per_subject=1,
            allow_direct=True,
            max_bytes=settings.results_max_bytes,
        ),
        StreamSpec(
            n.dead_stream,
            (n.all_dead,),
            "limits",
            age,
            window,
            size,
            # `<prefix>.dead.<worker>`: a per-subject cap is a per-worker cap.
            max_msgs_per_subject=settings.dead_letters_per_worker,
            max_bytes=settings.dead_max_bytes,
        ),
        # Full (a worker flooding its own keys): the oldest keys go, and their holders
        # see `lease_lost`; refusing new ones instead would stop every worker's tasks.
        _kv_bucket(n.lease_stream, n.all_leases, LEASE_MAX_AGE, settings.leases_max_bytes),
        _kv_bucket(n.spend_stream, n.all_spend, SPEND_MAX_AGE, settings.spend_max_bytes),
        _kv_bucket(
            n.record_stream,
            n.all_records,
            RECORD_AGE_FACTOR * age,
            settings.records_max_bytes,
            max_msg_size=size,
        ),
        _kv_bucket(
            n.judgment_stream,
            n.all_judgments,
            RECORD_AGE_FACTOR * age,
            settings.judgments_max_bytes,
        ),
        _kv_bucket(
            n.cancel_stream,
            n.all_cancels,
            RECORD_AGE_FACTOR * age,  # as long as the record: a queued task waits max_age
            settings.cancels_max_bytes,
        ),
    ]


def _kv_bucket(
    name: str, subjects: str, max_age: int, max_bytes: int, max_msg_size: int = LEASE_MAX_MSG_SIZE
) -> StreamSpec:
    """A KV bucket's stream: one value per key (the last write), read by subject, per-message
    TTLs; what every bucket shares is said here once."""
    return StreamSpec(
        name,
        (subjects,),
        "limits",
        max_age,
        LEASE_DUPLICATE_WINDOW,
        max_msg_size,
        max_msgs_per_subject=1,
        allow_direct=True,
        max_bytes=max_bytes,
        kv_bucket=True,
    )


def account_limits(settings: NatsSettings, replicas: int = 1) -> JetStreamLimits:
    """The fleet account's JetStream limits (in its account JWT): the broker refuses a
    stream whose max bytes no longer fit, so one stream cannot take the account's store.
    nats.account_max_*_store bound one copy of the data: a cluster counts a stream's max
    bytes once per replica against the account's limit, so the JWT holds them times
    `replicas`."""
    return JetStreamLimits(
        mem_storage=settings.account_max_memory_store * replicas,
        disk_storage=settings.account_max_file_store * replicas,
    )


def near_limit_warning(info: dict[str, Any], threshold: float = NEAR_LIMIT) -> str | None:
    """A plan warning for a stream (`STREAM.INFO` reply) at `threshold` of its max bytes or
    messages, else None. Pure: the plan passes what the bus client (fleetctl/bus) observed."""
    config, state = info.get("config") or {}, info.get("state") or {}
    name = config.get("name", "?")
    for what, limit_key, used_key in (
        ("bytes", "max_bytes", "bytes"),
        ("messages", "max_msgs", "messages"),
    ):
        limit, used = int(config.get(limit_key) or -1), int(state.get(used_key) or 0)
        if limit > 0 and used >= threshold * limit:
            full = "refuses new messages" if config.get("discard") == "new" else "drops its oldest"
            return (
                f"stream {name} is at {used * 100 // limit}% of its max {what} "
                f"({used} of {limit}); once full it {full}"
            )
    return None


def worker_consumer(settings: NatsSettings, worker_id: str, concurrency: int) -> ConsumerSpec:
    """One durable pull consumer per worker, filtered on its own inbox."""
    n = NatsNames(settings.subject_prefix)
    return _task_consumer(settings, n.consumer(worker_id), n.inbox(worker_id), concurrency)


def _task_consumer(
    settings: NatsSettings, durable: str, subject: str, concurrency: int
) -> ConsumerSpec:
    """A durable pull consumer on the task stream: explicit acks, redelivered after
    ack_wait up to max_deliver, at most `concurrency` tasks in flight."""
    return ConsumerSpec(
        stream=NatsNames(settings.subject_prefix).task_stream,
        durable=durable,
        filter_subject=subject,
        ack_wait=settings.ack_wait,
        max_deliver=settings.max_deliver,
        max_ack_pending=concurrency,
    )


def route_consumer(settings: NatsSettings, route: str, concurrency: int) -> ConsumerSpec:
    """A `pick: any` route's shared queue: one durable pull consumer its members all pull
    from; the first free one takes each task, and a task whose worker dies is delivered to
    another after ack_wait. `concurrency`: the members' together."""
    n = NatsNames(settings.subject_prefix)
    return _task_consumer(settings, n.route_consumer(route), n.route_inbox(route), concurrency)


def fleet_resources(
    settings: NatsSettings,
    workers: Iterable[tuple[str, int]],
    queues: Iterable[str] = (),
    replicas: int = 1,
) -> list[StreamSpec | ConsumerSpec]:
    """Everything the broker must have for these (worker_id, concurrency) pairs and these
    shared route queues; the task stream takes tasks for exactly them."""
    n = NatsNames(settings.subject_prefix)
    pairs = list(workers)
    inboxes = [n.inbox(wid) for wid, _ in pairs] + [n.route_inbox(q) for q in queues]
    out: list[StreamSpec | ConsumerSpec] = list(streams(settings, inboxes or None, replicas))
    out += [worker_consumer(settings, wid, conc) for wid, conc in pairs]
    return out
