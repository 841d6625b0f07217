"""Configuration problems, each tied to a file position, reported all at once."""

from __future__ import annotations

from dataclasses import dataclass


def shown(value: str) -> str:
    """Quote a value from the input for a message without letting it break the message:
    escapes for line breaks and terminal codes, and long values cut short."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


@dataclass(frozen=True, order=True)
class Mark:
    """A 1-based position in a source file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, which field, what, and how to fix it."""

    mark: Mark
    field: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        fix = f" ({self.fix})" if self.fix else ""
        field = f" {self.field}:" if self.field else ""
        return f"{self.mark}:{field} {self.what}{fix}"


class ConfigError(Exception):
    """Raised with every problem found; the CLI prints them and exits 1."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.mark, p.field))
        super().__init__(f"{len(self.problems)} problem(s) in the configuration")


class BadValue(ValueError):
    """A value check failed; carries the explanation and the fix separately."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(what)


class NotText(BadValue):
    """YAML read a number where text was meant (`worker_id: 007`)."""
