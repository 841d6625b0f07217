"""fleet.yaml + servers.yaml -> a validated Fleet, or every problem with both files at once."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fleetctl import layout
from fleetctl.config import checks
from fleetctl.config.errors import ConfigError, Problem
from fleetctl.config.gitvalues import github_repo, parse_url
from fleetctl.config.llms import known_llms
from fleetctl.config.model import (
    CredsConfig,
    Fleet,
    Host,
    PullRequest,
    Repo,
    RepoCopy,
    Rollout,
    Route,
    Share,
    Worker,
)
from fleetctl.config.pydantic_errors import error_paths, problems_from
from fleetctl.config.routes import FIELDS, route_problems
from fleetctl.config.schema import (
    FleetFile,
    NatsSettings,
    PriceSpec,
    RepoCredentials,
    RepoSpec,
    RolloutSettings,
    ServersFile,
    WorkerEntry,
)
from fleetctl.config.yamlsource import SourceMap, load_yaml
from poller.backends import BACKENDS, CliPackage
from poller.pricing import Price

M = TypeVar("M", bound=BaseModel)
GITHUB_API = "https://api.github.com"


def _parse(
    path: Path, display: str, model: type[M]
) -> tuple[Any, SourceMap | None, M | None, list[Problem]]:
    try:
        data, source = load_yaml(path, display)
    except ConfigError as exc:
        return None, None, None, exc.problems
    if not isinstance(data, dict):
        from fleetctl.config.errors import Mark

        what = f"expected a mapping at the top, got {type(data).__name__}"
        return (
            None,
            source,
            None,
            [Problem(Mark(display, 1, 1), "", what, "see docs/configuration.md")],
        )
    try:
        return data, source, model.model_validate(data), []
    except ValidationError as exc:
        return data, source, None, problems_from(exc, model, source)


def load_fleet(
    fleet_path: Path,
    servers_path: Path,
    *,
    fleet_name: str | None = None,
    servers_name: str | None = None,
) -> Fleet:
    """Validate both files together; raise ConfigError listing every problem found."""
    s_data, s_map, servers, s_problems = _parse(
        servers_path, servers_name or str(servers_path), ServersFile
    )
    f_data, f_map, fleet, f_problems = _parse(fleet_path, fleet_name or str(fleet_path), FleetFile)
    problems = s_problems + f_problems
    bad = error_paths(s_problems) | error_paths(f_problems)
    if s_map is not None and f_map is not None:
        cross = checks.check(s_data, s_map, f_data, f_map, bad)
        problems += cross
    if problems or servers is None or fleet is None or s_map is None or f_map is None:
        raise ConfigError(problems)
    revision = hashlib.sha256(
        fleet_path.read_bytes() + b"\0" + servers_path.read_bytes()
    ).hexdigest()
    resolved = _resolve(servers, s_map, fleet, f_map, revision, fleet_path.parent)
    wrong_routes = _check_routes(resolved)
    if wrong_routes:
        raise ConfigError(wrong_routes)
    return resolved


def _check_routes(fleet: Fleet) -> list[Problem]:
    """Each route names known labels or fields and matches at least one enabled worker
    (checked on the resolved workers: their labels include the defaults')."""
    fix = "name labels or fields (" + ", ".join(FIELDS) + ") the workers have"
    return [
        Problem(route.origin, f"routes.{name}.select", what, fix)
        for name, route in fleet.routes.items()
        for what in route_problems(fleet, route)
    ]


def _resolve(
    servers: ServersFile,
    s_map: SourceMap,
    fleet: FleetFile,
    f_map: SourceMap,
    revision: str,
    base: Path,
) -> Fleet:
    hosts = tuple(
        Host(
            name=s.name,
            address=s.address,
            user=s.user,
            port=s.port,
            roles=frozenset(s.roles),
            host_key=s.host_key,
            labels=dict(s.labels),
            origin=s_map.value(("servers", i)),
        )
        for i, s in enumerate(servers.servers)
    )
    llms = known_llms(dict(fleet.llms))
    workers = tuple(
        _worker(w, fleet, llms, f_map.value(("workers", i))) for i, w in enumerate(fleet.workers)
    )
    return Fleet(
        hosts=hosts,
        workers=workers,
        nats=_nats(fleet.nats, base),
        revision=revision,
        creds=CredsConfig(
            operator=fleet.creds.operator,
            stores_dir=_local(base, fleet.creds.stores_dir),
            keys_dir=_local(base, fleet.creds.keys_dir),
            ttl=fleet.creds.ttl,
            expiry_warning=fleet.creds.expiry_warning,
        ),
        sources={s_map.file: s_map, f_map.file: f_map},
        routes={
            name: Route(name, dict(r.select), r.pick, f_map.value(("routes", name, "select")))
            for name, r in fleet.routes.items()
        },
        status=fleet.status,
        repos={
            name: _repo(name, spec, f_map.value(("repos", name)), base)
            for name, spec in fleet.repos.items()
        },
        rollout=_rollout(fleet.rollout),
    )


def _rollout(r: RolloutSettings) -> Rollout:
    return Rollout(
        batch=Share.of_value(r.batch) if r.batch is not None else None,
        max_failed=Share.of_value(r.max_failed),
        pause=r.pause or 0,
        confirm_timeout=r.confirm_timeout,
    )


def _repo(name: str, spec: RepoSpec, origin: Any, base: Path) -> Repo:
    """A repository with its local files made absolute; a bare `credentials:` path is the
    deploy key of an ssh remote and the token file of an https one (checks.py refuses the
    rest before this runs)."""
    url = parse_url(spec.url)
    creds = spec.credentials
    if isinstance(creds, str):
        creds = (
            RepoCredentials(deploy_key=creds)
            if url.scheme == "ssh"
            else RepoCredentials(token=creds)
        )
    pull = spec.pull_request
    if isinstance(pull, bool):
        on_github = github_repo(url)
        forge = PullRequest(GITHUB_API, on_github) if on_github else None
    else:
        forge = PullRequest(pull.api, pull.repo, pull.base)
    return Repo(
        name=name,
        url=spec.url,
        origin=origin,
        ref=spec.ref,
        deploy_key=_local(base, creds.deploy_key if creds else None),
        token=_local(base, creds.token if creds else None),
        host_key=spec.host_key,
        setup=tuple(spec.setup or ()),
        check=tuple(spec.check or ()),
        copy=tuple(RepoCopy(_path(base, c.from_), c.to) for c in spec.copy_),
        push=bool(spec.push) or pull is not False,
        pull_request=pull is not False,
        forge=forge,
        retain=spec.retain,
    )


def _path(base: Path, value: str) -> Path:
    path = _local(base, value)
    assert path is not None
    return path


def _nats(nats: NatsSettings, base: Path) -> NatsSettings:
    """The `nats:` block with a relative server_binary path made relative to fleet.yaml."""
    chosen = nats.server_binary
    path = _local(base, chosen.path if chosen else None)
    if chosen is None or path is None or str(path) == chosen.path:
        return nats
    return nats.model_copy(update={"server_binary": chosen.model_copy(update={"path": str(path)})})


def _local(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _worker(w: WorkerEntry, fleet: FleetFile, llms: dict[str, Any], origin: Any) -> Worker:
    d = fleet.defaults
    spec = llms[w.llm]

    def pick(name: str) -> Any:
        own = getattr(w, name)
        return getattr(d, name) if own is None else own

    own_budget = d.budget.model_copy(
        update={
            k: v for k, v in (w.budget.model_dump() if w.budget else {}).items() if v is not None
        }
    )

    cli_bin, cli = _cli(w.bin or spec.bin, spec.backend, spec.version)
    return Worker(
        id=w.worker_id,
        llm=w.llm,
        backend=spec.backend,
        bin=cli_bin,
        cli=cli,
        model=w.model,
        lang=w.lang,
        role=w.role,
        host=w.host,
        enabled=pick("enabled"),
        create_pr=pick("create_pr"),
        concurrency=pick("concurrency"),
        task_timeout=pick("task_timeout"),
        drain_timeout=pick("drain_timeout") or pick("task_timeout"),
        stall_timeout=pick("stall_timeout"),
        allowed_tools=tuple(pick("allowed_tools")),
        github_remote=pick("github_remote"),
        codex_sandbox=pick("codex_sandbox"),
        permission_mode=pick("permission_mode"),
        max_turns=pick("max_turns"),
        max_budget_usd=_lowest(
            pick("max_budget_usd"), own_budget.per_task_usd, fleet.budget.per_task_usd
        ),
        approval_mode=pick("approval_mode"),
        env_file=pick("env_file"),
        labels={**d.labels, **(w.labels or {})},
        command=tuple(w.command) if w.command else None,
        work_base=f"{d.work_base}/{w.worker_id}",
        origin=origin,
        price=_price(fleet.prices.get(w.model or "") or fleet.prices.get(w.llm)),
        daily_usd=own_budget.daily_usd,
        fleet_daily_usd=fleet.budget.daily_usd,
        env_file_outside_fleet=w.env_file_outside_fleet,
        repo=pick("repo"),
        repos=tuple(dict.fromkeys([*filter(None, [pick("repo")]), *(pick("repos") or [])])),
    )


def _lowest(*limits: float | None) -> float | None:
    given = [x for x in limits if x is not None]
    return min(given) if given else None


def _price(spec: PriceSpec | None) -> Price | None:
    if spec is None:
        return None
    return Price(spec.input, spec.output, spec.cache_read, spec.cache_write)


def _cli(
    host_bin: str | None, backend: str, version: str | None
) -> tuple[str | None, CliPackage | None]:
    """A host-provided `bin:`, or the backend's pinned CLI (at `version` if the llm sets one)
    where apply installs it."""
    pinned = BACKENDS[backend].cli
    if host_bin is not None or pinned is None:
        return host_bin, None
    cli = dataclasses.replace(pinned, version=version or pinned.version)
    return layout.llm_cli_bin(cli.package, cli.version, cli.bin), cli
