"""What a resource kind is: one class that knows its key, its fingerprint, how the plan
shows it, what the host agent is asked about it and how its answer is read, and the agent
steps that make it or remove it. Like a pyinfra fact (a command and a pure parser of its
output) together with its operation (the commands that change it).

A kind's class is also its spec: the frozen dataclass desired state is made of. Pure: no
I/O here; the agent client sends what `ask` builds, and the host program runs the steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

from fleetctl.bus.resources import Request

Attrs = tuple[tuple[str, str], ...]
# What systemctl does to a unit: start (enable --now), restart, reload, stop (disable --now).
UnitAction = Literal["start", "restart", "reload", "stop"]


@dataclass(frozen=True)
class Step:
    """One step of a host program: what the host agent runs (`op`, an operation of
    fleetctl/hostside/steps.py) and what the progress display shows for it."""

    label: str  # what the progress display shows; never a secret
    op: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Shown:
    """What a change of a resource carries besides its name and attributes."""

    after: bytes | None = None  # the new content: diffed, or masked when sensitive
    sensitive: bool = False
    sha256: str | None = None
    generated: bool = False  # apply generates the content (a new tunnel key)
    unit_action: UnitAction | None = None  # what systemctl does when it is made


@dataclass(frozen=True)
class Staged:
    """What rollout uploads before a host program runs, by the sha256 the install steps check:
    the nats-server binary, and each LLM CLI's bundle by package name."""

    nats_sha256: str | None = None
    cli_sha256: Mapping[str, str] = field(default_factory=dict)


class HostKind(ABC):
    """A kind of resource fleetctl owns on a host (its key's first word is `kind`)."""

    kind: ClassVar[str]
    # Where its steps go in a host program: lower first; removals go in the reverse order
    # (a user is made before its directory and removed after it).
    order: ClassVar[int]
    worker: str | None  # the worker it belongs to (None: shared by the host)

    @property
    @abstractmethod
    def key(self) -> str:
        """`<kind> <name>`: what the plan, the manifest and the agent's answer call it."""

    @abstractmethod
    def fingerprint(self) -> dict[str, object]:
        """The attributes that, when they differ on the host, make it an update."""

    @abstractmethod
    def describe(self) -> tuple[str, Attrs]:
        """Its name and the attributes the plan shows."""

    def shown(self) -> Shown:
        return Shown()

    # --- observing: what the host agent is asked, and how its answer is read ------------

    @classmethod
    @abstractmethod
    def ask(cls, wanted: Sequence[Self], *, with_contents: bool) -> dict[str, Any]:
        """The fields of the agent's `observe` request for these resources (the agent adds
        what the host's manifest lists of this kind)."""

    @classmethod
    @abstractmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        """The request's fields for resources known only by name (a departed host's)."""

    @classmethod
    @abstractmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        """The fingerprint of each resource of this kind the host has, by key."""

    # --- applying: the host agent's steps ------------------------------------------------

    @abstractmethod
    def steps(self, staged: Staged) -> list[Step]:
        """The steps that make it as desired, whether it is missing or differs."""

    @classmethod
    @abstractmethod
    def removal_steps(cls, name: str) -> list[Step]:
        """The steps that remove one of this kind known only by name."""

    @classmethod
    def removal_attrs(cls, name: str) -> Attrs:
        """What the plan shows beside the removal of one known only by name."""
        return ()

    @classmethod
    def removed_path(cls, name: str) -> str | None:
        """Where a removed one lived, if on disk (its emptied parents go on teardown)."""
        return None

    @classmethod
    def reloads_systemd(cls, name: str) -> bool:
        """Whether making or removing it needs `systemctl daemon-reload` (a unit file)."""
        return False

    @classmethod
    def removed_late(cls, name: str) -> bool:
        """Removed only after the units restart: a stopping worker may still run it."""
        return False


class BusKind(Protocol):
    """A kind of resource the bus holds: what the plan needs of it."""

    kind: ClassVar[str]

    @property
    def key(self) -> str: ...

    def fingerprint(self) -> dict[str, object]: ...

    def describe(self) -> tuple[str, Attrs]: ...


class JetStreamKind(BusKind, Protocol):
    """A bus kind made through the JetStream API (fleetctl/bus/resources.py): its declared
    config, and the requests that make, update and delete it, in apply's order. How it is
    observed (`info_request` and `read` for a stream) is fleetctl/reconcile/jetstream.py's."""

    def api_config(self) -> dict[str, Any]: ...

    def write_request(self, action: str, config: dict[str, Any]) -> Request: ...

    @staticmethod
    def delete_request(name: str) -> Request: ...

    @staticmethod
    def apply_rank(action: str) -> int: ...
