"""The package's import structure: no import circle, and the runtime never imports the lab, the CLI or
the composition root (``detector.app``). Every import counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "detector"
#: Modules above the runtime: they may import it, never the other way round.
UPPER = ("detector.lab", "detector.cli", "detector.app", "detector.__main__")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import submodule`` imports the submodule (the package's own __init__
                # runs for any submodule import, so it is not an edge of its own)
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                # the deepest module the name points at (a package's __init__ counts for the package)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("detector"):
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_upper(module: str) -> bool:
    return any(module == u or module.startswith(u + ".") for u in UPPER)


def test_no_import_circle() -> None:
    assert _cycles(_graph()) == []


def test_runtime_never_imports_lab_cli_or_app() -> None:
    bad = [
        f"{m} -> {d}"
        for m, deps in sorted(_graph().items())
        if not _is_upper(m)
        for d in sorted(deps)
        if _is_upper(d)
    ]
    assert bad == []


def test_the_checks_can_fail() -> None:
    """The walker sees a circle and an upward import where there is one."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    graph = _graph()
    assert "detector.app" in graph["detector.cli.main"]
    assert "detector.engine" in graph["detector.app"] or any(
        d.startswith("detector.engine") for d in graph["detector.app"]
    )


@pytest.mark.parametrize("upper", UPPER)
def test_upper_layers_exist(upper: str) -> None:
    assert any(m == upper or m.startswith(upper + ".") for m in _graph())


#: A module says one thing: past this many lines it is split by what it says (round 12 split the
#: evidence settings out of ``settings.py`` and the matrix's knobs out of ``lab/matrix.py``).
MAX_MODULE_LINES = 400


def _long_modules(root: Path, limit: int) -> list[str]:
    return sorted(
        f"{p.relative_to(root.parent)}: {n} lines"
        for p in root.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit
    )


def test_no_module_is_longer_than_the_limit() -> None:
    assert _long_modules(PACKAGE, MAX_MODULE_LINES) == []
    assert _long_modules(PACKAGE, 300)  # the count sees real modules: some are longer than 300
