"""`python -m course grade` over the real notebooks: all correct in solutions/, all not attempted in notebooks/."""

from __future__ import annotations

import json
import os
import re
import shutil
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


#: Every reference answer passing is nbval's job already (COURSE_STRICT makes a wrong verdict fail
#: its cell in solutions/): the grader's own reading of verdicts is proven on three lessons whose
#: exercises cover every answer kind (statement, session and database functions, the capstone's set).
GRADED_SOLUTIONS = [n for n in NOTEBOOKS if n[:2] in ("00", "08", "12")]


@pytest.mark.parametrize("name", GRADED_SOLUTIONS)
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
        [sys.executable, "-m", "course", "grade", str(broken), "--json", str(out), *AS_ROOT],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    cards = json.loads(out.read_text())
    assert cards[0]["lesson"] == "00"
    statuses = {e["exercise"]: e["status"] for e in cards[0]["exercises"]}
    assert statuses == {"00.q1": NOT_RUN}
    assert any("learner broke this cell" in c for c in cards[0]["crashed_cells"])
    assert "00.q1" in proc.stdout


#: CI grades as root: say so, as an instructor in a throwaway container would
AS_ROOT = ["--allow-root"] if os.geteuid() == 0 else []


def _grade_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "course", "grade", *argv, *AS_ROOT],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_grade_never_writes_its_report_over_a_notebook(tmp_path):
    """`--json` before the notebooks took the first notebook as the report's name and overwrote it."""
    first, second = tmp_path / "00_start_here.ipynb", tmp_path / "01_async_orm_essentials.ipynb"
    shutil.copy2(ROOT / "notebooks" / first.name, first)
    shutil.copy2(ROOT / "notebooks" / second.name, second)
    before = first.read_bytes()
    proc = _grade_cli("--json", str(first), str(second))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "would overwrite a notebook" in proc.stderr and "Traceback" not in proc.stderr
    assert first.read_bytes() == before
    # the same file named as an input and as the report, whatever its suffix
    renamed = tmp_path / "00_start_here.json"
    shutil.copy2(first, renamed)
    proc = _grade_cli(str(renamed), "--json", str(renamed))
    assert proc.returncode == 2 and "would overwrite a notebook" in proc.stderr
    assert renamed.read_bytes() == before


def test_grade_keeps_an_existing_report_unless_forced(tmp_path):
    notes = tmp_path / "my_notes.ipynb"  # not a lesson: graded as "no exercises", without running it
    shutil.copy2(ROOT / "notebooks" / "00_start_here.ipynb", notes)
    report = tmp_path / "class.json"
    report.write_text("last week's grades")
    proc = _grade_cli(str(notes), "--json", str(report))
    assert proc.returncode == 2 and "exists; add --force" in proc.stderr, proc.stderr
    assert report.read_text() == "last week's grades"
    proc = _grade_cli(str(notes), "--json", str(report), "--force")
    assert json.loads(report.read_text())[0]["no_exercises"] is True
    assert proc.returncode == 1  # and still an error: there was nothing to grade


def test_grade_says_a_notebook_has_no_exercises(tmp_path):
    """A renamed notebook (or one that is no lesson) is reported as such, not as a silent 0/0."""
    renamed = tmp_path / "start_here_mine.ipynb"
    shutil.copy2(ROOT / "notebooks" / "00_start_here.ipynb", renamed)
    proc = _grade_cli(str(renamed))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{renamed}: no exercises to grade" in proc.stdout
    assert "0/0" not in proc.stdout
    assert "nothing to grade in" in proc.stderr and "Traceback" not in proc.stderr


def test_grade_refuses_to_run_learners_code_as_root(monkeypatch, capsys, tmp_path):
    from course.tools import cli

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    notebook = tmp_path / "00_start_here.ipynb"
    shutil.copy2(ROOT / "notebooks" / notebook.name, notebook)
    assert cli.main(["grade", str(notebook)]) == 2
    err = capsys.readouterr().err
    assert "with your privileges" in err and "--allow-root" in err and "unprivileged user" in err


def test_grade_a_folder_of_learners_into_a_class_report(tmp_path):
    """`grade submissions/ --html`: one folder per learner, graded two at a time, one page out."""
    for learner in ("ann", "bob"):
        (tmp_path / "submissions" / learner).mkdir(parents=True)
        shutil.copy2(ROOT / ("solutions" if learner == "ann" else "notebooks") / "00_start_here.ipynb",
                     tmp_path / "submissions" / learner / "00_start_here.ipynb")
    page = tmp_path / "report.html"
    proc = _grade_cli(str(tmp_path / "submissions"), "--html", str(page), "--jobs", "2", "--timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = page.read_text()
    assert "2 learners, 2 notebooks" in html
    assert ">correct</td>" in re.search(r"<tr data-learner='ann'>(.*?)</tr>", html).group(1)
    assert ">not attempted</td>" in re.search(r"<tr data-learner='bob'>(.*?)</tr>", html).group(1)
    assert f"wrote {page}" in proc.stdout


def test_grade_checks_its_numbers_before_running_anything(tmp_path):
    proc = _grade_cli(str(ROOT / "notebooks" / "00_start_here.ipynb"), "--jobs", "0")
    assert proc.returncode == 2 and "--jobs takes a whole number" in proc.stderr
    proc = _grade_cli(str(tmp_path))
    assert proc.returncode == 2 and "no notebooks in" in proc.stderr
