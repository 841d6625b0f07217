"""The environment contract: every setting the poller reads, parsed and checked once.

fleetctl renders these variables into the worker's systemd unit. A missing or invalid value is a
`ConfigError` whose message names the variable; `__main__` prints it on one line and exits 2.
Subjects are derived here from NATS_SUBJECT_PREFIX and WORKER_ID with the same rules as
`fleetctl/bus/names.py` (the poller must not import fleetctl); see docs/poller.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from poller.backends import BACKENDS, SettingError
from poller.budget import NO_LIMITS, Limits
from poller.pricing import Price, PriceError
from poller.pricing import parse as parse_price
from poller.repos import NO_REPOS, FileError, Repos
from poller.repos import load as load_repos

MAX_OUTPUT_CAP = 512 * 1024
# The shared work dir and its CREATE_PR step of older units: each task now gets a directory of
# its own, and a repository's `push` / `pull_request` (REPOS_FILE) replace CREATE_PR.
IGNORED = ("WORK_DIR", "CREATE_PR")
# A subject token we are willing to build subjects from: no `.`, `*`, `>`, whitespace.
# Always used with `fullmatch`: `$` would also match before a trailing newline.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_token(value: str) -> bool:
    """All of `value` is one subject token (a trailing newline is not)."""
    return TOKEN_RE.fullmatch(value) is not None


class ConfigError(ValueError):
    """A bad environment variable; the message starts with the variable's name."""


@dataclass(frozen=True)
class Subjects:
    """The subjects of one worker, as fleetctl's NatsNames derives them."""

    prefix: str
    worker_id: str

    @property
    def inbox(self) -> str:
        return f"{self.prefix}.worker.{self.worker_id}.inbox"

    @property
    def status(self) -> str:
        return f"{self.prefix}.worker.{self.worker_id}.status"

    @property
    def ping(self) -> str:
        return f"{self.prefix}.worker.{self.worker_id}.ping"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead.{self.worker_id}"

    def result(self, task_id: str) -> str:
        """Only call with an id that passed `is_token`: the id becomes a subject token.
        The worker id is in the subject: the server lets only this worker publish there."""
        return f"{self.prefix}.result.{self.worker_id}.{task_id}"


@dataclass(frozen=True)
class Config:
    worker_id: str
    nats_url: str  # as written: one URL, or a cluster's, comma-separated
    nats_creds: Path | None
    subjects: Subjects
    task_stream: str
    consumer: str
    results_stream: str
    dead_stream: str
    inbox_prefix: str
    lease_bucket: str
    backend: str
    llm: str
    # The backend's own settings (poller/backends.py), by worker field name: bin, model, ...
    settings: Mapping[str, str]
    concurrency: int
    task_timeout: float
    work_base: Path
    home: str
    # Tunables with defaults (optional variables, documented in docs/poller.md).
    kill_grace: float = 10.0
    # Seconds running tasks get to finish after SIGTERM before they are handed back
    # (DRAIN_TIMEOUT, default the task timeout).
    drain_timeout: float = 3600.0
    # Seconds a CLI may show no sign of life before its task ends as stalled (STALL_TIMEOUT).
    stall_timeout: float = 600.0
    # Seconds of the first pause after a rate limit that names no reset (LIMIT_BACKOFF).
    limit_backoff: float = 60.0
    heartbeat_interval: float = 5.0
    nak_delay: float = 10.0
    max_task_bytes: int = 1024 * 1024
    output_cap: int = 256 * 1024
    result_store_retry: float = 30.0
    # Seconds to keep retrying to take a task's lease while the bus fails (LEASE_RETRY), the
    # delivery kept meanwhile: a broker failover lasts seconds, and a task given back in
    # the middle of one depends on the consumer's new leader delivering it again.
    lease_retry: float = 30.0
    # Seconds a task's lease lives without a refresh; None: lease.TTL_ACK_WAITS x ack_wait.
    lease_ttl: int | None = None
    log_level: str = "info"
    spend_bucket: str = "AF_SPEND"
    cancel_bucket: str = "AF_CANCELS"  # task cancels (poller/cancel.py)
    budget: Limits = NO_LIMITS  # BUDGET_DAILY_USD, BUDGET_FLEET_DAILY_USD
    price: Price | None = None  # PRICE_USD_PER_MTOK: the worker's model's prices
    trust_reported_cost: bool = True  # REPORTED_COST=ignore: the CLI's own figure is wrong
    # The worker's labels from fleet.yaml (WORKER_LABELS, a JSON object of text): reported in
    # every heartbeat and result, so readers can group by them.
    labels: Mapping[str, str] = field(default_factory=dict)
    # The shared queues (consumers of `pick: any` routes) pulled from besides `consumer`.
    route_consumers: tuple[str, ...] = ()
    # REPOS_FILE: the repositories this worker's tasks may work on (poller/repos.py).
    repos: Repos = NO_REPOS
    # Variables of older units that no longer mean anything (logged once at start).
    ignored: tuple[str, ...] = ()
    # NATS_URL's URLs: a cluster's brokers, one reached through each tunnel. nats-py picks
    # one at random and, when it is lost, reconnects to the next.
    nats_servers: tuple[str, ...] = ()

    @property
    def servers(self) -> list[str]:
        return list(self.nats_servers or (self.nats_url,))

    @property
    def state_dir(self) -> Path:
        """Where this poller records its running CLIs (for orphan cleanup after a crash)."""
        return self.work_base / ".fleet-poller" / self.worker_id

    @property
    def worktrees(self) -> Path:
        """Where each task gets its own directory (a worktree, or an empty directory)."""
        return self.repos.worktrees or self.work_base / "worktrees"

    @property
    def model(self) -> str:
        """The model name reported in results (empty when the CLI chooses)."""
        return self.settings.get("model", "")


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is required but not set")
    return default


def _token(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = _get(env, name, default)
    if not is_token(value):
        raise ConfigError(f"{name}={value!r} must be letters, digits, '-' or '_' (a subject token)")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} must be {kind}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def _optional(env: Mapping[str, str], name: str) -> float | None:
    """A positive number, or None when unset."""
    return _number(env, name, 0) if env.get(name, "").strip() else None


def _lease_ttl(env: Mapping[str, str]) -> int | None:
    """Whole seconds (what `Nats-TTL` takes), or None to derive it from the ack wait."""
    if not env.get("LEASE_TTL", "").strip():
        return None
    return int(_number(env, "LEASE_TTL", 0, integer=True))


def _labels(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("WORKER_LABELS", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"WORKER_LABELS={raw[:60]!r} must be a JSON object of text values")
    return value


def _servers(raw: str) -> tuple[str, ...]:
    """NATS_URL: one URL, or several separated by commas (a cluster's brokers)."""
    urls = tuple(u.strip() for u in raw.split(","))
    for url in urls:
        if not re.match(r"^(nats|tls|ws|wss)://[^\s,]+$", url):
            raise ConfigError(
                f"NATS_URL={raw[:200]!r}: {url[:80]!r} must start with nats://, tls://, ws:// "
                "or wss:// (several URLs: separated by commas)"
            )
    return urls


def _route_consumers(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("NATS_ROUTE_CONSUMERS", "").strip()
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not is_token(name):
            raise ConfigError(
                f"NATS_ROUTE_CONSUMERS={raw[:60]!r}: {name[:60]!r} is not a consumer name"
            )
    return names


def _repos(env: Mapping[str, str]) -> Repos:
    raw = env.get("REPOS_FILE", "").strip()
    if not raw:
        return NO_REPOS
    try:
        return load_repos(Path(raw))
    except FileError as e:
        raise ConfigError(f"REPOS_FILE={e}") from None


def _backend_settings(env: Mapping[str, str], backend: str) -> dict[str, str]:
    values = {}
    for setting in BACKENDS[backend].settings:
        raw = env.get(setting.env, "")
        if setting.required and not raw.strip():
            raise ConfigError(f"{setting.env} is required for MODEL_BACKEND={backend}")
        try:
            values[setting.field] = setting.read(raw)
        except SettingError as e:
            raise ConfigError(f"{setting.env}={raw.strip()!r} {e}") from None
    return values


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read the contract from `env` (default: os.environ); ConfigError on the first problem."""
    env = os.environ if env is None else env
    worker_id = _token(env, "WORKER_ID")
    prefix = _token(env, "NATS_SUBJECT_PREFIX", "af")
    url = _get(env, "NATS_URL")
    servers = _servers(url)
    creds_raw = env.get("NATS_CREDS", "").strip()
    creds = Path(creds_raw) if creds_raw else None
    if creds is not None and not creds.is_file():
        raise ConfigError(f"NATS_CREDS={creds_raw!r} is not a readable file")
    base = prefix.upper().replace("-", "_")
    backend = _get(env, "MODEL_BACKEND")
    if backend not in BACKENDS:
        raise ConfigError(f"MODEL_BACKEND={backend!r} must be one of {', '.join(BACKENDS)}")
    home = env.get("HOME", "").strip() or str(Path.home())
    work_base = Path(_get(env, "WORK_BASE", home))
    ignored = tuple(
        n for n in IGNORED if env.get(n, "").strip().lower() not in ("", "0", "false", "no", "off")
    )
    output_cap = int(_number(env, "OUTPUT_CAP", 256 * 1024, integer=True))
    if output_cap > MAX_OUTPUT_CAP:
        raise ConfigError(f"OUTPUT_CAP={output_cap} must be at most {MAX_OUTPUT_CAP}")
    level = env.get("LOG_LEVEL", "info").strip().lower() or "info"
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"LOG_LEVEL={level!r} must be debug, info, warning or error")
    try:
        price = parse_price(env.get("PRICE_USD_PER_MTOK", ""))
    except PriceError as e:
        raise ConfigError(f"PRICE_USD_PER_MTOK {e}") from None
    reported = env.get("REPORTED_COST", "").strip().lower() or "trust"
    if reported not in ("trust", "ignore"):
        raise ConfigError(f"REPORTED_COST={reported!r} must be trust or ignore")
    task_timeout = _number(env, "TASK_TIMEOUT", 3600)
    return Config(
        worker_id=worker_id,
        nats_url=url,
        nats_servers=servers,
        nats_creds=creds,
        subjects=Subjects(prefix, worker_id),
        task_stream=_token(env, "NATS_TASK_STREAM", f"{base}_TASKS"),
        consumer=_token(env, "NATS_CONSUMER", f"worker-{worker_id}"),
        results_stream=_token(env, "NATS_RESULTS_STREAM", f"{base}_RESULTS"),
        dead_stream=_token(env, "NATS_DEAD_STREAM", f"{base}_DEAD"),
        inbox_prefix=_token(env, "NATS_INBOX_PREFIX", f"_INBOX_{worker_id}"),
        lease_bucket=_token(env, "NATS_LEASE_BUCKET", f"{base}_LEASES"),
        backend=backend,
        llm=env.get("LLM", "").strip() or backend,
        settings=_backend_settings(env, backend),
        concurrency=int(_number(env, "CONCURRENCY", 1, integer=True)),
        task_timeout=task_timeout,
        work_base=work_base,
        home=home,
        kill_grace=_number(env, "KILL_GRACE", 10),
        drain_timeout=_number(env, "DRAIN_TIMEOUT", task_timeout),
        stall_timeout=_number(env, "STALL_TIMEOUT", 600),
        limit_backoff=_number(env, "LIMIT_BACKOFF", 60),
        heartbeat_interval=_number(env, "HEARTBEAT_INTERVAL", 5),
        nak_delay=_number(env, "NAK_DELAY", 10),
        max_task_bytes=int(_number(env, "MAX_TASK_BYTES", 1024 * 1024, integer=True)),
        output_cap=output_cap,
        result_store_retry=_number(env, "RESULT_STORE_RETRY", 30),
        lease_retry=_number(env, "LEASE_RETRY", 30),
        lease_ttl=_lease_ttl(env),
        log_level=level,
        price=price,
        spend_bucket=_token(env, "NATS_SPEND_BUCKET", f"{base}_SPEND"),
        cancel_bucket=_token(env, "NATS_CANCEL_BUCKET", f"{base}_CANCELS"),
        budget=Limits(_optional(env, "BUDGET_DAILY_USD"), _optional(env, "BUDGET_FLEET_DAILY_USD")),
        trust_reported_cost=reported == "trust",
        labels=_labels(env),
        route_consumers=_route_consumers(env),
        repos=_repos(env),
        ignored=ignored,
    )
