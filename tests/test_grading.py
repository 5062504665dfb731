"""`python -m course grade` over the real notebooks: all correct in solutions/, all not attempted in notebooks/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from course.exercises import all_exercises, lesson_modules
from course.tools.grading import NOT_RUN, grade_notebook

ROOT = Path(__file__).resolve().parent.parent
LESSONS_WITH_EXERCISES = set(lesson_modules())
NOTEBOOKS = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb") if p.name[:2] in LESSONS_WITH_EXERCISES)

# Grading executes notebooks, which nbval already does on both backends: once is enough.
pytestmark = pytest.mark.sqlite


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solutions_grade_all_correct(name):
    card = grade_notebook(ROOT / "solutions" / name)
    lesson = name[:2]
    ids = sorted(i for i in all_exercises() if i.startswith(lesson + "."))
    assert [e["exercise"] for e in card.exercises] == ids
    assert all(e["status"] == "correct" for e in card.exercises), card.render()
    assert not card.crashed_cells, card.render()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_learner_notebooks_grade_not_attempted(name):
    card = grade_notebook(ROOT / "notebooks" / name)
    assert card.exercises and all(e["status"] == "not attempted" for e in card.exercises), card.render()


def test_grade_cli_writes_json_and_survives_a_crash(tmp_path):
    nb = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text())
    # a learner who broke the notebook half-way, before the exercise: the scorecard still comes out
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("from course.exercises"):
            cell["source"] = ["raise RuntimeError('learner broke this cell')\n"] + cell["source"]
            break
    broken = tmp_path / "00_start_here.ipynb"
    broken.write_text(json.dumps(nb))
    out = tmp_path / "class.json"
    proc = subprocess.run(
        [sys.executable, "-m", "course", "grade", str(broken), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    cards = json.loads(out.read_text())
    assert cards[0]["lesson"] == "00"
    statuses = {e["exercise"]: e["status"] for e in cards[0]["exercises"]}
    assert statuses == {"00.q1": NOT_RUN}
    assert any("learner broke this cell" in c for c in cards[0]["crashed_cells"])
    assert "00.q1" in proc.stdout
