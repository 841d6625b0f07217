"""A broker as a member of the cluster's JetStream (its meta group): a bus kind. A new broker
joins by itself once its host runs nats-server with the cluster's routes (apply waits until
it is healthy); a departed one is removed from the meta group by fleet-sys
(`$JS.API.SERVER.REMOVE`), once its host no longer runs it, so JetStream places its copies
of each stream on the brokers that remain (fleetctl/reconcile/rollout.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

from fleetctl.reconcile.resources.base import Attrs

REMOVE_SUBJECT = "$JS.API.SERVER.REMOVE"


@dataclass(frozen=True)
class MemberSpec:
    """A broker host of the cluster, by its server name (the host's name)."""

    kind: ClassVar[str] = "member"

    broker: str

    @property
    def key(self) -> str:
        return f"member {self.broker}"

    def fingerprint(self) -> dict[str, object]:
        return {}

    def describe(self) -> tuple[str, Attrs]:
        return self.broker, (("role", "JetStream cluster member"),)

    @staticmethod
    def remove_request(broker: str) -> tuple[str, bytes]:
        """What removes a departed broker from the meta group (fleet-sys only), by its peer
        id: by name the server finds only brokers it has heard of since it last started,
        and a dead one restarted brokers never hear of."""
        body = {"peer": broker, "peer_id": peer_id(broker)}
        return REMOVE_SUBJECT, json.dumps(body).encode()


_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def peer_id(server_name: str) -> str:
    """A server's id in JetStream's Raft groups, as nats-server derives it from the name
    (`getHash`: the first 8 bytes of its SHA-256, each as one of 62 digits)."""
    digest = hashlib.sha256(server_name.encode()).digest()
    return "".join(_DIGITS[b % len(_DIGITS)] for b in digest[:8])
