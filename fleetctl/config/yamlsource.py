"""Load YAML into plain data while remembering where every key and value came from.

PyYAML's constructors drop positions, so we compose nodes (libyaml when available, which
keeps validation of a 1,000-worker fleet fast) and build the data ourselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.config.errors import ConfigError, Mark, Problem, shown

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Positions of values and keys, by their path in the document."""

    file: str
    values: dict[PathKey, Mark] = field(default_factory=dict)
    keys: dict[PathKey, Mark] = field(default_factory=dict)
    # The text as written, for scalars YAML turned into numbers (`007` -> 7).
    raw_numbers: dict[PathKey, str] = field(default_factory=dict)

    def value(self, path: PathKey) -> Mark:
        """Where the value at `path` is, or the nearest enclosing value."""
        for n in range(len(path), -1, -1):
            mark = self.values.get(path[:n])
            if mark is not None:
                return mark
        return Mark(self.file, 1, 1)

    def key(self, path: PathKey) -> Mark:
        """Where the key that names `path` is (falls back to its value)."""
        return self.keys.get(path) or self.value(path)


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


# Far beyond any real fleet (1,000 workers is about 12,000 values), far below what an
# alias bomb ("billion laughs") would expand to.
MAX_VALUES = 100_000  # 50 times what a 100-worker fleet.yaml holds; an alias bomb stops in ~0.4 s
MAX_DEPTH = 64
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


class _Abort(Exception):
    """Stops building: the document cannot be read safely any further."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Builder:
    def __init__(self, file: str) -> None:
        self.map = SourceMap(file)
        self.problems: list[Problem] = []
        self.count = 0
        self.open_nodes: set[int] = set()

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        mark = _mark(self.map.file, node)
        self.map.values[path] = mark
        self.count += 1
        if self.count > MAX_VALUES:
            raise _Abort(
                Problem(
                    mark,
                    _dotted(path),
                    f"the document expands to more than {MAX_VALUES:,} "
                    "values (aliases that repeat aliases?)",
                    "write the values out plainly",
                )
            )
        if len(path) > MAX_DEPTH:
            raise _Abort(
                Problem(
                    mark,
                    "",
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    "check the brackets and indentation",
                )
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path, mark)
        if id(node) in self.open_nodes:
            raise _Abort(
                Problem(
                    mark,
                    _dotted(path),
                    "an alias refers to a value that contains it",
                    "remove the alias or point it elsewhere",
                )
            )
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open_nodes.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, path: PathKey, mark: Mark) -> Any:
        if node.tag in _NUMBER_TAGS:
            self.map.raw_numbers[path] = node.value
        try:
            return _constructor.construct_object(node)
        except yaml.constructor.ConstructorError:
            self.problems.append(
                Problem(mark, _dotted(path), f"unsupported YAML tag {node.tag!r}", "remove the tag")
            )
        except (ValueError, OverflowError, TypeError, AttributeError, KeyError) as exc:
            # PyYAML's own message where it has one; a `!!timestamp` that is not a date
            # ends in AttributeError and `!!bool maybe` in KeyError, which say nothing.
            tag = node.tag.rsplit(":", 1)[-1]
            why = f" ({exc})" if isinstance(exc, ValueError | OverflowError) else ""
            self.problems.append(
                Problem(
                    mark,
                    _dotted(path),
                    f"{shown(node.value)} cannot be read as a {tag}{why}",
                    "quote it to make it text",
                )
            )
        return None

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = self.build(value_node, path)
                if isinstance(merged, dict):
                    for k, v in merged.items():
                        result.setdefault(k, v)
                continue
            key_mark = _mark(self.map.file, key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(key_mark, _dotted(path), "a key must be plain text", "write key: value")
                )
                continue
            key = str(key_node.value)
            if key in first_seen:
                self.problems.append(
                    Problem(
                        key_mark,
                        _dotted((*path, key)),
                        f"duplicate key (first defined at line {first_seen[key].line})",
                        "keep one of them",
                    )
                )
                continue
            first_seen[key] = key_mark
            self.map.keys[(*path, key)] = key_mark
            result[key] = self.build(value_node, (*path, key))
        return result


# A key printed as written; any other key is printed quoted, with its escapes.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@:+-]*")


def _dotted(path: PathKey) -> str:
    """`workers[0].labels.team`; a key holding anything else (a line break, a terminal
    escape, a space) as `workers[0]['a\\nb']`, so no key can print a fake line or hide text."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


dotted = _dotted


def load_yaml(path: Path, display: str) -> tuple[Any, SourceMap]:
    """Parse one file; raise ConfigError (never a traceback) for anything unreadable."""
    origin = Mark(display, 1, 1)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(origin, "", "file not found", "create it, or pass its path with -f/-s")]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [Problem(origin, "", "is a directory, not a YAML file", "pass the file's path")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(origin, "", f"is not UTF-8 text ({exc.reason})", "save it as UTF-8")]
        ) from None
    except OSError as exc:
        raise ConfigError([Problem(origin, "", f"cannot be read: {exc.strerror}")]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        where = Mark(display, before.count("\n") + 1, len(before) - before.rfind("\n"))
        what = f"contains the character {chr(exc.character)!r}, which YAML does not allow"
        raise ConfigError([Problem(where, "", what, "remove it")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end of stream" in str(exc.problem):
            mark = exc.context_mark  # an unclosed quote or bracket: point at where it opens
        where = Mark(display, mark.line + 1, mark.column + 1) if mark else origin
        what = f"YAML syntax error: {exc.problem or exc.context}"
        raise ConfigError([Problem(where, "", what, _syntax_hint(exc))]) from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([Problem(origin, "", f"YAML error: {first_line}")]) from None
    except RecursionError:
        raise ConfigError(
            [Problem(origin, "", "values are nested too deeply", "check brackets and indentation")]
        ) from None
    if node is None:
        raise ConfigError([Problem(origin, "", "file is empty", "see docs/configuration.md")])
    builder = _Builder(display)
    try:
        data = builder.build(node, ())
    except _Abort as abort:
        raise ConfigError([abort.problem]) from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return data, builder.map


def _syntax_hint(exc: yaml.MarkedYAMLError) -> str:
    problem = str(exc.problem or "")
    if "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or fix the indentation"
    if "could not find expected ':'" in problem:
        return "every key needs a ':' after it"
    if "another document" in problem:
        return "keep one document per file: remove the '---' line and what follows, or merge it"
    if "expected <block end>" in problem:
        return "check the indentation of this line against the lines above"
    return "check the indentation and quoting around this position"
