"""The validated fleet: typed, frozen, defaults applied, and traceable to file:line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fleetctl.config.errors import Mark
from fleetctl.config.schema import NatsSettings, StatusSettings
from fleetctl.config.yamlsource import SourceMap
from fleetctl.layout import poller_unit
from poller.backends import CliPackage
from poller.pricing import Price

BROKER_ROLE = "broker-host"
# Built-in llms whose CLI reports a cost computed from another provider's prices.
MISPRICED_LLMS = frozenset({"zai"})
WORKER_ROLE = "worker-host"


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str
    user: str
    port: int
    roles: frozenset[str]
    host_key: str | None
    labels: Mapping[str, str]
    origin: Mark

    @property
    def is_broker(self) -> bool:
        return BROKER_ROLE in self.roles

    @property
    def is_worker_host(self) -> bool:
        return WORKER_ROLE in self.roles


def service_user(worker_id: str) -> str:
    """Each worker runs as its own user, so one worker cannot read another's creds."""
    return f"fleet-{worker_id}"


@dataclass(frozen=True)
class RepoCopy:
    """A file of the machine running fleetctl put into each worktree at `to`."""

    source: Path
    to: str


@dataclass(frozen=True)
class PullRequest:
    """Where pull requests for a repository's task branches are opened (GitHub's API)."""

    api: str
    repo: str  # OWNER/NAME on the forge
    base: str | None = None  # the branch they target; None: the repository's ref


@dataclass(frozen=True)
class Repo:
    """A repository of fleet.yaml `repos:`, its files' paths made absolute (they are on the
    machine running fleetctl; apply ships their contents)."""

    name: str
    url: str
    origin: Mark
    ref: str | None = None
    deploy_key: Path | None = None
    token: Path | None = None
    host_key: str | None = None
    setup: tuple[str, ...] = ()
    check: tuple[str, ...] = ()
    copy: tuple[RepoCopy, ...] = ()
    push: bool = False
    pull_request: bool = False  # for every task (a worker's create_pr: for its tasks)
    forge: PullRequest | None = None  # where pull requests go (None: nowhere it knows)
    retain: int = 86400

    @property
    def user(self) -> str:
        """The user and group that own the repository's mirror on a host; the workers that
        use it get the group (their units' SupplementaryGroups=)."""
        return repo_user(self.name)


def repo_user(name: str) -> str:
    return f"fleet-repo-{name}"


@dataclass(frozen=True)
class WorkerRepo:
    """A repository as one worker uses it: its `create_pr` pushes and opens pull requests
    for its own tasks whatever the repository says."""

    repo: Repo
    push: bool
    pull_request: PullRequest | None


def worker_repo(worker: Worker, repo: Repo) -> WorkerRepo:
    opens = repo.pull_request or worker.create_pr
    pull_request = repo.forge if opens else None
    return WorkerRepo(repo, repo.push or pull_request is not None, pull_request)


@dataclass(frozen=True, slots=True)
class Worker:
    id: str
    llm: str
    backend: str
    bin: str | None
    cli: CliPackage | None  # the CLI apply installs for it; None: host-provided (or none)
    model: str | None
    lang: str | None
    role: str | None
    host: str
    enabled: bool
    create_pr: bool
    concurrency: int
    task_timeout: int
    # Seconds a stopping poller lets running tasks finish (its unit's TimeoutStopSec follows),
    # and seconds without a sign of life from the CLI before a task is ended as stalled.
    drain_timeout: int
    stall_timeout: int
    allowed_tools: tuple[str, ...]
    github_remote: str
    codex_sandbox: str
    permission_mode: str
    max_turns: int | None
    max_budget_usd: float | None
    approval_mode: str
    env_file: str | None
    labels: Mapping[str, str]
    command: tuple[str, ...] | None
    work_base: str
    origin: Mark
    # fleet.yaml `prices:` for this worker's model (else its llm); None: not priced.
    price: Price | None = None
    # Daily spend limits in USD: the worker's own, and the whole fleet's (poller/budget.py).
    daily_usd: float | None = None
    fleet_daily_usd: float | None = None
    # env_file may lie outside /etc/fleet/env/ (fleet.yaml says so for this worker).
    env_file_outside_fleet: bool = False
    # The repository a task works on unless it names another (`repo:`), and every one its
    # tasks may name, the default first (`repo:` and `repos:`).
    repo: str | None = None
    repos: tuple[str, ...] = ()

    @property
    def trusts_reported_cost(self) -> bool:
        """Claude Code prices every model at Anthropic's rates: its figure for Z.ai is wrong."""
        return self.llm not in MISPRICED_LLMS

    @property
    def unit(self) -> str:
        return poller_unit(self.id)

    @property
    def service_user(self) -> str:
        return service_user(self.id)


@dataclass(frozen=True)
class Route:
    """A named selector from fleet.yaml `routes:`; `pick` is `all` (fan-out) or `any`."""

    name: str
    select: Mapping[str, str]
    pick: str
    origin: Mark


@dataclass(frozen=True)
class CredsConfig:
    """The `creds:` block with its paths made absolute (None: nsc's default)."""

    operator: str = "fleet"
    stores_dir: Path | None = None
    keys_dir: Path | None = None
    ttl: int | None = None
    expiry_warning: int = 7 * 86400


@dataclass(frozen=True)
class Share:
    """A number of hosts, or a share of them in percent (`rollout:`, `apply --batch`)."""

    count: int | None = None
    percent: int | None = None

    @classmethod
    def of_value(cls, value: int | str) -> Share:
        """From a checked value (config/values.py): 2 or "25%"."""
        if isinstance(value, str) and value.endswith("%"):
            return cls(percent=int(value[:-1]))
        return cls(count=int(value))

    def hosts(self, total: int, *, at_least: int = 0) -> int:
        """How many of `total` hosts: a share rounded up (at least `at_least`)."""
        if self.percent is not None:
            return max(at_least, -(-total * self.percent // 100))
        return max(at_least, self.count or 0)

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class Rollout:
    """fleet.yaml `rollout:` (config/schema.py RolloutSettings), in seconds."""

    batch: Share | None = None  # None: every worker host at once
    max_failed: Share = field(default_factory=lambda: Share(count=0))
    pause: int = 0
    confirm_timeout: int = 120


@dataclass(frozen=True)
class Fleet:
    hosts: tuple[Host, ...]
    workers: tuple[Worker, ...]
    nats: NatsSettings
    revision: str
    creds: CredsConfig = field(default_factory=CredsConfig)
    sources: Mapping[str, SourceMap] = field(default_factory=dict, compare=False)
    routes: Mapping[str, Route] = field(default_factory=dict)
    status: StatusSettings = field(default_factory=StatusSettings)
    repos: Mapping[str, Repo] = field(default_factory=dict)
    rollout: Rollout = field(default_factory=Rollout)

    @cached_property
    def _hosts_by_name(self) -> dict[str, Host]:
        return {h.name: h for h in self.hosts}

    def host(self, name: str) -> Host:
        return self._hosts_by_name[name]

    @property
    def brokers(self) -> tuple[Host, ...]:
        """The hosts the bus lives on, in servers.yaml order: one, or the three or five
        brokers of a NATS cluster (config/checks.py)."""
        return tuple(h for h in self.hosts if h.is_broker)

    @property
    def is_cluster(self) -> bool:
        """Several brokers: a NATS cluster (config/checks.py allows three or five)."""
        return len(self.brokers) > 1

    @property
    def replicas(self) -> int:
        """Copies of each stream and KV bucket: `nats.replicas`, else 3 on a cluster of three
        or more brokers, else 1."""
        if self.nats.replicas is not None:
            return self.nats.replicas
        return 3 if len(self.brokers) >= 3 else 1

    @property
    def broker(self) -> Host:
        """The broker the worker hosts' tunnels lead to (and whose SSH key their known_hosts
        pins): the first of `brokers`. Where any of the bus's hosts will do, use `brokers`."""
        return self.brokers[0]

    def workers_on(self, host: str, *, enabled_only: bool = True) -> list[Worker]:
        return [w for w in self.workers if w.host == host and (w.enabled or not enabled_only)]

    def worker(self, worker_id: str) -> Worker | None:
        return next((w for w in self.workers if w.id == worker_id), None)

    def repos_on(self, host: str) -> list[Repo]:
        """The repositories the enabled workers on `host` use, in `repos:` order: each has
        a mirror there."""
        used = {name for w in self.workers_on(host) for name in w.repos}
        return [r for name, r in self.repos.items() if name in used]
