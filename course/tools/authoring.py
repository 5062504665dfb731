"""solutions/ -> notebooks/: one source for every lesson.

Solution code sits between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` (as in
nbgrader). In the learner's copy a block at the top level of a cell becomes
``name = ...  # YOUR CODE HERE`` for each name it assigns (checking ``...``
says "not attempted"); a block inside a function body becomes
``raise NotImplementedError  # YOUR CODE HERE``. Cells tagged
``solution-only`` are dropped. All outputs and execution counts are removed,
so nothing of a solution leaks through an output or a SQL log.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB_MARK = "# YOUR CODE HERE"
DROP_TAG = "solution-only"
KEEP_METADATA = ("kernelspec", "language_info")


class AuthoringError(ValueError):
    """A solutions notebook breaks the marker conventions."""


def _assigned_names(code: str, where: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise AuthoringError(f"{where}: the solution block does not parse alone: {exc}") from None
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.AsyncFunctionDef, ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id not in names:
                    names.append(leaf.id)
    return names


def strip_solutions(source: str, where: str = "cell") -> str:
    """The learner's version of one code cell's source."""
    lines = source.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != BEGIN:
            if line.strip() == END:
                raise AuthoringError(f"{where}: {END} without {BEGIN}")
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        try:
            j = next(k for k in range(i + 1, len(lines)) if lines[k].strip() == END)
        except StopIteration:
            raise AuthoringError(f"{where}: {BEGIN} without {END}") from None
        block = "\n".join(lines[i + 1 : j])
        if indent:
            out.append(f"{indent}raise NotImplementedError  {STUB_MARK}")
        else:
            names = _assigned_names(block, where)
            if not names:
                raise AuthoringError(f"{where}: a top-level solution block must assign the answer's name")
            out += [f"{name} = ...  {STUB_MARK}" for name in names]
        i = j + 1
    return "\n".join(out)


def learner_notebook(nb: dict[str, Any], where: str = "notebook") -> dict[str, Any]:
    """The learner notebook for a solutions notebook (plain JSON dicts, nbformat 4)."""
    cells = []
    for index, cell in enumerate(nb["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if DROP_TAG in tags:
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new: dict[str, Any] = {"cell_type": cell["cell_type"]}
        if "id" in cell:
            new["id"] = cell["id"]
        metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
        new["metadata"] = metadata
        if cell["cell_type"] == "code":
            source = strip_solutions(source, f"{where} cell {index}")
            new["execution_count"] = None
            new["outputs"] = []
        elif cell["cell_type"] == "markdown" and (BEGIN in source or END in source):
            raise AuthoringError(f"{where} cell {index}: solution markers belong in code cells")
        new["source"] = source
        cells.append(new)
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_METADATA}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": nb.get("nbformat_minor", 5)}


def tidy_solution(nb: dict[str, Any]) -> dict[str, Any]:
    """Solutions are stored without outputs too: they must match both backends."""
    out = json.loads(json.dumps(nb))
    for cell in out["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
    out["metadata"] = {k: v for k, v in out.get("metadata", {}).items() if k in KEEP_METADATA}
    return out


def dumps(nb: dict[str, Any]) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def _split_lines(nb: dict[str, Any]) -> dict[str, Any]:
    """nbformat's on-disk convention: cell sources as lists of lines."""
    for cell in nb["cells"]:
        if isinstance(cell["source"], str):
            cell["source"] = cell["source"].splitlines(keepends=True)
    return nb


@dataclass
class BuildResult:
    written: list[Path]
    stale: list[Path]
    problems: list[str]


LESSON_FILE = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def build(root: Path, *, check: bool = False) -> BuildResult:
    """Regenerate ``notebooks/`` from ``solutions/`` (or, with ``check``, only compare)."""
    src, dst = root / "solutions", root / "notebooks"
    written: list[Path] = []
    stale: list[Path] = []
    problems: list[str] = []
    expected_names = set()
    for path in sorted(src.glob("*.ipynb")):
        if not LESSON_FILE.match(path.name):
            problems.append(f"{path}: lesson files are named NN_topic.ipynb")
            continue
        expected_names.add(path.name)
        nb = json.loads(path.read_text(encoding="utf-8"))
        try:
            learner = _split_lines(learner_notebook(nb, where=str(path)))
        except AuthoringError as exc:
            problems.append(str(exc))
            continue
        tidy = dumps(_split_lines(tidy_solution(nb)))
        target = dst / path.name
        text = dumps(learner)
        if check:
            if path.read_text(encoding="utf-8") != tidy:
                stale.append(path)
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target)
            continue
        if path.read_text(encoding="utf-8") != tidy:
            path.write_text(tidy, encoding="utf-8")
            written.append(path)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            dst.mkdir(exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written.append(target)
    for extra in sorted(dst.glob("*.ipynb")) if dst.exists() else []:
        if extra.name not in expected_names:
            if check:
                stale.append(extra)
            else:
                extra.unlink()
                written.append(extra)
    return BuildResult(written, stale, problems)
