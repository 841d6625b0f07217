"""Checked value types for the two YAML files.

Every value that reaches a systemd unit, a NATS subject or a path on a host passes one of
these checks, so a hostile or mistyped value is refused with a reason instead of breaking
(or injecting into) what we render.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from fleetctl.config.errors import BadValue, NotText, shown

# Why a character is refused, checked in this order; the first that applies is reported.
_CHAR_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[\n\r]"), "contains a line break, which would end the systemd directive"),
    (re.compile(r"[\x00-\x1f\x7f]"), "contains a control character"),
    (re.compile(r"%"), "contains '%', which systemd expands as a specifier"),
    (re.compile(r"[\"'`]"), "contains a quote, which would change how systemd splits the line"),
    (re.compile(r"\\"), "contains a backslash, which systemd treats as an escape"),
    (re.compile(r"\$"), "contains '$', which systemd expands as a variable"),
    (re.compile(r"\s"), "contains whitespace"),
    (re.compile(r"\*"), "contains '*', a NATS wildcard"),
    (re.compile(r">"), "contains '>', a NATS wildcard"),
    (re.compile(r"\.\."), "contains '..'"),
]


def _explain(value: str, allowed: re.Pattern[str], expected: str, fix: str) -> None:
    if allowed.fullmatch(value):
        return
    for pattern, reason in _CHAR_REASONS:
        found = pattern.search(value)
        if found:
            raise BadValue(f"{shown(value)} {reason}", fix)
    raise BadValue(f"{shown(value)} is not {expected}", fix)


def _text(value: object) -> object:
    """YAML turns `01` into 1 and `1.0` into a float; ids and names must stay text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        raise NotText(f"expected text, got the number {value!r}", f'quote it: "{value}"')
    return value


_WORKER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,25}")
WORKER_ID_MAX = 26


def _worker_id(value: str) -> str:
    if len(value) > WORKER_ID_MAX and _WORKER_ID.fullmatch(value[:WORKER_ID_MAX]):
        raise BadValue(
            f"{shown(value)} is {len(value)} characters long",
            f"use at most {WORKER_ID_MAX}: the service user 'fleet-<id>' must fit Linux's 32",
        )
    if value != value.lower() and _WORKER_ID.fullmatch(value.lower()):
        raise BadValue(f"{shown(value)} has upper-case letters", f"use {value.lower()!r}")
    if "." in value and not re.search(r"[\s%*>\"'\\$]", value):
        raise BadValue(
            f"{shown(value)} contains '.', which separates NATS subject tokens",
            "use '-' instead",
        )
    _explain(
        value,
        _WORKER_ID,
        "a valid worker id",
        "use lower-case letters, digits and '-', starting with a letter or digit",
    )
    return value


_ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _route_name(value: str) -> str:
    """A route's name is a NATS subject token (`<prefix>.route.<name>.inbox`) and part of its
    queue consumer's name (`route-<name>`): the characters of a worker id, at most 64."""
    if value != value.lower() and _ROUTE_NAME.fullmatch(value.lower()):
        raise BadValue(f"{shown(value)} has upper-case letters", f"use {value.lower()!r}")
    if "." in value and not re.search(r"[\s%*>\"'\\$]", value):
        raise BadValue(
            f"{shown(value)} contains '.', which separates NATS subject tokens (the queue of a "
            "`pick: any` route is `<prefix>.route.<name>.inbox`)",
            "use '-' instead",
        )
    _explain(
        value,
        _ROUTE_NAME,
        "a valid route name",
        "use lower-case letters, digits and '-', starting with a letter or digit, at most 64",
    )
    return value


_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


def _host_name(value: str) -> str:
    _explain(
        value,
        _HOST_NAME,
        "a valid host name",
        "use lower-case letters, digits, '-' and '.'",
    )
    if ".." in value:
        raise BadValue(f"{shown(value)} contains '..'", "remove the empty label")
    return value


_ADDRESS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def _address(value: str) -> str:
    _explain(value, _ADDRESS, "a host name or IP address", "write a DNS name or an IP address")
    return value


_UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _unix_user(value: str) -> str:
    _explain(
        value,
        _UNIX_USER,
        "a valid user name",
        "use lower-case letters, digits, '_' and '-', at most 32 characters",
    )
    return value


_PATH = re.compile(r"/(?:[A-Za-z0-9._+@-]+/?)*")


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise BadValue(f"{shown(value)} is not an absolute path", "start it with '/'")
    _explain(
        value,
        _PATH,
        "a plain absolute path",
        "use letters, digits and . _ + @ - between the slashes",
    )
    if any(part in {".", ".."} for part in value.split("/")):
        raise BadValue(f"{shown(value)} contains '.' or '..' components", "write the real path")
    if "//" in value:
        raise BadValue(f"{shown(value)} contains '//'", "remove the empty component")
    return value.rstrip("/") or "/"


def _local_path(value: str) -> str:
    # A path on the machine running fleetctl: never rendered into a unit, so only characters
    # that no file name should have are refused.
    for pattern, reason in _CHAR_REASONS[:2]:
        if pattern.search(value):
            raise BadValue(f"{shown(value)} {reason}", "remove it")
    if not value:
        raise BadValue("is empty", "write a path, or remove the key for the default")
    return value


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+@=-]*")


def _token(value: str) -> str:
    _explain(
        value,
        _TOKEN,
        "a plain word",
        "use letters, digits and . _ : / + @ = -",
    )
    return value


_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _subject_token(value: str) -> str:
    _explain(
        value,
        _SUBJECT_TOKEN,
        "a single NATS subject token",
        "use letters, digits, '_' and '-' (no '.')",
    )
    return value


_TOOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/*()@+= -]*")


def _tool(value: str) -> str:
    if "," in value:
        raise BadValue(
            f"{shown(value)} contains ',', which separates tools",
            "list each tool as its own item",
        )
    # '*' is a legitimate tool pattern (e.g. 'Bash(git log:*)'): only characters that
    # would break the unit are refused.
    for pattern, reason in _CHAR_REASONS[:6]:
        found = pattern.search(value)
        if found:
            raise BadValue(f"{shown(value)} {reason}", "remove it")
    if not _TOOL.fullmatch(value):
        raise BadValue(
            f"{shown(value)} is not a tool name", "write a tool like Read or 'Bash(git log:*)'"
        )
    return value


def _argv_item(value: str) -> str:
    # Argument values go through the one systemd quoting filter, so quotes, '%' and '$'
    # are fine here; only characters that cannot survive any quoting are refused.
    for pattern, reason in _CHAR_REASONS[:2]:
        if pattern.search(value):
            raise BadValue(f"{shown(value)} {reason}", "remove it")
    return value


_REMOTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*|(?:https://|ssh://|git@)[A-Za-z0-9._:/@~+-]+")


def _git_remote(value: str) -> str:
    _explain(
        value,
        _REMOTE,
        "a git remote name or URL",
        "write a remote name like 'origin' or an https:// or git@ URL",
    )
    return value


_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")


def _label_key(value: str) -> str:
    _explain(value, _LABEL_KEY, "a valid label key", "use lower-case letters, digits, . _ / -")
    return value


_HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


def _host_key(value: str) -> str:
    parts = value.split()
    fix = "paste the line from /etc/ssh/ssh_host_ed25519_key.pub on the host"
    if len(parts) < 2 or parts[0] not in _HOST_KEY_TYPES:
        raise BadValue("is not an SSH public key ('<type> <base64>')", fix)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise BadValue("has a key that is not valid base64", fix) from None
    if not blob.startswith(len(parts[0]).to_bytes(4, "big") + parts[0].encode()):
        raise BadValue(f"has a key whose contents are not of type {parts[0]}", fix)
    return f"{parts[0]} {parts[1]}"


# [0-9], not \d: \d also matches other scripts' digits (a fullwidth 5), which JSON Schema
# checks in editors refuse.
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")

# nats-server reads durations as Go's time.Duration, a signed 64-bit count of nanoseconds:
# a longer ack_wait, max_age or duplicate_window is refused by the JetStream API. Every
# duration is held to it (credential lifetimes and task timeouts too: ~292 years is plenty).
MAX_SECONDS = (2**63 - 1) // 1_000_000_000  # 9,223,372,036 s
# nats-server reads max_memory_store and max_file_store as signed 64-bit integers and exits
# at start on anything larger.
MAX_BYTES = 2**63 - 1


def _written(value: object) -> str:
    return shown(value) if isinstance(value, str) else repr(value)


def _matching(pattern: str, what: str, fix: str) -> Callable[[str], str]:
    """A check that the whole value matches `pattern`, saying what it is not and the fix."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise BadValue(f"{shown(value)} is not {what}", fix)
        return value

    return check


_sha256 = _matching(
    r"[0-9a-f]{64}",
    "a sha256 (64 lower-case hex digits)",
    "write what `sha256sum FILE` prints before the file name",
)
_cli_version = _matching(
    r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?",
    "an exact npm version",
    "write the exact version npm installs, like 2.1.197 or 1.0.0-beta.1, not a range",
)


def parse_duration(value: object) -> int:
    """'90s', '5m', '1h30m', '7d' or a number of seconds (`90`, or `'90'` as an option or a
    quoted YAML value gives it), as whole seconds."""
    if isinstance(value, bool):
        raise BadValue(f"expected a duration, got {value!r}", "write it like 60s, 5m, 2h or 7d")
    seconds: int | None = None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds is None:
        raise BadValue(f"{_written(value)} is not a duration", "write it like 60s, 5m, 2h or 7d")
    limit = f"long: at most {MAX_SECONDS}s, about 292 years, the longest duration"
    return _at_most(value, seconds, MAX_SECONDS, limit, "write a shorter duration")


def written_duration(seconds: float) -> str:
    """Seconds as fleet.yaml writes them: 1800 -> 30m, 5400 -> 1h30m, 45 -> 45s, 2.5 -> 2.5s."""
    if seconds != int(seconds) or seconds < 1:
        return f"{seconds:g}s"
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


def _at_most(value: object, parsed: int, most: int, limit: str, fix: str) -> int:
    if parsed > most:
        raise BadValue(f"{_written(value)} is too {limit} nats-server takes", fix)
    return parsed


_SIZE = re.compile(r"([0-9]+)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2}
_UNITS |= {"mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}
_UNITS |= {"t": 1024**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(value: object) -> int:
    """'256MiB', '10GiB', '1G' or a number of bytes."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if size is None:
        raise BadValue(f"{_written(value)} is not a size", "write it like 512MiB or 10GiB")
    limit = f"large: at most {MAX_BYTES} bytes, just under 8 EiB, the largest size"
    return _at_most(value, size, MAX_BYTES, limit, "write a smaller size")


WorkerId = Annotated[str, BeforeValidator(_text), AfterValidator(_worker_id)]
RouteName = Annotated[str, BeforeValidator(_text), AfterValidator(_route_name)]
HostName = Annotated[str, BeforeValidator(_text), AfterValidator(_host_name)]
Address = Annotated[str, BeforeValidator(_text), AfterValidator(_address)]
UnixUser = Annotated[str, BeforeValidator(_text), AfterValidator(_unix_user)]
LocalPath = Annotated[str, BeforeValidator(_text), AfterValidator(_local_path)]
AbsPath = Annotated[str, BeforeValidator(_text), AfterValidator(_abs_path)]
Token = Annotated[str, BeforeValidator(_text), AfterValidator(_token)]
SubjectToken = Annotated[str, BeforeValidator(_text), AfterValidator(_subject_token)]
Tool = Annotated[str, BeforeValidator(_text), AfterValidator(_tool)]
ArgvItem = Annotated[str, BeforeValidator(_text), AfterValidator(_argv_item)]
GitRemote = Annotated[str, BeforeValidator(_text), AfterValidator(_git_remote)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
HostKey = Annotated[str, AfterValidator(_host_key)]
Sha256 = Annotated[str, BeforeValidator(_text), AfterValidator(_sha256)]
CliVersion = Annotated[str, BeforeValidator(_text), AfterValidator(_cli_version)]
Seconds = Annotated[
    int,
    BeforeValidator(parse_duration),
    Field(ge=1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
                {"type": "string", "pattern": r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"},
            ],
            "examples": ["60s", "5m", "2h", "7d"],
        }
    ),
]
Bytes = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(ge=1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
                {"type": "string", "pattern": r"^[0-9]+\s*([KMGT]i?B?|B)?$"},
            ],
            "examples": ["512MiB", "10GiB"],
        }
    ),
]
Port = Annotated[int, Field(ge=1, le=65535)]


def _share(least: int) -> Callable[[object], int | str]:
    """A number of hosts (2, at least `least`) or a share of them ('25%', 1 to 100)."""

    fix = 'write a number of hosts like 2, or a share of them like "25%"'

    def parse(value: object) -> int | str:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise BadValue(f"{_written(value)} is not a number of hosts or a share", fix)
        text = str(value).strip()
        match = re.fullmatch(r"([0-9]{1,9})(%?)", text)
        if match is None:
            raise BadValue(f"{_written(value)} is not a number of hosts or a share", fix)
        number, percent = int(match.group(1)), bool(match.group(2))
        if percent and not 1 <= number <= 100:
            raise BadValue(f"{_written(value)} is not a share from 1% to 100%", fix)
        if not percent and number < least:
            raise BadValue(f"{_written(value)} is less than {least}", fix)
        return f"{number}%" if percent else number

    return parse


def _share_schema(least: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": least},
                {"type": "string", "pattern": r"^[0-9]+%$"},
            ],
            "examples": [2, "25%"],
        }
    )


# `rollout.batch`, `apply --batch`: at least one host; `rollout.max_failed`: none or more.
BatchSize = Annotated[int | str, BeforeValidator(_share(1)), _share_schema(1)]
HostCount = Annotated[int | str, BeforeValidator(_share(0)), _share_schema(0)]


def parse_batch(value: object) -> int | str:
    """`apply --batch N|P%`, checked as fleet.yaml's `rollout.batch` is."""
    return _share(1)(value)
