"""The two files' schemas: what may be written, with defaults and descriptions.

These models only check shape and single values; rules that span entries or files (unknown
hosts, duplicates, roles) live in `checks.py`. `fleetctl schema` prints them as JSON Schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleetctl.config.gitvalues import (
    ForgeApi,
    ForgeRepo,
    GitRef,
    GitUrlText,
    RepoName,
    WorktreePath,
)
from fleetctl.config.values import (
    AbsPath,
    Address,
    ArgvItem,
    BatchSize,
    Bytes,
    CliVersion,
    GitRemote,
    HostCount,
    HostKey,
    HostName,
    LabelKey,
    LocalPath,
    Port,
    RouteName,
    Seconds,
    Sha256,
    SubjectToken,
    Token,
    Tool,
    UnixUser,
    WorkerId,
)
from poller.backends import BACKENDS, NAMES

Role = Literal["broker-host", "worker-host"]
if TYPE_CHECKING:  # the values come from the backend registry (poller/backends.py)
    Backend = str
    CodexSandbox = str
    PermissionMode = str
    ApprovalMode = str
else:  # Literal[(a, b)] is Literal[a, b]
    Backend = Literal[NAMES]
    CodexSandbox = Literal[BACKENDS["codex"].setting("codex_sandbox").choices]
    PermissionMode = Literal[BACKENDS["claude"].setting("permission_mode").choices]
    ApprovalMode = Literal[BACKENDS["gemini"].setting("approval_mode").choices]
Labels = dict[LabelKey, Token]
# Stream replicas JetStream keeps a quorum of: an even count tolerates no more losses than
# the odd count below it, and 5 is its most.
Replicas = Literal[1, 3, 5]
# The broker's max_payload (nats-server's default): no stream may take a larger message.
MAX_PAYLOAD = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerEntry(_Strict):
    """One machine fleetctl manages."""

    name: HostName = Field(description="Short unique name; workers refer to it in `host:`.")
    address: Address = Field(description="DNS name or IP address fleetctl connects to over SSH.")
    user: UnixUser = Field("root", description="SSH login user (root, or one with sudo).")
    port: Port = Field(22, description="SSH port.")
    roles: list[Role] = Field(
        min_length=1,
        description="What runs here: `broker-host` (nats-server), `worker-host` (pollers).",
    )
    host_key: HostKey | None = Field(
        None,
        description="Pinned SSH host key ('ssh-ed25519 AAAA...'); otherwise known_hosts decides.",
    )
    labels: Labels = Field(default_factory=dict, description="Free-form key/value labels.")


class ServersFile(_Strict):
    """servers.yaml: the inventory."""

    version: Literal[1] = Field(1, description="File format version.")
    servers: list[ServerEntry] = Field(min_length=1, description="The hosts.")


class ServerBinary(_Strict):
    """A nats-server binary of the operator's choosing, deployed instead of the pinned one."""

    path: LocalPath = Field(
        description="The binary on the machine running fleetctl; relative to fleet.yaml."
    )
    sha256: Sha256 = Field(
        description="Its sha256 (`sha256sum PATH`): fleetctl neither runs nor deploys the "
        "binary while it differs."
    )


class NatsSettings(_Strict):
    """The task bus: where the broker listens and how streams and consumers behave."""

    subject_prefix: SubjectToken = Field(
        "af", description="First token of every subject (`af.worker.<id>.inbox`)."
    )
    listen: Address = Field(
        "127.0.0.1", description="Client listen address on the broker (workers use the tunnel)."
    )
    port: Port = Field(4222, description="Client port on the broker and on every tunnel.")
    monitor_port: Port | None = Field(
        None,
        description="nats-server's HTTP monitoring port on 127.0.0.1; off unless set. It has no "
        "authentication: any local user of the broker host reads every connection and stream.",
    )
    cluster_port: Port = Field(
        6222,
        description="With three or five broker hosts (a NATS cluster): the port each broker "
        "listens on for routes from the others, over TLS with certificates fleetctl issues "
        "(docs/operations.md). Unused with one broker.",
    )
    replicas: Replicas | None = Field(
        None,
        description="Copies of the task, result and dead-letter streams and of the leases, "
        "spend and task records buckets, each on another broker: unset, 3 with three or more "
        "broker hosts, else 1. At most the number of broker hosts.",
    )
    store_dir: AbsPath = Field(
        "/var/lib/nats/jetstream", description="JetStream store directory on the broker."
    )
    max_memory_store: Bytes = Field(256 * 1024**2, description="JetStream memory limit.")
    max_file_store: Bytes = Field(10 * 1024**3, description="JetStream disk limit.")
    ack_wait: Seconds = Field(
        60,
        description="How long a task may go without an ack or progress signal before it is "
        "delivered again; the poller signals progress every ack_wait/3 while a task runs.",
    )
    max_deliver: int = Field(
        5, ge=1, le=100, description="Deliveries of one task before it is dead-lettered."
    )
    duplicate_window: Seconds = Field(
        120, description="Window in which a repeated Nats-Msg-Id is dropped as a duplicate."
    )
    max_age: Seconds = Field(7 * 86400, description="How long tasks and results are kept.")
    server_binary: ServerBinary | None = Field(
        None,
        description="Deploy this nats-server binary to the broker instead of the pinned one "
        "(docs/security.md, Supply chain).",
    )
    # Bounds, so that no worker (and no mistake) can fill the broker's store: the account's
    # JetStream limits fit in the broker's store, the streams' in the account's.
    tasks_max_bytes: Bytes = Field(
        1024**3, description="Most bytes the task stream keeps (new tasks are refused past it)."
    )
    results_max_bytes: Bytes = Field(
        1024**3, description="Most bytes the results stream keeps (the oldest results go first)."
    )
    dead_max_bytes: Bytes = Field(
        256 * 1024**2, description="Most bytes the dead-letter stream keeps (oldest first)."
    )
    leases_max_bytes: Bytes = Field(
        64 * 1024**2,
        description="Most bytes the task leases bucket keeps (a lease is a few hundred bytes, "
        "one per running task; the oldest keys go first).",
    )
    spend_max_bytes: Bytes = Field(
        16 * 1024**2,
        description="Most bytes the spend counters bucket keeps (budgets: a few dozen bytes "
        "per worker and day).",
    )
    records_max_bytes: Bytes = Field(
        64 * 1024**2,
        description="Most bytes the task records bucket keeps (a record is a few hundred bytes "
        "per task sent; the oldest go first).",
    )
    judgments_max_bytes: Bytes = Field(
        16 * 1024**2,
        description="Most bytes the judgments bucket keeps (the dashboard's pick, pass or "
        "fail with a comment: at most 4 KiB per task and worker; the oldest go first).",
    )
    cancels_max_bytes: Bytes = Field(
        16 * 1024**2,
        description="Most bytes the cancel marks bucket keeps (`fleetctl task cancel`: a few "
        "hundred bytes per target cancelled; the oldest go first).",
    )
    max_msg_size: Bytes = Field(
        MAX_PAYLOAD,
        le=MAX_PAYLOAD,
        description="Largest message any fleet stream stores (at most the broker's 1 MiB).",
    )
    dead_letters_per_worker: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Dead letters kept per worker (its oldest go first): one worker's flood "
        "of many cannot push out another's; a flood of large ones fills dead_max_bytes, and "
        "then the stream's oldest go, whoever's they are.",
    )
    account_max_file_store: Bytes = Field(
        4 * 1024**3,
        description="JetStream disk limit of the fleet's account: at least the streams' "
        "max bytes (tasks, results, dead letters, leases, spend, records, cancels), at most "
        "max_file_store.",
    )
    account_max_memory_store: Bytes = Field(
        64 * 1024**2,
        description="JetStream memory limit of the fleet's account: at most max_memory_store.",
    )


class CredsSettings(_Strict):
    """Where the NATS identities live on the machine running fleetctl (nsc's layout)."""

    operator: Token = Field("fleet", description="Operator name in the nsc store.")
    stores_dir: LocalPath | None = Field(
        None,
        description="nsc data dir (holds `<operator>/`); default nsc's own "
        "(~/.local/share/nats/nsc/stores). Relative paths are relative to fleet.yaml.",
    )
    keys_dir: LocalPath | None = Field(
        None,
        description="nsc keystore (the .nk seeds); default nsc's own (~/.local/share/nats/nsc/keys"
        " or $NKEYS_PATH). Relative paths are relative to fleet.yaml.",
    )
    ttl: Seconds | None = Field(None, description="Lifetime of worker credentials; unset: none.")
    expiry_warning: Seconds = Field(
        7 * 86400, description="`creds list` and plans flag credentials expiring this soon."
    )


class LlmSpec(_Strict):
    """An LLM name usable in `llm:`, and which poller backend runs it."""

    backend: Backend = Field(description="Poller backend that runs this LLM's CLI.")
    bin: AbsPath | None = Field(
        None,
        description="Path of a CLI the hosts provide; unset: apply installs the pinned CLI.",
    )
    version: CliVersion | None = Field(
        None,
        description="npm version of the backend's CLI that apply installs; unset: the pinned one.",
    )
    requires_env_file: bool = Field(
        False, description="Workers using this LLM must set `env_file` (provider tokens)."
    )


def _usd(description: str) -> Any:
    return Field(None, gt=0, le=1_000_000, allow_inf_nan=False, description=description)


class BudgetSpec(_Strict):
    """Spend limits in USD, from the results' costs (priced or reported, docs/messages.md)."""

    daily_usd: float | None = _usd(
        "Most spent per UTC day; once reached, tasks are rejected and dead-lettered."
    )
    per_task_usd: float | None = _usd(
        "Most one task may cost: Claude Code's --max-budget-usd (claude workers only)."
    )


class RepoCredentials(_Strict):
    """A repository's credentials, both kinds: an ssh remote's deploy key and a forge token
    (for pull requests)."""

    deploy_key: LocalPath | None = Field(
        None,
        description="The deploy key's private key file (OpenSSH, no passphrase) on the machine "
        "running fleetctl; relative to fleet.yaml.",
    )
    token: LocalPath | None = Field(
        None,
        description="An env file holding the forge token (`GITHUB_TOKEN=...`) on the machine "
        "running fleetctl; relative to fleet.yaml.",
    )


class PullRequestSpec(_Strict):
    """Where pull requests are opened: GitHub's API (or a GitHub Enterprise server's)."""

    api: ForgeApi = Field(
        "https://api.github.com",
        description="The forge's API (GitHub Enterprise: https://HOST/api/v3).",
    )
    repo: ForgeRepo = Field(description="OWNER/NAME of the repository on the forge.")
    base: GitRef | None = Field(
        None, description="The branch pull requests target; unset: the repository's `ref`."
    )


class CopySpec(_Strict):
    """A file put into each new worktree (an `.env`, a local config): never committed."""

    from_: LocalPath = Field(
        alias="from",
        description="The file on the machine running fleetctl; relative to fleet.yaml. "
        "Shipped to the hosts like a credential.",
    )
    to: WorktreePath = Field(description="Where it goes, relative to the worktree's top.")


class RepoSpec(_Strict):
    """A git repository tasks work on: each task gets its own worktree of the host's mirror."""

    url: GitUrlText = Field(
        description="ssh (ssh://git@HOST/PATH or git@HOST:PATH), https or file:///PATH URL."
    )
    ref: GitRef | None = Field(
        None, description="Default branch tasks start from; unset: the remote's HEAD."
    )
    credentials: LocalPath | RepoCredentials | None = Field(
        None,
        description="A file on the machine running fleetctl: the deploy key of an ssh remote, "
        "or the token env file of an https one; or both as `{deploy_key, token}`. Shipped to "
        "the hosts readable only by the workers that use the repository.",
    )
    host_key: HostKey | None = Field(
        None,
        description="An ssh remote's pinned host key ('ssh-ed25519 AAAA...'); required for ssh.",
    )
    setup: list[ArgvItem] | None = Field(
        None, min_length=1, description="argv run in each new worktree before the agent."
    )
    check: list[ArgvItem] | None = Field(
        None, min_length=1, description="argv run after the agent; exit 0 is a pass."
    )
    copy_: list[CopySpec] = Field(
        default_factory=list, alias="copy", description="Files put into each new worktree."
    )
    push: bool | None = Field(
        None, description="Push each task's branch (`af/<task_id>/<worker_id>`) to the remote."
    )
    pull_request: bool | PullRequestSpec = Field(
        False,
        description="Open a pull request for each task's branch (needs a token): true for a "
        "github.com URL, or `{api, repo}` for another GitHub server.",
    )
    retain: Seconds = Field(86400, description="How long a finished task's worktree is kept.")


class WorkerDefaults(_Strict):
    """Values every worker gets unless it sets its own."""

    enabled: bool = Field(True, description="Deploy and run the worker.")
    repo: RepoName | None = Field(
        None, description="The repository (in `repos:`) a task works on unless it names another."
    )
    repos: list[RepoName] | None = Field(
        None, description="Further repositories (in `repos:`) tasks may name with `--repo`."
    )
    create_pr: bool = Field(
        False,
        description="Push each task's branch and open a pull request (a worker with a `repo`).",
    )
    concurrency: int = Field(1, ge=1, le=64, description="Tasks run at once.")
    task_timeout: Seconds = Field(1800, description="Longest a task may run before it is killed.")
    drain_timeout: Seconds | None = Field(
        None,
        description="How long a stopping poller (apply's restart, `fleetctl down`, a host "
        "shutdown) lets its running tasks finish before it hands them back to the queue; "
        "unset: the task_timeout. The unit's TimeoutStopSec follows it.",
    )
    stall_timeout: Seconds = Field(
        600,
        description="A task whose CLI shows no sign of life (no event, no output) for this "
        "long ends as `timeout` (`stalled: no output for 10m`), its processes killed.",
    )
    allowed_tools: list[Tool] = Field(
        default_factory=lambda: ["Read", "Edit", "Write", "Glob", "Grep"],
        description="Claude Code tools the worker may use (`--allowedTools`).",
    )
    github_remote: GitRemote = Field(
        "origin",
        description="No longer used: a worker's branches go to its repository's `url` "
        "(accepted as `origin` so older files load).",
    )
    codex_sandbox: CodexSandbox = Field("read-only", description="Codex `--sandbox` mode.")
    permission_mode: PermissionMode = Field(
        "default",
        description="Claude Code `--permission-mode`; `default` allows `allowed_tools` only.",
    )
    max_turns: int | None = Field(
        None, ge=1, le=10000, description="Claude Code `--max-turns`; unset: no limit."
    )
    max_budget_usd: float | None = Field(
        None,
        gt=0,
        le=10000,
        allow_inf_nan=False,
        description="Claude Code `--max-budget-usd`: a task ends when it has cost this much.",
    )
    approval_mode: ApprovalMode = Field(
        "default",
        description="Gemini CLI `--approval-mode`; `default` cannot edit headless, "
        "`auto_edit` can (developers).",
    )
    work_base: AbsPath = Field(
        "/var/lib/fleet", description="Parent of each worker's work directory (`<base>/<id>`)."
    )
    env_file: AbsPath | None = Field(
        None,
        description="File on the host with provider tokens, in /etc/fleet/env/, one per worker; "
        "fleetctl never reads it.",
    )
    labels: Labels = Field(default_factory=dict, description="Labels merged into every worker's.")
    budget: BudgetSpec = Field(
        default_factory=BudgetSpec, description="Each worker's own spend limits."
    )


def _override(
    name: str,
    *,
    merged: bool = False,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
) -> Any:
    how = "Merged over" if merged else "Overrides"
    return Field(
        None,
        description=f"{how} `defaults.{name}`.",
        ge=ge,
        gt=gt,
        le=le,
        allow_inf_nan=False if gt is not None else None,
    )


class WorkerEntry(_Strict):
    """One worker: an LLM CLI with its own NATS identity, unit and work directory."""

    worker_id: WorkerId = Field(
        description="Unique id: unit `<id>-poller.service`, subjects `<prefix>.worker.<id>.*`."
    )
    llm: Token = Field(description="claude-code, zai, codex, gemini, command, or one in `llms:`.")
    host: HostName = Field(description="Name of a worker-host in servers.yaml.")
    model: Token | None = Field(None, description="Model passed to the CLI; unset = its default.")
    lang: Token | None = Field(None, description="Main language, for routing (informational).")
    role: Token | None = Field(None, description="Role such as developer or reviewer (routing).")
    command: list[ArgvItem] | None = Field(
        None, min_length=1, description="argv of the `command` backend; the prompt is on stdin."
    )
    bin: AbsPath | None = Field(None, description="Overrides the LLM's CLI path for this worker.")
    enabled: bool | None = _override("enabled")
    repo: RepoName | None = _override("repo")
    repos: list[RepoName] | None = _override("repos")
    create_pr: bool | None = _override("create_pr")
    concurrency: int | None = _override("concurrency", ge=1, le=64)
    task_timeout: Seconds | None = _override("task_timeout")
    drain_timeout: Seconds | None = _override("drain_timeout")
    stall_timeout: Seconds | None = _override("stall_timeout")
    allowed_tools: list[Tool] | None = _override("allowed_tools")
    github_remote: GitRemote | None = _override("github_remote")
    codex_sandbox: CodexSandbox | None = _override("codex_sandbox")
    permission_mode: PermissionMode | None = _override("permission_mode")
    max_turns: int | None = _override("max_turns", ge=1, le=10000)
    max_budget_usd: float | None = _override("max_budget_usd", gt=0, le=10000)
    approval_mode: ApprovalMode | None = _override("approval_mode")
    env_file: AbsPath | None = _override("env_file")
    env_file_outside_fleet: bool = Field(
        False,
        description="Allow this worker's env_file outside /etc/fleet/env/ (systemd reads it as "
        "root and hands the worker every variable in it).",
    )
    labels: Labels | None = _override("labels", merged=True)
    budget: BudgetSpec | None = Field(
        None, description="Merged over `defaults.budget` (the worker's keys win)."
    )


class RouteSpec(_Strict):
    """A named selector for `fleetctl task send --route NAME`."""

    select: dict[LabelKey, Token] = Field(
        min_length=1,
        description="Labels or worker fields (lang, role, llm, model, host) that must all match.",
    )
    pick: Literal["any", "all"] = Field(
        "all", description="all: every enabled match gets the task; any: the least loaded one."
    )


def _usd_per_mtok(what: str, default_input: bool = False) -> Any:
    more = " Unset: the input price." if default_input else ""
    return Field(
        None if default_input else ...,
        ge=0,
        le=10000,
        allow_inf_nan=False,
        description=f"USD per million {what}.{more}",
    )


class PriceSpec(_Strict):
    """What one model costs, per million tokens: results of workers running it are priced."""

    input: float = _usd_per_mtok("input tokens (not read from a cache)")
    output: float = _usd_per_mtok("output tokens (reasoning included)")
    cache_read: float | None = _usd_per_mtok("tokens read from the prompt cache", True)
    cache_write: float | None = _usd_per_mtok("tokens written to the prompt cache", True)


class StatusSettings(_Strict):
    """What `fleetctl status --check` counts as needing a human."""

    max_lag: int = Field(
        5,
        ge=0,
        le=1_000_000,
        description="A worker with more tasks queued than this (not yet delivered) is a problem.",
    )
    max_replica_lag: int = Field(
        1000,
        ge=0,
        le=1_000_000_000,
        description="On a cluster: a stream's copy more operations behind its leader than "
        "this is a problem (on a broker that does not answer too, as its leaders count it).",
    )


class RolloutSettings(_Strict):
    """How `fleetctl apply` rolls changes out: the broker hosts first, on their own; then
    the worker hosts in batches, each checked before the next starts."""

    batch: BatchSize | None = Field(
        None,
        description="Worker hosts changed at once: a number (2) or a share of the hosts the "
        "apply changes (25%). Unset: all at once. `apply --batch` overrides it.",
    )
    max_failed: HostCount = Field(
        0,
        description="How many worker hosts may fail their checks (each rolled back to its "
        "previous version) before the rollout stops: a number or a share (10%).",
    )
    pause: Seconds | None = Field(None, description="Wait this long between two batches.")
    confirm_timeout: Seconds = Field(
        120,
        description="A host that apply has not confirmed within this time after its changes "
        "(the control machine died, the SSH link broke) restores its previous version by "
        "itself.",
    )


class FleetFile(_Strict):
    """fleet.yaml: the workers, their defaults and the task bus."""

    version: Literal[1] = Field(1, description="File format version.")
    nats: NatsSettings = Field(default_factory=NatsSettings)
    creds: CredsSettings = Field(default_factory=CredsSettings)
    llms: dict[Token, LlmSpec] = Field(
        default_factory=dict, description="Extra LLM names, or overrides of the built-in ones."
    )
    defaults: WorkerDefaults = Field(default_factory=WorkerDefaults)
    workers: list[WorkerEntry] = Field(description="The workers.")
    repos: dict[RepoName, RepoSpec] = Field(
        default_factory=dict,
        description="Git repositories the workers' tasks work on, by name.",
    )
    routes: dict[RouteName, RouteSpec] = Field(
        default_factory=dict,
        description="Named selectors for sending tasks (`--route NAME`); a name is a NATS "
        "subject token, like a worker id.",
    )
    status: StatusSettings = Field(default_factory=StatusSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    budget: BudgetSpec = Field(
        default_factory=BudgetSpec,
        description="The whole fleet's limits: daily_usd over every worker's spend together; "
        "per_task_usd caps every claude worker's.",
    )
    prices: dict[Token, PriceSpec] = Field(
        default_factory=dict,
        description="Prices by model (a worker's `model`, else its `llm`): its results are "
        "priced from its tokens instead of the CLI's own figure.",
    )
