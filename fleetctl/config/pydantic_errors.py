"""Turn pydantic's validation errors into Problems people can act on."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from fleetctl.config.errors import BadValue, NotText, Problem
from fleetctl.config.yamlsource import PathKey, SourceMap, dotted


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: PathKey) -> type[BaseModel] | None:
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            info = current.model_fields.get(part)
            if info is None:
                return None
            current = info.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _literal_choices(root: type[BaseModel], loc: PathKey) -> str:
    """'1' or '1 or 2' when the field at `loc` takes only those values, else ''."""
    model = _model_at(root, loc[:-1])
    info = model.model_fields.get(str(loc[-1])) if model and loc else None
    annotation = _unwrap(info.annotation) if info else None
    if get_origin(annotation) is not typing.Literal:
        return ""
    return " or ".join(repr(a) for a in get_args(annotation))


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int) and len(str(abs(value))) > 40:
        return f"a number of {len(str(abs(value)))} digits"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) < 40 else "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _describe(err: Any, root: type[BaseModel]) -> tuple[str, str]:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    if isinstance(ctx.get("error"), BadValue):
        bad: BadValue = ctx["error"]
        return bad.what, bad.fix
    if kind == "missing":
        return "is required", f"add `{loc[-1]}:`"
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        hint = did_you_mean(str(loc[-1]), allowed)
        if not hint:
            hint = "allowed keys: " + ", ".join(allowed) if allowed else "remove it"
        return "unknown key", hint
    if kind in ("string_type",):
        return f"expected text, got {_type_name(value)}", "quote it"
    if kind == "finite_number":
        return f"expected a finite number, got {_type_name(value)}", "write a number like 2.5"
    if kind == "int_parsing_size":  # a number beyond what pydantic parses, e.g. `version: 1e30`
        only = _literal_choices(root, loc)
        if only:
            return f"{_type_name(value)} is not allowed", f"use {only}"
        return f"{_type_name(value)} is too large", "write a smaller number"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_type_name(value)}", "write a number like 3"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_type_name(value)}", "write true or false"
    if kind == "list_type":
        return f"expected a list, got {_type_name(value)}", "write one '- item' per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_type_name(value)}", "write `key: value` lines"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = [c.strip().strip("'") for c in str(expected).replace(" or ", ", ").split(",")]
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"{_type_name(value)} is not allowed", hint or f"use one of {expected}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{_type_name(value)}: {err['msg'].lower()}", "change the value"
    if kind in ("too_short", "too_long"):
        return err["msg"].lower().replace("list", "the list"), "change the number of items"
    return err["msg"], "see docs/configuration.md for what this field takes"


def problems_from(exc: ValidationError, root: type[BaseModel], source: SourceMap) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")
        what, fix = _describe(err, root)
        raw = source.raw_numbers.get(loc)
        if raw is not None and isinstance((err.get("ctx") or {}).get("error"), NotText):
            fix = f'quote it: "{raw}"'
        if err["type"] == "extra_forbidden" or "[key]" in err["loc"]:
            mark = source.key(loc)
        elif err["type"] == "missing":
            mark = source.value(loc[:-1])
        else:
            mark = source.value(loc)
        problems.append(Problem(mark, dotted(loc), what, fix))
    return problems


def error_paths(problems: list[Problem]) -> set[str]:
    return {p.field for p in problems}
