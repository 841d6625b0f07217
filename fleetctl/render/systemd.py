"""The one place values are escaped for systemd unit files.

Every value a template puts into a unit passes through `systemd_word`, so no template
escapes by hand. Validation already refuses most hostile input; this is the second line.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


class UnitValueError(ValueError):
    """A value that no quoting can carry into a unit file (a line break, a control char)."""


def systemd_word(value: object) -> str:
    """Quote `value` as one word of a systemd directive.

    systemd splits directive values on whitespace, honours C-style escapes inside double
    quotes and expands `%` specifiers after unquoting, so: double `%`, and quote (escaping
    `\\` and `"`) whenever the value has whitespace, quotes, backslashes or `;`.
    """
    text = str(value)
    if _UNSAFE.search(text):
        raise UnitValueError("a control character or line break cannot go into a unit file")
    text = text.replace("%", "%%")
    if text == "" or _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text
