"""Grade learner notebooks: execute them and read back every exercise's verdict.

Each check displays its verdict with a JSON copy in its own MIME type; the
grader runs the notebook (continuing past errors, so a notebook that crashes
half-way still gets a scorecard for what ran), collects those, and lists the
lesson's exercises that never reported as "not run".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..exercises import all_exercises
from ..exercises.verdict import MIME, NOT_ATTEMPTED, distinct, plain

NOT_RUN = "not run"
_ICON = {"correct": "✅", "incorrect": "❌", "not attempted": "✏️", "error": "⚠️", NOT_RUN: "⏸"}


@dataclass
class Scorecard:
    notebook: str
    lesson: str
    exercises: list[dict[str, Any]] = field(default_factory=list)
    crashed_cells: list[str] = field(default_factory=list)

    @property
    def score(self) -> tuple[int, int]:
        return sum(1 for e in self.exercises if e["status"] == "correct"), len(self.exercises)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["score"] = list(self.score)
        return out

    def render(self) -> str:
        """One line per exercise, then each distinct problem once: a problem several exercises
        share (the same missing function, the same error) is said at its first exercise and
        referred to after."""
        got, total = self.score
        lines = [f"{self.notebook}: {got}/{total} correct"]
        said: dict[str, str] = {}  # problem (as distinct() compares it) -> exercise that said it
        for e in self.exercises:
            lines.append(f"  {_ICON.get(e['status'], '?')} {e['exercise']} {plain(e['title'])}: {e['status']}")
            if e["status"] in (NOT_RUN, "not attempted", "correct"):
                continue
            problems = [e["message"]] if e.get("message") else []
            problems += [r["message"] for r in e.get("rules", []) if not r["passed"] and r["message"]]
            for problem in distinct(problems):
                earlier = next((ex for p, ex in said.items() if distinct([p, problem]) == [p]), None)
                if earlier is not None:
                    lines.append(f"       same problem as {earlier}")
                    continue
                said[problem] = e["exercise"]
                lines.append(f"       {plain(problem)}")
        for crash in self.crashed_cells:
            lines.append(f"  ! a cell failed: {crash}")
        return "\n".join(lines)


def lesson_of(path: Path) -> str:
    match = re.match(r"(\d\d)_", path.name)
    return match.group(1) if match else path.stem


def grade_notebook(path: Path, *, timeout: int = 300) -> Scorecard:
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    lesson = lesson_of(path)
    env_before = {k: os.environ.get(k) for k in ("COURSE_STRICT", "COURSE_NAMESPACE")}
    # the grader judges; it does not stop at the first wrong answer
    os.environ["COURSE_STRICT"] = "0"
    os.environ["COURSE_NAMESPACE"] = "g" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    try:
        client = NotebookClient(
            nb, timeout=timeout, allow_errors=True, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        client.execute()
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    card = Scorecard(notebook=str(path), lesson=lesson)
    seen: dict[str, dict[str, Any]] = {}
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") in ("display_data", "execute_result") and MIME in output.get("data", {}):
                verdict = output["data"][MIME]
                seen[verdict["exercise"]] = verdict
            if output.get("output_type") == "error":
                card.crashed_cells.append(f"cell {index}: {output.get('ename')}: {output.get('evalue', '')[:200]}")
    for ex_id, ex in sorted(all_exercises().items()):
        if ex_id.split(".")[0] != lesson:
            continue
        card.exercises.append(
            seen.get(ex_id, {"exercise": ex_id, "title": ex.title, "status": NOT_RUN, "message": "", "rules": []})
        )
    return card


def grade(paths: list[Path], *, json_path: Path | None = None) -> list[Scorecard]:
    cards = [grade_notebook(p) for p in paths]
    if json_path is not None:
        json_path.write_text(json.dumps([c.to_dict() for c in cards], indent=2), encoding="utf-8")
    return cards


__all__ = ["NOT_ATTEMPTED", "NOT_RUN", "Scorecard", "grade", "grade_notebook"]
