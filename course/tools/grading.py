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
    no_exercises: bool = False  # the notebook is no lesson with exercises (not run, nothing graded)
    timed_out: bool = False  # stopped after the grader's --timeout

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
        if self.no_exercises:
            return (f"{self.notebook}: no exercises to grade (lesson {self.lesson!r} has none; "
                    "a lesson notebook's name starts with its number, e.g. 03_...)")
        lines = [f"{self.notebook}: {got}/{total} correct" + (" (stopped: ran out of time)" if self.timed_out else "")]
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
    lesson = lesson_of(path)
    expected = sorted(
        ((ex_id, ex) for ex_id, ex in all_exercises().items() if ex_id.split(".")[0] == lesson), key=lambda e: e[0]
    )
    if not expected:  # not a lesson with exercises: nothing to run it for
        return Scorecard(notebook=str(path), lesson=lesson, no_exercises=True)
    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in ("COURSE_STRICT", "COURSE_NAMESPACE", "COURSE_PROGRESS")}
    # the grader judges; it does not stop at the first wrong answer
    os.environ["COURSE_STRICT"] = "0"
    os.environ["COURSE_PROGRESS"] = "0"  # a learner's checks graded here are not the instructor's progress
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
    for ex_id, ex in expected:
        card.exercises.append(
            seen.get(ex_id, {"exercise": ex_id, "title": ex.title, "status": NOT_RUN, "message": "", "rules": []})
        )
    return card


def grade(
    paths: list[Path], *, json_path: Path | None = None, html_path: Path | None = None,
    jobs: int = 1, timeout: float | None = None,
) -> list[Scorecard]:
    """Grade notebooks and write the reports asked for.

    With ``jobs`` > 1 or a ``timeout``, each notebook is graded in a child process of its own (its
    own namespace, from its path), ``jobs`` at a time; one that runs past ``timeout`` seconds is
    stopped with its kernel and reported as timed out, and the rest go on.
    """
    if jobs <= 1 and timeout is None:
        cards = [grade_notebook(p) for p in paths]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            cards = list(pool.map(lambda p: _grade_in_child(p, timeout), paths))
    if json_path is not None:
        json_path.write_text(json.dumps([c.to_dict() for c in cards], indent=2), encoding="utf-8")
    if html_path is not None:
        from .report import write

        write([c.to_dict() for c in cards], html_path)
    return cards


def _grade_in_child(path: Path, timeout: float | None) -> Scorecard:
    """One notebook in a process group of its own, so a runaway kernel dies with it."""
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "course.tools.grading", str(path)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return Scorecard(notebook=str(path), lesson=lesson_of(Path(path)), timed_out=True,
                         exercises=_not_run(lesson_of(Path(path))))
    if child.returncode != 0:
        return Scorecard(notebook=str(path), lesson=lesson_of(Path(path)), exercises=_not_run(lesson_of(Path(path))),
                         crashed_cells=[f"the grader failed: {err.strip().splitlines()[-1] if err.strip() else child.returncode}"])
    return Scorecard(**{k: v for k, v in json.loads(out.strip().splitlines()[-1]).items() if k != "score"})


def _not_run(lesson: str) -> list[dict[str, Any]]:
    return [
        {"exercise": ex_id, "title": ex.title, "status": NOT_RUN, "message": "", "rules": []}
        for ex_id, ex in sorted(all_exercises().items()) if ex_id.split(".")[0] == lesson
    ]


if __name__ == "__main__":  # the child process of ``grade(..., jobs=N)``: one notebook, JSON out
    import sys

    print(json.dumps(grade_notebook(Path(sys.argv[1])).to_dict()))


__all__ = ["NOT_ATTEMPTED", "NOT_RUN", "Scorecard", "grade", "grade_notebook"]
