"""What the Task page shows, from one task's answers: a cell per target, the modes All /
Failed / Different, two workers compared, diffs as classified lines. Pure: the templates
escape every value; nothing here builds HTML."""

from __future__ import annotations

import difflib
import functools
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetctl.tasks import changes
from fleetctl.tasks.answers import Answers
from fleetctl.tasks.messages import Result
from fleetctl.ui.results_view import check_state, diffstat

MODES = ("all", "failed", "different")


@dataclass(frozen=True)
class Line:
    kind: str  # file, hunk, add, del, ctx, meta
    text: str
    # The code of an add, del or ctx line as (token class, text): its syntax colouring,
    # by the file's language (Pygments); () when the language is not known.
    tokens: tuple[tuple[str, str], ...] = ()


HEADER_LINES = (
    "diff --git ",
    "+++",
    "---",
    "index ",
    "new file mode",
    "deleted file mode",
    "old mode",
    "new mode",
    "similarity index",
    "rename from",
    "rename to",
    "Binary files",
)
MAX_COLOURED = 4000  # lines of one diff given syntax colouring; the rest keep their +/- colour


def classify(lines: Sequence[str]) -> list[Line]:
    """Unified diff lines with what each is, for colouring by class (never by markup), and
    the code on them coloured by the language of the file they belong to."""
    return list(_classified(tuple(lines)))


@functools.lru_cache(maxsize=128)
def _classified(lines: tuple[str, ...]) -> tuple[Line, ...]:
    out = []
    lexer: Any = None
    for n, line in enumerate(lines):
        if line.startswith("+++ "):
            lexer = _lexer(line.removeprefix("+++ ").removeprefix("b/"))
        elif line.startswith("diff --git "):
            lexer = _lexer(line.rsplit(" b/", 1)[-1])
        if line.startswith(HEADER_LINES):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("\\"):
            kind = "meta"
        else:
            kind = "ctx"
        tokens: tuple[tuple[str, str], ...] = ()
        if kind in ("add", "del", "ctx") and lexer is not None and n < MAX_COLOURED:
            tokens = ((kind, line[:1]), *_tokens(lexer, line[1:]))
        out.append(Line(kind, line, tokens))
    return tuple(out)


def warm() -> None:
    """Import Pygments' lexers now, once, rather than in the first Task page's time (each
    other language compiles its rules at its first diff)."""
    _tokens(_lexer("warm.py"), "def warm() -> None:  # warm")


def _lexer(path: str) -> Any:
    """The Pygments lexer for a file name, or None (no guessing from the content)."""
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        return get_lexer_for_filename(path.strip(), stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _tokens(lexer: Any, code: str) -> list[tuple[str, str]]:
    """One line of code as (short token class, text), as Pygments' HTML classes name them."""
    from pygments.token import STANDARD_TYPES

    out: list[tuple[str, str]] = []
    for kind, text in lexer.get_tokens(code):
        if not text:
            continue
        while kind not in STANDARD_TYPES and kind.parent is not None:
            kind = kind.parent
        short = STANDARD_TYPES.get(kind, "")
        if out and out[-1][0] == short:
            out[-1] = (short, out[-1][1] + text)
        else:
            out.append((short, text))
    return out


@dataclass(frozen=True)
class Cell:
    worker_id: str
    status: str
    took: str
    cost: str
    tokens: str
    turns: str
    check: str
    diffstat: str
    output: str
    files: list[Mapping[str, Any]]
    patch: list[Line]
    judgment: Mapping[str, Any] | None
    unsolicited: bool
    apply_command: str | None
    content_key: str

    @property
    def failed(self) -> bool:
        return self.status != "completed" or self.check.startswith("failed")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cell(task_id: str, r: Result) -> Cell:
    b = r.body
    found_code, found_usage = b.get("code"), b.get("usage")
    code: dict[str, Any] = found_code if isinstance(found_code, dict) else {}
    usage: dict[str, Any] = found_usage if isinstance(found_usage, dict) else {}
    took, cost = _num(b.get("duration_s")), _num(b.get("cost_usd"))
    if r.elapsed_s is not None:
        took = r.elapsed_s
    inp, outp = usage.get("input_tokens"), usage.get("output_tokens")
    patch_text = changes.Change(r.worker_id, code).patch.decode(errors="replace") if code else ""
    files: list[Mapping[str, Any]] = [f for f in code.get("files") or [] if isinstance(f, dict)]
    command = None
    if code and patch_text:
        command = shlex.join(["fleetctl", "results", task_id, "--apply", r.worker_id])
    return Cell(
        worker_id=r.worker_id,
        status=r.status,
        took=f"{took:.1f}s" if took is not None else "-",
        cost=f"${cost:.4f}" if cost is not None else "-",
        tokens="-" if inp is None and outp is None else f"{inp or 0} in / {outp or 0} out",
        turns=str(usage.get("turns") or b.get("num_turns") or "-"),
        check=check_state(code.get("check")) if code else "-",
        diffstat=diffstat(code) if code else "-",
        output=r.output or str(b.get("error") or b.get("reason") or ""),
        files=files,
        patch=classify(patch_text.splitlines()),
        judgment=r.judgment,
        unsolicited=bool(r.unsolicited),
        apply_command=command,
        content_key=patch_text if code else r.output.strip(),
    )


def cells(answers: Answers, mode: str) -> list[Cell]:
    """Every target's cell (`all`), those that failed (`failed`: not completed, or a check
    that failed), or those whose output or change is not the most common one (`different`)."""
    every = [cell(answers.task_id, r) for r in answers.results]
    if mode == "failed":
        return [c for c in every if c.failed]
    if mode == "different":
        common = Counter(c.content_key for c in every if c.status == "completed").most_common(1)
        usual = common[0][0] if common else None
        return [c for c in every if c.content_key != usual]
    return every


def compare(answers: Answers, a: str, b: str) -> list[Line]:
    """A's and B's changes compared (`-` only A's, `+` only B's), or their outputs when
    the task had no code; ChangeError when either has no result."""
    found = answers.results
    ra = next((r for r in found if r.worker_id == a), None)
    rb = next((r for r in found if r.worker_id == b), None)
    if ra is None or rb is None:
        missing = a if ra is None else b
        raise changes.ChangeError(f"no result from {missing} for this task")
    if isinstance(ra.body.get("code"), dict) and isinstance(rb.body.get("code"), dict):
        return classify(changes.compare(changes.of(found, a), changes.of(found, b)))
    diff = difflib.unified_diff(
        ra.output.splitlines(), rb.output.splitlines(), a, b, lineterm="", n=2
    )
    return classify(list(diff))


def bars(rows: Sequence[Mapping[str, Any]], width: int = 300) -> list[dict[str, Any]]:
    """A bar per ledger row, its width in SVG units against the largest cost."""
    top = max((float(r["cost_usd"]) for r in rows), default=0.0)
    return [
        {
            "key": r["key"],
            "cost_usd": r["cost_usd"],
            "width": round(width * float(r["cost_usd"]) / top) if top else 0,
            "y": i * 22,
        }
        for i, r in enumerate(rows)
    ]
