"""The package's rooms and the one direction of its imports.

Platform (``course/*.py``) <- lab (``course/lab``) <- exercises (``course/exercises``) <- tools
(``course/tools``): a module may import from its own room or a room to its left, never to its
right, and no two modules import each other, however indirectly. Function-level imports count.
The package's ``__init__`` (the public API) is no room and may reach into any.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "course"
RANK = {"platform": 0, "lab": 1, "exercises": 2, "tools": 3}
# the package's public face: ``course.progress()`` shows what the exercises recorded (a function-level import)
#: ``course/__init__.py`` is the public API, not a room: it may hand out any room's function
#: (``course.progress()`` comes from the exercises), importing it lazily so ``import course`` stays quick.
FACADE = "course"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return "tools"  # ``python -m course``: a shim over course.tools.cli
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "platform"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Course modules that ``path`` imports (resolving relative imports and ``from x import mod``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def test_imports_run_one_way():
    graph = _graph()
    backwards = [
        f"{module} ({_room(module)}) imports {dep} ({_room(dep)})"
        for module, deps in graph.items()
        for dep in deps
        if RANK[_room(dep)] > RANK[_room(module)] and module != FACADE
    ]
    assert not backwards, "\n".join(backwards)


def test_no_import_cycle():
    graph = {m: {d for d in deps if d != "course"} for m, deps in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(trail[trail.index(dep):] + [module, dep]) if dep in trail else f"{module} -> {dep}")
            elif dep not in state:
                visit(dep, trail + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_backward_import(tmp_path, monkeypatch):
    """The rules above can fail: a platform module importing a tool is caught."""
    fake = tmp_path / "course"
    (fake / "tools").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "tools" / "__init__.py").write_text("")
    (fake / "tools" / "grade.py").write_text("from .. import engines\n")
    (fake / "engines.py").write_text("from .tools import grade\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = _graph()
    assert graph["course.engines"] == {"course.tools.grade"}
    assert _room("course.tools.grade") == "tools" and _room("course.engines") == "platform"
