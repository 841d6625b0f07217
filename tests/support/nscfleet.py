"""A credentialed fleet for integration tests: operator, users, a broker running its config.

Everything real: keys and JWTs from `nsc`, permissions from `fleetctl.identity.natsaccess`,
streams and consumers from `fleetctl.bus.resources` created by the admin user over the
JetStream API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from fleetctl.bus.names import NatsNames
from fleetctl.bus.resources import ConsumerSpec, StreamSpec, streams, worker_consumer
from fleetctl.config.schema import NatsSettings
from fleetctl.identity import natsaccess as na
from nsc.authority import Authority, IssuedUser
from nsc.store import NscDirs
from tests.support.natsserver import NatsServer, running_nats_server

DENIED_TIMEOUT = 0.5  # a denied JetStream API call just times out: keep it short


@dataclass
class Fleet:
    authority: Authority
    settings: NatsSettings
    workers: dict[str, IssuedUser]
    publisher: IssuedUser
    admin: IssuedUser
    system: IssuedUser
    workdir: Path
    server: NatsServer | None = None
    storage: str = "file"
    dashboard: IssuedUser | None = None

    @property
    def names(self) -> NatsNames:
        return NatsNames(self.settings.subject_prefix)

    def broker_config(self) -> str:
        """What the broker runs: the generated auth config (listen/jetstream come from the
        test server helper)."""
        return self.authority.server_config()

    def write_config(self) -> None:
        """Persist the current auth config for the next (re)start, as fleetctl would."""
        assert self.server is not None
        self.server.extra_config = self.broker_config()
        self.server.write_config()

    def stream_specs(self) -> list[StreamSpec]:
        return [replace(s, storage=self.storage) for s in streams(self.settings)]

    def consumer_specs(self) -> list[ConsumerSpec]:
        return [worker_consumer(self.settings, wid, 1) for wid in self.workers]


def make_fleet(
    root: Path,
    worker_ids: tuple[str, ...] = ("w1", "w2"),
    *,
    settings: NatsSettings | None = None,
    queues: Mapping[str, Sequence[str]] | None = None,
) -> Fleet:
    """`queues`: each worker's shared queues (`pick: any` routes), named in its creds."""
    a = Authority.create(NscDirs.under(root / "nsc"))
    settings = settings or NatsSettings()
    names = NatsNames(settings.subject_prefix)
    workers = {
        wid: a.issue_user(
            na.worker_user(wid), na.worker_permissions(names, wid, (queues or {}).get(wid, ()))
        )
        for wid in worker_ids
    }
    return Fleet(
        authority=a,
        settings=settings,
        workers=workers,
        publisher=a.issue_user(na.PUBLISHER_USER, na.publisher_permissions(names)),
        admin=a.issue_user(na.ADMIN_USER, na.admin_permissions(names)),
        system=a.issue_user(na.SYSTEM_USER, na.system_permissions(), account="SYS"),
        workdir=root,
        dashboard=a.issue_user(na.DASHBOARD_USER, na.dashboard_permissions(names)),
    )


@contextlib.contextmanager
def fleet_server(fleet: Fleet, extra_config: str = "") -> Iterator[NatsServer]:
    """`extra_config`: more broker settings (`http: 127.0.0.1:<port>` for a monitor)."""
    workdir = fleet.workdir / "broker"
    workdir.mkdir(exist_ok=True)
    with running_nats_server(workdir, fleet.broker_config() + extra_config) as server:
        fleet.server = server
        yield server


@dataclass
class Conn:
    """A connection plus the asynchronous errors the server sent it (permission violations)."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]

    async def wait_violation(self, needle: str, timeout: float = 2.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for v in self.violations():
                if needle.lower() in v.lower():  # nats-py lower-cases the text
                    return v
            await asyncio.sleep(0.01)
        raise AssertionError(f"no permissions violation for {needle!r}; got {self.errors}")


@contextlib.asynccontextmanager
async def connect(url: str, user: IssuedUser, inbox_prefix: str) -> AsyncIterator[Conn]:
    conn = Conn(nc=Client())

    async def on_error(e: Exception) -> None:
        conn.errors.append(str(e))

    await conn.nc.connect(
        url,
        user_credentials=str(user.creds_path),
        inbox_prefix=inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=5,
    )
    try:
        yield conn
    finally:
        await conn.nc.close()


async def try_connect(url: str, creds: Path) -> str | None:
    """None if the server accepts these creds, else the error text."""
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    try:
        nc = await nats.connect(
            url,
            user_credentials=str(creds),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
            error_cb=on_error,
        )
    except Exception as e:
        return f"{e!r} {errors}"
    await nc.close()
    return None


async def js_api(conn: Conn, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    msg = await conn.nc.request(subject, json.dumps(body or {}).encode(), timeout=5)
    reply: dict[str, Any] = json.loads(msg.data)
    if "error" in reply:
        raise RuntimeError(f"{subject}: {reply['error']}")
    return reply


async def create_resources(fleet: Fleet, admin: Conn) -> None:
    """Streams and consumers from the natsresources specs, as the admin user."""
    for s in fleet.stream_specs():
        await js_api(admin, f"$JS.API.STREAM.CREATE.{s.name}", s.api_config())
    for c in fleet.consumer_specs():
        await js_api(
            admin,
            f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}",
            {"stream_name": c.stream, "config": c.api_config()},
        )
