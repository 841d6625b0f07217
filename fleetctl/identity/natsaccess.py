"""Least-privilege NATS permissions for every fleet user, derived from `NatsNames`.

The seed gave every worker `af.>`, `_INBOX.>` and `$JS.>`: any worker could read every other
worker's tasks and replies, delete streams, and publish tasks. Here a worker can only pull
from and ack on its own durable consumer, read its own inbox prefix, publish results, its own
dead letters and status, and answer its own ping. Stream/consumer administration belongs to
the admin user (fleetctl itself); task publishing to the publisher user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetctl.bus.names import JS_API, NatsNames
from nsc import jwt
from nsc.authority import Authority, IssuedUser
from nsc.permissions import Permission, Permissions, ResponsePermission

# Users other than workers. Worker ids are [a-z0-9-] only, so these inbox prefixes (with
# upper case) and user names (workers are `worker-<id>`) can never collide with a worker's.
ADMIN_USER = "fleet-admin"
PUBLISHER_USER = "fleet-publisher"
SYSTEM_USER = "fleet-sys"
DASHBOARD_USER = "fleet-dashboard"
ADMIN_INBOX_PREFIX = "_INBOX_ADMIN"
DASHBOARD_INBOX_PREFIX = "_INBOX_DASHBOARD"
PUBLISHER_INBOX_PREFIX = "_INBOX_PUBLISHER"
SYSTEM_INBOX_PREFIX = "_INBOX_SYS"
# Replies to a ping: one message, within a minute of receiving it.
PING_RESPONSE = ResponsePermission(max_msgs=1, ttl_seconds=60)

ROLE_WORKER, ROLE_PUBLISHER, ROLE_ADMIN, ROLE_SYSTEM = "worker", "publisher", "admin", "system"
ROLE_DASHBOARD = "dashboard"


def worker_user(worker_id: str) -> str:
    """The user (and .creds file) name of a worker."""
    return f"worker-{worker_id}"


def worker_of_user(user: str) -> str | None:
    return user.removeprefix("worker-") if user.startswith("worker-") else None


def _pull_from(stream: str, durable: str) -> list[str]:
    """Fetch, ack/nak/in-progress, and look up one existing durable consumer: nothing else."""
    return [
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
    ]


def _spend(names: NatsNames, keys: str) -> list[str]:
    return [keys, f"{JS_API}.DIRECT.GET.{names.spend_stream}.{keys}"]


def worker_permissions(names: NatsNames, worker_id: str, routes: Sequence[str] = ()) -> Permissions:
    """A worker: its own consumer and the shared queues of the `pick: any` routes it
    belongs to (`routes`, none other), inbox prefix, results, dead letters, status, ping,
    and its own cancel marks (read only)."""
    own_results = names.results_of(worker_id)
    own_leases = names.leases_of(worker_id)
    queues = [p for r in routes for p in _pull_from(names.task_stream, names.route_consumer(r))]
    return Permissions(
        pub=Permission.of(
            allow=[
                *_pull_from(names.task_stream, names.consumer(worker_id)),
                *queues,
                # Is this task's result already stored? Checked before running the CLI again
                # after a redelivery (docs/poller.md): a direct get of the last message on
                # one of its own result subjects, named in the request subject, so the
                # server lets it read back its own results and nobody else's.
                f"{JS_API}.DIRECT.GET.{names.results_stream}.{own_results}",
                # Results only on subjects that carry its own id: attribution is the server's.
                own_results,
                # Its own task leases (poller/lease.py): take, refresh and release are
                # publishes to the key; reading one back is a direct get named by subject.
                own_leases,
                f"{JS_API}.DIRECT.GET.{names.lease_stream}.{own_leases}",
                names.dead(worker_id),
                names.status(worker_id),
                # Budgets (poller/budget.py): its own daily spend and the fleet's, read by a
                # direct get named by subject and added to with compare-and-set publishes.
                *_spend(names, names.spend_of(worker_id)),
                *_spend(names, names.fleet_spend),
                # Cancels (poller/cancel.py): is a task it is about to run cancelled? A direct
                # get of its own mark, named by subject; it cannot write or read others'.
                f"{JS_API}.DIRECT.GET.{names.cancel_stream}.{names.cancel(worker_id, '*')}",
            ]
        ),
        sub=Permission.of(
            allow=[
                f"{names.inbox_prefix(worker_id)}.>",
                names.ping(worker_id),
                # A mark written for one of its tasks while it runs: the publish itself, seen
                # as it is stored (no consumer: nothing to create or to lag).
                names.cancel(worker_id, "*"),
            ],
        ),
        resp=PING_RESPONSE,
    )


def publisher_permissions(names: NatsNames) -> Permissions:
    """The task publisher (`fleetctl task`, `fleetctl.tasks.client`): publish to any worker inbox;
    write and read the task records (whom each task was sent to: the only identity that
    may); read results by direct get (by subject: no consumer of its own, nothing to
    create); look at the workers' consumers (how many tasks wait: `--any`, progress); ping a
    worker (is it running: `task send` warns when not); read the tasks still queued and the
    dead letters, and purge dead letters; write and read cancel marks (`task cancel`); its
    own inbox prefix. No pulls or acks: it never takes a task from a worker, and it cannot
    delete a queued task (a cancelled one is dropped unrun by its worker)."""
    results, tasks, dead = names.results_stream, names.task_stream, names.dead_stream
    records, cancels = names.record_stream, names.cancel_stream
    return Permissions(
        pub=Permission.of(
            allow=[
                names.all_inboxes,
                names.all_route_inboxes,
                # Task records: one key per task id (one token), written with compare-and-set;
                # read one by the subject in the request, or all since a time (`tasks`).
                names.record("*"),
                f"{JS_API}.DIRECT.GET.{records}",
                f"{JS_API}.DIRECT.GET.{records}.{names.record('*')}",
                # Cancel marks (`task cancel`): one key per (worker, task), written and read
                # by subject; only the worker named in the key may read it besides.
                names.cancel("*", "*"),
                f"{JS_API}.DIRECT.GET.{cancels}.{names.cancel('*', '*')}",
                f"{JS_API}.STREAM.MSG.GET.{results}",
                f"{JS_API}.DIRECT.GET.{results}",
                f"{JS_API}.DIRECT.GET.{results}.>",
                f"{JS_API}.CONSUMER.INFO.{tasks}.*",
                # Is a target running? Its poller answers a ping with its status.
                names.ping("*"),
                f"{JS_API}.STREAM.MSG.GET.{tasks}",
                f"{JS_API}.STREAM.MSG.GET.{dead}",
                f"{JS_API}.STREAM.PURGE.{dead}",
                # Judgments (the dashboard writes them): read, for `results`.
                *_read_judgments(names),
            ]
        ),
        # The workers' heartbeats: what a task it waits for is doing now (task send --wait,
        # results --watch); nothing a result does not already say.
        sub=Permission.of(allow=[f"{PUBLISHER_INBOX_PREFIX}.>", names.status("*")]),
    )


def _read_judgments(names: NatsNames) -> list[str]:
    """Read the judgments of one task by the subjects in the request (a batched direct get
    of `<task>.*`), or one judgment by its subject."""
    stream, one = names.judgment_stream, names.judgment("*", "*")
    return [f"{JS_API}.DIRECT.GET.{stream}", f"{JS_API}.DIRECT.GET.{stream}.{one}"]


def dashboard_permissions(names: NatsNames) -> Permissions:
    """`fleetctl dashboard`: read what `tasks`, `results`, `costs` and `status` read (task
    records, results and the tasks still queued by direct or message get, the workers'
    consumers, the fleet's streams and the account's use, spend counters; ping a worker),
    follow new results, records and heartbeats as they are published (core subscriptions:
    no consumer), and write judgments, the only identity that may. No task, no record, no
    result, no ack, no stream or consumer change, no purge."""
    results, tasks, dead = names.results_stream, names.task_stream, names.dead_stream
    records = names.record_stream
    streams = (tasks, results, dead, names.lease_stream, names.spend_stream, records)
    return Permissions(
        pub=Permission.of(
            allow=[
                f"{JS_API}.INFO",
                *(f"{JS_API}.STREAM.INFO.{s}" for s in (*streams, names.judgment_stream)),
                f"{JS_API}.DIRECT.GET.{records}",
                f"{JS_API}.DIRECT.GET.{records}.{names.record('*')}",
                f"{JS_API}.DIRECT.GET.{results}",
                f"{JS_API}.DIRECT.GET.{results}.>",
                f"{JS_API}.STREAM.MSG.GET.{results}",
                f"{JS_API}.CONSUMER.INFO.{tasks}.*",
                f"{JS_API}.STREAM.MSG.GET.{tasks}",
                f"{JS_API}.STREAM.MSG.GET.{dead}",
                f"{JS_API}.DIRECT.GET.{names.spend_stream}.{names.all_spend}",
                names.ping("*"),
                names.judgment("*", "*"),
                *_read_judgments(names),
            ]
        ),
        sub=Permission.of(
            allow=[
                f"{DASHBOARD_INBOX_PREFIX}.>",
                names.all_results,
                names.record("*"),
                names.judgment("*", "*"),
                names.status("*"),
            ]
        ),
    )


def admin_api(names: NatsNames) -> list[str]:
    """Exactly the JetStream API requests fleetctl sends (fleetctl/reconcile/jetstream.py), on the
    fleet's own stream names: is JetStream up, look up / create / update its seven streams
    (tasks, results, dead letters, the leases, spend, task records, judgments and
    cancels buckets),
    list, look up, create, update and delete consumers on the task stream. No stream delete
    or purge, no message get or delete, no direct get but of a spend counter (status; not of
    a task record: status does not need them), no pull (MSG.NEXT), no ephemeral consumers, no
    other stream's consumers."""
    api = [f"{JS_API}.INFO"]
    streams = (names.task_stream, names.results_stream, names.dead_stream, names.lease_stream)
    for stream in (
        *streams,
        names.spend_stream,
        names.record_stream,
        names.judgment_stream,
        names.cancel_stream,
    ):
        api += [f"{JS_API}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
    tasks = names.task_stream
    api += [f"{JS_API}.CONSUMER.{op}.{tasks}" for op in ("LIST", "NAMES")]
    api += [f"{JS_API}.CONSUMER.{op}.{tasks}.*" for op in ("INFO", "CREATE", "DELETE")]
    # The same create with its filter in the subject (how nats-py and the nats CLI send it),
    # only for a filter on a worker inbox.
    api.append(f"{JS_API}.CONSUMER.CREATE.{tasks}.*.{names.all_inboxes}")
    # `fleetctl status`: today's spend against each budget, a direct get of one counter by
    # the subject in the request subject (only the spend bucket's: no task, result or lease).
    api.append(f"{JS_API}.DIRECT.GET.{names.spend_stream}.{names.all_spend}")
    return api


def admin_permissions(names: NatsNames) -> Permissions:
    """fleetctl itself: the JetStream requests it makes (`admin_api`), pings and status of
    workers; its own inbox prefix. Not the task inboxes (it does not publish tasks), not
    MSG.NEXT, `$JS.ACK` or message gets (it does not read or consume work)."""
    return Permissions(
        pub=Permission.of(allow=[*admin_api(names), names.ping("*")]),
        sub=Permission.of(allow=[f"{ADMIN_INBOX_PREFIX}.>", names.status("*")]),
    )


# What fleet-sys may ask every broker of a cluster (each answers for itself): its version
# and uptime (VARZ), its routes (ROUTEZ), its JetStream and the meta group (JSZ), and its
# health (HEALTHZ: JetStream current, which the rolling restart waits for).
CLUSTER_PINGS = ("VARZ", "ROUTEZ", "JSZ", "HEALTHZ")


def system_permissions() -> Permissions:
    """A system-account user that may push account JWT updates (revocations), read each
    broker's state and health (`CLUSTER_PINGS`: counts and names, never a message), and
    remove a departed broker from the cluster's JetStream (`$JS.API.SERVER.REMOVE`)."""
    return Permissions(
        pub=Permission.of(
            allow=[
                "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
                *(f"$SYS.REQ.SERVER.PING.{what}" for what in CLUSTER_PINGS),
                "$JS.API.SERVER.REMOVE",
            ]
        ),
        sub=Permission.of(allow=[f"{SYSTEM_INBOX_PREFIX}.>"]),
    )


# ---- what the CLI calls -----------------------------------------------------------------


@dataclass(frozen=True)
class CredentialRow:
    """One line of `fleetctl creds list`."""

    user: str
    worker: str | None  # None for the publisher/admin/system users
    public_key: str
    issued_at: int
    expires_at: int | None
    revoked: bool
    creds_path: Path


def issue_worker(
    authority: Authority,
    names: NatsNames,
    worker_id: str,
    *,
    ttl: float | None = None,
    routes: Sequence[str] = (),
) -> IssuedUser:
    """A worker's user: changes no account JWT, so the broker config stays as it is."""
    perms = worker_permissions(names, worker_id, routes)
    return authority.issue_user(worker_user(worker_id), perms, ttl=ttl, tags=[ROLE_WORKER])


def _service_users(names: NatsNames) -> list[tuple[str, Permissions, str]]:
    return [
        (PUBLISHER_USER, publisher_permissions(names), ROLE_PUBLISHER),
        (ADMIN_USER, admin_permissions(names), ROLE_ADMIN),
        (DASHBOARD_USER, dashboard_permissions(names), ROLE_DASHBOARD),
    ]


def _issued_permissions(authority: Authority, user: str, account: str | None = None) -> Permissions:
    token = authority.store.read_user(account or authority.services_account, user)
    return Permissions.from_jwt(jwt.decode(token).claims.get("nats", {}))


def system_user_outdated(authority: Authority) -> bool:
    """fleet-sys exists with other permissions than this version grants."""
    sys_account = authority.system_account
    if SYSTEM_USER not in authority.store.users(sys_account):
        return False
    return _issued_permissions(authority, SYSTEM_USER, sys_account) != system_permissions()


def outdated_users(
    authority: Authority,
    names: NatsNames,
    worker_ids: Iterable[str],
    routes: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Live users whose JWT carries other permissions than this version grants (issued
    before a permission change, or before the worker joined or left a shared queue): they
    keep the old ones until re-issued."""
    queues = routes or {}
    wanted = {worker_user(w): worker_permissions(names, w, queues.get(w, ())) for w in worker_ids}
    wanted |= {user: perms for user, perms, _ in _service_users(names)}
    return [
        r.name
        for r in authority.list_users()
        if r.name in wanted
        and not r.revoked
        and _issued_permissions(authority, r.name) != wanted[r.name]
    ]


def ensure_fleet_users(
    authority: Authority,
    names: NatsNames,
    worker_ids: Iterable[str],
    *,
    ttl: float | None = None,
    routes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, IssuedUser]:
    """Issue whatever is missing (or revoked): each worker, the publisher, the admin, and the
    system user that pushes revocations. Returns only what was issued now, by user name.

    The publisher and admin (creds on this machine only) are also rotated when their
    permissions are outdated: new key, old key revoked in the account JWT, which the next
    apply puts in the broker config. Workers with outdated permissions are left to
    `creds rotate` (their new creds must reach the host first); the plan warns."""
    existing = {r.name: r for r in authority.list_users()}
    wanted: list[tuple[str, Permissions, str]] = [
        (worker_user(w), worker_permissions(names, w, (routes or {}).get(w, ())), ROLE_WORKER)
        for w in worker_ids
    ]
    wanted += _service_users(names)
    issued: dict[str, IssuedUser] = {}
    for user, perms, role in wanted:
        if user not in existing or existing[user].revoked:
            issued[user] = authority.issue_user(user, perms, ttl=ttl, tags=[role])
        elif role != ROLE_WORKER and _issued_permissions(authority, user) != perms:
            issued[user], _ = authority.rotate_user(user, perms)
    sys_account = authority.system_account
    if SYSTEM_USER not in authority.store.users(sys_account):
        issued[SYSTEM_USER] = authority.issue_user(
            SYSTEM_USER, system_permissions(), account=sys_account, tags=[ROLE_SYSTEM]
        )
    elif system_user_outdated(authority):
        issued[SYSTEM_USER], _ = authority.rotate_user(
            SYSTEM_USER, system_permissions(), account=sys_account
        )
    return issued


def credential_rows(authority: Authority) -> list[CredentialRow]:
    """Every user of the services account: worker, public key, issued, expires, revoked."""
    return [
        CredentialRow(
            r.name,
            worker_of_user(r.name),
            r.public_key,
            r.issued_at,
            r.expires_at,
            r.revoked,
            r.creds_path,
        )
        for r in authority.list_users()
    ]
