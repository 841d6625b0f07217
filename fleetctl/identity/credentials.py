"""The fleet's NATS identities: the glue between a Fleet and the nsc store.

fleetctl decides who needs which user (from the fleet); `nsc/` keeps keys, JWTs and creds.
Nothing here prints or logs a secret: creds travel as bytes into sensitive FileSpecs only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleetctl.bus.names import NatsNames
from fleetctl.bus.resources import account_limits
from fleetctl.config.model import Fleet
from fleetctl.config.routes import queues_of
from fleetctl.identity import natsaccess
from nsc import hygiene
from nsc.authority import Authority, IssuedUser
from nsc.backup import backup_status
from nsc.store import METADATA_FILE, NscDirs, OperatorStore, StoreError

PENDING_KEY = "fleetctl_pending_revocations"


def dirs_for(fleet: Fleet) -> NscDirs:
    default = NscDirs.default()
    return NscDirs(fleet.creds.stores_dir or default.stores, fleet.creds.keys_dir or default.keys)


def exists(fleet: Fleet) -> bool:
    return fleet.creds.operator in OperatorStore.operators(dirs_for(fleet).stores)


def load(fleet: Fleet) -> Authority | None:
    """The fleet's authority, or None before `fleetctl creds init`."""
    return Authority.load(dirs_for(fleet), fleet.creds.operator) if exists(fleet) else None


def init(fleet: Fleet) -> tuple[Authority, bool]:
    """Create the operator, accounts and service users once; later calls change nothing."""
    created = not exists(fleet)
    authority = Authority.open(dirs_for(fleet), fleet.creds.operator)
    natsaccess.ensure_fleet_users(authority, _names(fleet), [], ttl=None)
    return authority, created


def ensure_system_user(fleet: Fleet) -> bool:
    """fleet-sys with this version's permissions (a cluster's rollout and status read each
    broker's health through it): re-issued when outdated, the old key revoked. Whether it
    was."""
    authority = load(fleet)
    if authority is None or not natsaccess.system_user_outdated(authority):
        return False
    natsaccess.ensure_fleet_users(authority, _names(fleet), [], ttl=None)
    return True


def services_account_jwt(fleet: Fleet, authority: Authority, base: str | None = None) -> str:
    """The services account JWT the broker should have: `base` (default the stored one)
    with the `nats:` block's JetStream limits. Derived, not stored, so it follows fleet.yaml
    and the same inputs always give the same JWT."""
    return authority.with_jetstream_limits(
        authority.services_account, account_limits(fleet.nats, fleet.replicas), base=base
    )


def server_config(fleet: Fleet, authority: Authority, base: str | None = None) -> str:
    """The broker's auth block, with the fleet's account JWT (`services_account_jwt`)."""
    token = services_account_jwt(fleet, authority, base)
    return authority.server_config({authority.services_account: token})


def _names(fleet: Fleet) -> NatsNames:
    return NatsNames(fleet.nats.subject_prefix)


def _queues(fleet: Fleet) -> dict[str, tuple[str, ...]]:
    """Each worker's shared queues (`pick: any` routes): its credentials name them."""
    return queues_of(fleet)


def enabled_ids(fleet: Fleet) -> list[str]:
    return [w.id for w in fleet.workers if w.enabled]


def issue(fleet: Fleet, authority: Authority, worker_ids: list[str]) -> dict[str, IssuedUser]:
    """Issue what is missing or revoked for these workers; existing valid users are kept.
    A damaged .creds file is written again from the store, or, when the store lacks its
    seed, replaced by a new key (the old key revoked: the broker config changes)."""
    issued = natsaccess.ensure_fleet_users(
        authority, _names(fleet), worker_ids, ttl=fleet.creds.ttl, routes=_queues(fleet)
    )
    issued = {u: i for u, i in issued.items() if natsaccess.worker_of_user(u) in worker_ids}
    for wid in worker_ids:
        user = natsaccess.worker_user(wid)
        if user in issued or hygiene.creds_problem(authority, user) is None:
            continue
        if not authority.rewrite_creds(user):
            perms = natsaccess.worker_permissions(_names(fleet), wid, _queues(fleet).get(wid, ()))
            issued[user], _ = authority.rotate_user(user, perms, ttl=fleet.creds.ttl)
    return issued


def damaged(authority: Authority, worker_ids: list[str]) -> list[str]:
    """Workers with a user in the store whose .creds file is missing or unusable."""
    known = set(authority.store.users(authority.services_account))
    return [
        w
        for w in worker_ids
        if natsaccess.worker_user(w) in known
        and hygiene.creds_problem(authority, natsaccess.worker_user(w)) is not None
    ]


def store_problems(fleet: Fleet, authority: Authority) -> list[hygiene.Problem]:
    """What is unsafe or broken in the store and keystore, each with its fix."""
    known = set(authority.store.users(authority.services_account))
    users = {
        natsaccess.worker_user(w): f"fleetctl creds issue --worker {w}"
        for w in enabled_ids(fleet)
        if natsaccess.worker_user(w) in known
    }
    return hygiene.check(authority, users)


def renew_expiring(fleet: Fleet, authority: Authority, worker_ids: list[str]) -> list[str]:
    """Re-issue the workers whose credentials expire within `expiry_warning` (or have):
    what `apply --issue-creds` does so a fleet with a `ttl` never runs out."""
    soon = {r.name for r in authority.expiring(fleet.creds.expiry_warning)}
    renewed = []
    for wid in worker_ids:
        user = natsaccess.worker_user(wid)
        if user in soon:
            routes = _queues(fleet).get(wid, ())
            natsaccess.issue_worker(
                authority, _names(fleet), wid, ttl=fleet.creds.ttl, routes=routes
            )
            renewed.append(user)
    return renewed


def revoke(authority: Authority, worker_id: str) -> str:
    """Revoke the worker's user; returns the re-signed account JWT to push to the broker."""
    return authority.revoke_user(natsaccess.worker_user(worker_id))


def start_rotation(fleet: Fleet, authority: Authority, worker_id: str) -> IssuedUser:
    """New key first; the old one is revoked by `finish_rotation` once the new one is live."""
    with authority.store.locked():
        user = natsaccess.worker_user(worker_id)
        old = authority.user_record(user)
        pending = pending_rotations(authority)  # a broken record stops before the new key
        new, _ = authority.rotate_user(
            user,
            natsaccess.worker_permissions(
                _names(fleet), worker_id, _queues(fleet).get(worker_id, ())
            ),
            ttl=fleet.creds.ttl,
            revoke_old=False,
        )
        pending.setdefault(worker_id, []).append(
            [old.public_key, max(int(time.time()), old.issued_at + 1)]
        )
        authority.store.update_metadata(**{PENDING_KEY: pending})
        return new


def pending_rotations(authority: Authority) -> dict[str, list[list[object]]]:
    """Worker id -> [[replaced public key, revoke-at time], ...], as start_rotation wrote it."""
    pending = authority.store.metadata().get(PENDING_KEY) or {}
    well_formed = isinstance(pending, dict) and all(
        isinstance(entries, list)
        and all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and type(e[1]) is int
            for e in entries
        )
        for entries in pending.values()
    )
    if not well_formed:
        raise StoreError(
            f"{authority.store.dir / METADATA_FILE}: {PENDING_KEY} is not "
            "{worker: [[public key, time], ...]}",
            "restore it from the file `fleetctl creds backup` wrote",
        )
    return dict(pending)


def finish_rotation(authority: Authority, worker_id: str) -> str | None:
    """Revoke the keys a rotation replaced; returns the account JWT, or None if none pending."""
    with authority.store.locked():
        pending = pending_rotations(authority)
        old = pending.pop(worker_id, [])
        if not old:
            return None
        token = authority.revoke_keys(
            authority.services_account, [(str(pub), int(str(at))) for pub, at in old]
        )
        for pub, _ in old:
            authority.keystore.remove(str(pub))
        authority.store.update_metadata(**{PENDING_KEY: pending})
        return token


@dataclass(frozen=True)
class Revocation:
    """A user whose worker is gone from the fleet (removed or disabled): apply revokes it."""

    worker: str
    user: str
    public_key: str
    at: int


@dataclass(frozen=True)
class PlanInputs:
    """What the plan needs from the store: the broker's auth block and each worker's creds.

    With revocations pending, `auth_config` already carries the account JWT that revokes them,
    signed with the fixed `revoked_at`, so apply stores and pushes exactly what the plan showed.
    """

    auth_config: str | None
    creds: Mapping[str, bytes] = field(repr=False)  # secrets: never in a repr or traceback
    warnings: tuple[str, ...]
    missing: tuple[str, ...]  # enabled workers without valid creds
    revocations: tuple[Revocation, ...] = ()
    revoked_at: int = 0


def commit_revocations(fleet: Fleet, revocations: Sequence[Revocation], revoked_at: int) -> None:
    """Store the revoking account JWT the plan was made with (signed at `revoked_at`), and
    drop the revoked keys."""
    authority = load(fleet)
    if authority is None or not revocations:
        return
    with authority.store.locked():
        account = authority.services_account
        authority.revoke_keys(
            account,
            [(r.public_key, r.at) for r in revocations],
            issued_at=revoked_at,
        )
        for r in revocations:
            authority.keystore.remove(r.public_key)
            authority.creds_path(r.user, account).unlink(missing_ok=True)


def plan_inputs(fleet: Fleet, *, now: float | None = None) -> PlanInputs:
    authority = load(fleet)
    wanted = enabled_ids(fleet)
    if authority is None:
        warning = (
            "no NATS operator yet: the broker would accept any client. "
            "Run `fleetctl creds init && fleetctl creds issue --all`."
        )
        return PlanInputs(None, {}, (warning,), tuple(wanted))
    users = {r.name: r for r in authority.list_users()}
    creds: dict[str, bytes] = {}
    warnings: list[str] = []
    moment = time.time() if now is None else now
    for wid in wanted:
        record = users.get(natsaccess.worker_user(wid))
        if record is None or record.revoked or not record.creds_path.exists():
            continue
        damage = hygiene.creds_problem(authority, record.name, record=record)
        if damage is not None:
            warnings.append(f"credentials of worker {wid}: {damage} ({record.creds_path})")
            continue
        if record.expires_at is not None and record.expires_at <= moment:
            warnings.append(f"credentials of worker {wid} have expired: rotate them")
            continue
        if record.expires_within(fleet.creds.expiry_warning, moment):
            warnings.append(f"credentials of worker {wid} expire soon: rotate them")
        creds[wid] = record.creds_path.read_bytes()
    missing = tuple(w for w in wanted if w not in creds)
    stamp = int(moment)
    revocations = tuple(
        Revocation(worker, name, record.public_key, max(stamp, record.issued_at + 1))
        for name, record in sorted(users.items())
        if (worker := natsaccess.worker_of_user(name))
        and not record.revoked
        and worker not in wanted
    )
    outdated = natsaccess.outdated_users(authority, _names(fleet), creds, _queues(fleet))
    if outdated:
        warnings.append(
            f"credentials issued with outdated NATS permissions: {', '.join(outdated)}. "
            "Rotate each worker (`fleetctl creds rotate --worker ID`, apply, then `--finish`); "
            "`fleetctl creds init` re-issues the publisher and admin."
        )
    if missing:
        warnings.append(
            f"no valid credentials for {', '.join(missing)}: run `fleetctl creds issue --all`"
        )
    if fleet.is_cluster and natsaccess.system_user_outdated(authority):
        warnings.append(
            f"{natsaccess.SYSTEM_USER} was issued before it could read the brokers' health: "
            "`fleetctl apply` re-issues it before it restarts any broker"
        )
    problems = hygiene.mode_problems([authority.dirs.stores, authority.keystore.root])
    warnings += [str(p) for p in problems + hygiene.signing_key_problems(authority)]
    if backup_status(authority).needed:
        warnings.append(
            "THE OPERATOR AND ACCOUNT KEYS HAVE NO BACKUP. Losing them means re-issuing every "
            "credential. Run `fleetctl creds backup --out FILE` and keep FILE offline."
        )
    token = None
    if revocations:
        token = authority.revoke_keys(
            authority.services_account,
            [(r.public_key, r.at) for r in revocations],
            issued_at=stamp,
            write=False,
        )
    auth_config = server_config(fleet, authority, token)
    return PlanInputs(auth_config, creds, tuple(warnings), missing, revocations, stamp)
