"""Jinja2 environments that fail loudly and escape every value in one place.

Each output format has its own environment whose `finalize` hook escapes every `{{ value }}`:
unit files through `systemd_word`, nats-server.conf through `nats_value`. Templates never
escape by hand, so a template cannot forget to. StrictUndefined turns a typo into an error.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from fleetctl.render.systemd import systemd_word


class Raw(str):
    """A pre-rendered block (e.g. the resolver config) that must be inserted as it is."""

    __slots__ = ()


def nats_value(value: object) -> str:
    """nats-server.conf: strings JSON-quoted, numbers as they are."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return json.dumps(str(value))
    return str(value)


def templates_dir() -> Path:
    """fleetctl/templates: package data, the same in a checkout and in an installed wheel."""
    return Path(__file__).resolve().parent.parent / "templates"


def is_ip_address(value: object) -> bool:
    """An IP literal (a unit can allow-list it with IPAddressAllow=), not a host name."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def is_loopback(value: object) -> bool:
    """A listen address only this machine can reach."""
    if str(value) == "localhost":
        return True
    return is_ip_address(value) and ipaddress.ip_address(str(value)).is_loopback


@cache
def _environment(finalize: Callable[[Any], str]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        auto_reload=False,  # one run renders hundreds of units; templates do not change meanwhile
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - unit files and configs, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )
    env.tests["ip_address"] = is_ip_address
    env.tests["loopback"] = is_loopback
    return env


def render_unit(template: str, **context: object) -> str:
    return _environment(systemd_word).get_template(template).render(**context)


def render_nats_conf(template: str, **context: object) -> str:
    return _environment(nats_value).get_template(template).render(**context)
