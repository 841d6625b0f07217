"""The publisher's few conversations with JetStream: publish a task, read stored messages by
subject or sequence, look at a worker's consumer, purge dead letters. Raw API requests, as
the publisher's permissions name them (fleetctl/identity/natsaccess.py
`publisher_permissions`)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from fleetctl.bus.client import TIMEOUT, BusError
from fleetctl.bus.names import JS_API

BATCH = 256  # messages per batched direct get


@dataclass(frozen=True)
class Stored:
    """One message as the stream holds it."""

    subject: str
    seq: int
    time: str
    data: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            return None


@dataclass(frozen=True)
class Published:
    seq: int
    duplicate: bool


async def publish(nc: Any, subject: str, data: bytes, msg_id: str) -> Published:
    """Publish into the task stream and wait for its PubAck (a duplicate id is acked with
    `duplicate: true` and stored once)."""
    try:
        reply = await nc.request(subject, data, timeout=TIMEOUT, headers={"Nats-Msg-Id": msg_id})
    except Exception as e:
        raise BusError(f"publishing to {subject}: {type(e).__name__}") from None
    ack = json.loads(reply.data or b"{}")
    if "error" in ack:
        err = ack["error"]
        raise BusError(f"publishing to {subject}: {err.get('description')}")
    return Published(int(ack.get("seq", 0)), bool(ack.get("duplicate", False)))


def _stored_from_headers(msg: Any) -> Stored:
    h = msg.headers or {}
    return Stored(
        h.get("Nats-Subject", ""),
        int(h.get("Nats-Sequence", 0)),
        h.get("Nats-Time-Stamp", ""),
        msg.data,
    )


async def direct_batch(nc: Any, stream: str, body: dict[str, Any]) -> list[Stored]:
    """A batched direct get (`batch`, `multi_last`, `next_by_subj`...): every message up to
    the end-of-batch marker. The stream must allow direct gets (the results stream does)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    found: list[Stored] = []
    try:
        await nc.publish(f"{JS_API}.DIRECT.GET.{stream}", json.dumps(body).encode(), reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=TIMEOUT)
            except TimeoutError:
                raise BusError(f"no answer from the stream {stream}") from None
            status = (msg.headers or {}).get("Status")
            if status in ("204", "404"):  # end of batch / nothing (more) to get
                return found
            if status is not None:
                description = (msg.headers or {}).get("Description", "")
                raise BusError(f"reading {stream}: {status} {description}".strip())
            found.append(_stored_from_headers(msg))
    finally:
        await sub.unsubscribe()


class NoStream(BusError):
    """No stream answers for that subject (a bus that predates it: apply creates it)."""


def _failed(what: str, e: Exception) -> BusError:
    if type(e).__name__ == "NoRespondersError":
        return NoStream(f"{what}: no stream takes it")
    return BusError(f"{what}: {type(e).__name__}")


async def direct_get(nc: Any, stream: str, subject: str) -> Stored | None:
    """The last message on one subject, named in the request subject (what a permission
    can restrict to one key); None when there is none, or a KV key's last write deleted it."""
    try:
        msg = await nc.request(f"{JS_API}.DIRECT.GET.{stream}.{subject}", b"", timeout=TIMEOUT)
    except Exception as e:
        raise _failed(f"reading {subject} from {stream}", e) from None
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == "404" or headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    if status is not None:
        description = headers.get("Description", "")
        raise BusError(f"reading {subject} from {stream}: {status} {description}".strip())
    return _stored_from_headers(msg)


class WrongLastSequence(BusError):
    """A compare-and-set write lost to another writer: read the key again and retry."""


# JetStream's "wrong last sequence" errors (per subject; per stream).
WRONG_LAST_SEQUENCE = (10071, 10164)


async def put(nc: Any, subject: str, data: bytes, expected_seq: int) -> int:
    """Write a KV key only if its last sequence is still `expected_seq` (0: a new key); its
    new sequence. WrongLastSequence when another write came first."""
    headers = {"Nats-Expected-Last-Subject-Sequence": str(expected_seq)}
    try:
        reply = await nc.request(subject, data, timeout=TIMEOUT, headers=headers)
    except Exception as e:
        raise _failed(f"writing {subject}", e) from None
    ack = json.loads(reply.data or b"{}")
    if "error" in ack:
        err = ack["error"]
        if err.get("err_code") in WRONG_LAST_SEQUENCE:
            raise WrongLastSequence(f"writing {subject}: {err.get('description')}")
        raise BusError(f"writing {subject}: {err.get('description')}")
    return int(ack.get("seq", 0))


class _Missing(BusError):
    """What a JetStream API request named does not exist (its 404)."""


async def _api(nc: Any, call: str, body: dict[str, Any] | None, doing: str) -> dict[str, Any]:
    """One JetStream API request (`$JS.API.<call>`) and its answer; its error a BusError
    saying what was being done (`_Missing` for a 404, which a lookup reads as "none")."""
    data = json.dumps(body).encode() if body is not None else b""
    try:
        reply = await nc.request(f"{JS_API}.{call}", data, timeout=TIMEOUT)
    except Exception as e:
        raise BusError(f"{doing}: {type(e).__name__}") from None
    answer: dict[str, Any] = json.loads(reply.data or b"{}")
    if "error" in answer:
        error = _Missing if answer["error"].get("code") == 404 else BusError
        raise error(f"{doing}: {answer['error'].get('description')}")
    return answer


async def msg_get(nc: Any, stream: str, body: dict[str, Any]) -> Stored | None:
    """One message by `seq`, `last_by_subj` or `next_by_subj` (STREAM.MSG.GET: for streams
    without direct gets); None when there is none."""
    try:
        answer = await _api(nc, f"STREAM.MSG.GET.{stream}", body, f"reading {stream}")
    except _Missing:
        return None
    m = answer["message"]
    data = base64.b64decode(m.get("data") or "")
    return Stored(m["subject"], int(m["seq"]), m.get("time", ""), data)


async def scan(nc: Any, stream: str, subjects: str, start: int = 1) -> list[Stored]:
    """Every message on `subjects` from sequence `start`, one STREAM.MSG.GET each."""
    found: list[Stored] = []
    seq = start
    while (m := await msg_get(nc, stream, {"seq": seq, "next_by_subj": subjects})) is not None:
        found.append(m)
        seq = m.seq + 1
    return found


async def last_seq(nc: Any, stream: str, subjects: str) -> int:
    """The sequence of the newest message on `subjects` (0: none yet)."""
    m = await msg_get(nc, stream, {"last_by_subj": subjects})
    return m.seq if m is not None else 0


async def consumer_info(nc: Any, stream: str, durable: str) -> dict[str, Any] | None:
    """A worker's consumer as the server sees it; None if it does not exist."""
    try:
        return await _api(
            nc, f"CONSUMER.INFO.{stream}.{durable}", None, f"looking up consumer {durable}"
        )
    except _Missing:
        return None


async def purge(nc: Any, stream: str, subjects: str | None = None) -> int:
    """Remove every message of `stream` (only those on `subjects`, when given); how many
    were removed."""
    body: dict[str, Any] = {"filter": subjects} if subjects else {}
    answer = await _api(nc, f"STREAM.PURGE.{stream}", body, f"purging {stream}")
    return int(answer.get("purged", 0))
