"""`fleetctl creds ...`: the fleet's NATS identities (operator, accounts, users)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table

from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.groups import SuggestingGroup
from fleetctl.cli.options import force_option, json_option, one_worker_option, server_option
from fleetctl.config.model import Fleet
from fleetctl.config.pydantic_errors import did_you_mean
from fleetctl.identity import credentials, natsaccess
from fleetctl.ui.terminal import err, out
from nsc.authority import Authority
from nsc.backup import BackupExistsError, backup
from nsc.sysupdate import ClaimsUpdateError, push_account_jwt


def _authority(fleet: Fleet) -> Authority:
    authority = credentials.load(fleet)
    if authority is None:
        fail("no NATS operator yet", "run `fleetctl creds init` first")
    return authority


def _worker(fleet: Fleet, worker_id: str) -> str:
    if fleet.worker(worker_id) is None:
        fail(
            f"unknown worker {worker_id!r}", did_you_mean(worker_id, [w.id for w in fleet.workers])
        )
    return worker_id


def _say(message: str) -> None:
    err().print(message, markup=False)


@click.group(cls=SuggestingGroup)
def creds() -> None:
    """Issue, revoke, rotate, list and back up the workers' NATS credentials."""


@creds.command()
@pass_app
def init(app: AppContext) -> None:
    """Create the operator, SYS and Services accounts and fleetctl's own users (idempotent)."""
    fleet = app.fleet()
    _, created = credentials.init(fleet)
    dirs = credentials.dirs_for(fleet)
    verb = "Created" if created else "Already present:"
    _say(f"{verb} operator {fleet.creds.operator!r} (store {dirs.stores}, keys {dirs.keys})")
    if created:
        _say("Back up the operator and account keys now: fleetctl creds backup --out FILE")


@creds.command()
@click.option("--worker", "worker_id", metavar="ID", help="Issue for this worker.")
@click.option("--all", "all_workers", is_flag=True, help="Issue for every enabled worker.")
@pass_app
def issue(app: AppContext, worker_id: str | None, all_workers: bool) -> None:
    """Issue credentials that are missing or revoked; valid ones are kept."""
    fleet = app.fleet()
    if bool(worker_id) == all_workers:
        fail("give either --worker ID or --all")
    authority = _authority(fleet)
    ids = credentials.enabled_ids(fleet) if all_workers else [_worker(fleet, worker_id or "")]
    damaged = credentials.damaged(authority, ids)
    issued = credentials.issue(fleet, authority, ids)
    for user, new in sorted(issued.items()):
        _say(f"issued {user} ({new.public_key})")
    rewritten = [w for w in damaged if natsaccess.worker_user(w) not in issued]
    for wid in rewritten:
        _say(f"rewrote the damaged .creds of {wid} from the store")
    valid = len(ids) - len(issued) - len(rewritten)
    also = f", {len(rewritten)} rewritten" if rewritten else ""
    _say(f"{len(issued)} issued{also}, {valid} already valid")


@creds.command()
@pass_app
def check(app: AppContext) -> None:
    """Check the store: modes (0700/0600), signing-key seeds, every worker's .creds."""
    fleet = app.fleet()
    problems = credentials.store_problems(fleet, _authority(fleet))
    for problem in problems:
        err().print(f"problem: {problem}", markup=False)
    if problems:
        fail(f"{len(problems)} problem(s) in the credential store")
    _say("the credential store is sound")


@creds.command()
@one_worker_option
@server_option
@pass_app
def revoke(app: AppContext, worker_id: str, server: str | None) -> None:
    """Revoke a worker's user: in the account JWT, so the broker config changes too."""
    fleet = app.fleet()
    authority = _authority(fleet)
    known = {r.worker for r in natsaccess.credential_rows(authority) if r.worker}
    if worker_id not in known:
        _worker(fleet, worker_id)  # unknown everywhere: say so, with a did-you-mean
        fail(f"worker {worker_id!r} has no credentials to revoke")
    token = credentials.revoke(authority, worker_id)
    _say(
        f"revoked {natsaccess.worker_user(worker_id)}; the broker's nats-server.conf now carries it"
    )
    _push(authority, credentials.services_account_jwt(fleet, authority, token), server)


@creds.command()
@one_worker_option
@click.option("--finish", is_flag=True, help="Revoke the key(s) a rotation replaced.")
@server_option
@pass_app
def rotate(app: AppContext, worker_id: str, finish: bool, server: str | None) -> None:
    """Two steps, no downtime: a new key now; the old one revoked with --finish once deployed."""
    fleet = app.fleet()
    authority = _authority(fleet)
    _worker(fleet, worker_id)
    if finish:
        token = credentials.finish_rotation(authority, worker_id)
        if token is None:
            fail(f"no rotation of {worker_id} is pending")
        _say(f"revoked the replaced key(s) of {worker_id}")
        _push(authority, credentials.services_account_jwt(fleet, authority, token), server)
        return
    new = credentials.start_rotation(fleet, authority, worker_id)
    _say(f"issued a new key for {worker_id} ({new.public_key}); the old key still works.")
    _say(
        f"Deploy it (fleetctl apply --worker {worker_id}), then: fleetctl creds rotate "
        f"--worker {worker_id} --finish"
    )


def _push(authority: Authority, account_jwt: str, server: str | None) -> None:
    if server is None:
        return
    sys_creds = authority.creds_path(natsaccess.SYSTEM_USER, authority.system_account)
    try:
        asyncio.run(push_account_jwt([server], sys_creds, account_jwt))
    except ClaimsUpdateError as exc:
        fail(f"the broker did not take the update: {exc}", "the change is in the store; retry")
    _say(f"pushed to {server}")


@creds.command(name="list")
@json_option
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """Worker, public key, issued, expires, revoked."""
    fleet = app.fleet()
    authority = _authority(fleet)
    rows = natsaccess.credential_rows(authority)
    soon = fleet.creds.expiry_warning
    if as_json:
        click.echo(
            json.dumps(
                {
                    "format_version": 1,
                    "users": [
                        {
                            "user": r.user,
                            "worker": r.worker,
                            "public_key": r.public_key,
                            "issued_at": r.issued_at,
                            "expires_at": r.expires_at,
                            "revoked": r.revoked,
                            "expires_soon": _expires_soon(r.expires_at, soon),
                        }
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
        return
    table = Table("user", "worker", "public key", "issued", "expires", "revoked")
    for r in rows:
        expires = _when(r.expires_at) + (" (soon)" if _expires_soon(r.expires_at, soon) else "")
        table.add_row(
            r.user,
            r.worker or "-",
            r.public_key,
            _when(r.issued_at),
            expires,
            "yes" if r.revoked else "",
        )
    out().print(table)


def _when(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _expires_soon(ts: int | None, within: int) -> bool:
    return ts is not None and ts - datetime.now(UTC).timestamp() <= within


@creds.command(name="backup")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
@force_option
@pass_app
def backup_(app: AppContext, out_file: Path, force: bool) -> None:
    """Write the operator and account keys, the tunnel keys and the store to FILE (0600).
    Keep it offline."""
    from fleetctl.identity import tunnelkeys  # cryptography: only for this command

    fleet = app.fleet()
    authority = _authority(fleet)
    extra = [tunnelkeys.key_dir(fleet).name]
    try:
        status = backup(authority, out_file, keystore_dirs=extra, replace=force)
    except BackupExistsError:
        fail(f"{out_file} already exists", "choose another file, or pass --force to replace it")
    covered = "every operator and account key" if not status.needed else "NOT every key"
    _say(f"wrote {out_file} (mode 0600), holding {covered}; keep it offline")


@creds.command(name="server-config")
@pass_app
def server_config(app: AppContext) -> None:
    """Print the broker's auth block (as `nsc generate config --mem-resolver`)."""
    fleet = app.fleet()
    click.echo(credentials.server_config(fleet, _authority(fleet)), nl=False)
