"""No import cycle in fleetctl, poller or nsc: every import counts, those under
`TYPE_CHECKING` and inside functions included, because a cycle hidden that way is still two
modules that cannot be understood (or moved) one without the other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("fleetctl", "poller", "nsc")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """Every module of ours that `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    yield submodule
                elif base in known:
                    yield base


def graph() -> dict[str, set[str]]:
    known = modules()
    return {n: set(imported(p, n, known)) - {n} for n, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_a_cycle_hidden_in_a_function_and_under_type_checking() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    graph_now = graph()
    # the walker reads imports inside functions and TYPE_CHECKING blocks: a known lazy one
    assert "fleetctl.cli.main" in graph_now["fleetctl.cli.entry"]


def test_no_cycle_between_fleetctls_packages() -> None:
    """The layout reads top-down (docs/architecture.md, "The packages, top to bottom"): cli,
    local, ui and status, tasks, reconcile, identity, bus and artifacts, config, then
    transport, hostside and render. Two packages that import each other would make that
    picture a lie."""
    packages: dict[str, set[str]] = {}
    for module, imports in graph().items():
        parts = module.split(".")
        if parts[0] != "fleetctl" or len(parts) < 2:
            continue
        mine = packages.setdefault(parts[1], set())
        mine.update(i.split(".")[1] for i in imports if i.startswith("fleetctl.") and i.count("."))
    for name, imports in packages.items():
        imports.discard(name)
    found = cycles(packages)
    assert not found, "packages importing each other:\n" + "\n".join(" <-> ".join(c) for c in found)
