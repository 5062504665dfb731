"""A class report from a folder of six made-up learners: right, wrong, stub, crashing, looping.

Graded in parallel child processes with a per-notebook time limit; the HTML report's numbers must
match the JSON scorecards, the looping notebook is stopped and reported, and nothing is left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course.tools import report
from course.tools.grading import NOT_RUN, grade

ROOT = Path(__file__).resolve().parent.parent
LESSON = "00_start_here.ipynb"
LIMIT = 45  # seconds a notebook may run (lesson 00 grades in about 3 s; 15x that on a loaded machine)

# Grading executes notebooks, which nbval already does on both backends: once is enough.
pytestmark = pytest.mark.sqlite


def _notebook(source: str) -> dict:
    return json.loads((ROOT / source / LESSON).read_text())


def _answer_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(
        ("# BEGIN SOLUTION", "answer = ")))


def _submissions(folder: Path) -> list[Path]:
    made = {"fay": None}  # graded first: it waits out its time limit while the others are graded beside it
    made["ann"] = _notebook("solutions")  # right
    made["bob"] = _notebook("notebooks")  # the untouched stub
    cy = _notebook("notebooks")  # wrong: every user, not only NL
    _answer_cell(cy)["source"] = ["answer = select(User.id, User.username).order_by(User.id)\n"]
    made["cy"] = cy
    dee = _notebook("notebooks")  # wrong in another way: the right filter, no ORDER BY
    _answer_cell(dee)["source"] = ['answer = select(User.id, User.username).where(User.country == "NL")\n']
    made["dee"] = dee
    eve = _notebook("solutions")  # crashes before the exercise
    first_code = next(c for c in eve["cells"] if c["cell_type"] == "code" and "course.start" in "".join(c["source"]))
    first_code["source"] = ["raise RuntimeError('eve broke the setup cell')\n"]
    made["eve"] = eve
    fay = _notebook("solutions")  # never finishes (asleep, so it does not slow the others' grading)
    fay["cells"].insert(3, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                            "source": ["import time\nwhile True:\n    time.sleep(0.2)\n"]})
    made["fay"] = fay
    paths = []
    for learner, nb in made.items():
        path = folder / learner / LESSON
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[list[dict], str, float]:
    folder = tmp_path_factory.mktemp("submissions")
    paths = _submissions(folder)
    began = time.monotonic()
    # the limit must leave a loaded 2-core CI machine time for the other five notebooks
    cards = grade(paths, json_path=folder / "class.json", html_path=folder / "class.html", jobs=2, timeout=LIMIT)
    took = time.monotonic() - began
    assert json.loads((folder / "class.json").read_text()) == [c.to_dict() for c in cards]
    return [c.to_dict() for c in cards], (folder / "class.html").read_text(), took


def test_each_learner_is_graded_as_they_left_it(graded) -> None:
    cards, _, _ = graded
    status = {report.learner_of(c["notebook"]): c["exercises"][0]["status"] for c in cards}
    assert status == {"ann": "correct", "bob": "not attempted", "cy": "incorrect", "dee": "incorrect",
                      "eve": NOT_RUN, "fay": NOT_RUN}
    eve = next(c for c in cards if "/eve/" in c["notebook"])
    assert any("eve broke the setup cell" in cell for cell in eve["crashed_cells"])
    fay = next(c for c in cards if "/fay/" in c["notebook"])
    assert fay["timed_out"] is True


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is inside ``folder`` (a kernel runs in its notebook's folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_looping_notebook_is_stopped_with_its_kernel(graded) -> None:
    cards, _, took = graded
    assert took < LIMIT + 120  # the time limit, plus grading the rest two at a time
    submissions = Path(cards[0]["notebook"]).parent.parent
    deadline = time.monotonic() + 10  # a kernel whose grader was killed notices it within a second
    while _processes_in(submissions) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_in(submissions) == []  # fay's kernel is gone, and every other one


def test_the_report_numbers_match_the_json(graded) -> None:
    cards, page, _ = graded
    summary = report.summarise(cards)
    entry = summary["exercises"]["00.q1"]
    assert dict(entry["counts"]) == {"correct": 1, "not yet": 2, "not attempted": 1, "crashed": 2}
    assert f"{entry['pass_rate']:.0%}" == "17%"
    row = re.search(r"<tr data-exercise='00.q1'>(.*?)</tr>", page).group(1)
    assert [int(n) for n in re.findall(r"<td>(\d+)</td>", row)] == [1, 2, 1, 2]
    assert "17%" in page and "<svg" in page  # the chart, inline
    # the rule that failed most often, with one learner's message as the example
    rule, times, example = entry["top_rule"]
    assert times == 2 and rule in row and example
    from course.exercises.verdict import rich

    assert rich(example) in row and "`" not in row  # code in the message shows as code, no backtick on screen


def test_the_report_lists_learners_and_what_stopped_them(graded) -> None:
    _, page, _ = graded
    for learner, state in {"ann": "correct", "bob": "not attempted", "cy": "not yet", "eve": "crashed",
                           "fay": "crashed"}.items():
        row = re.search(rf"<tr data-learner='{learner}'>(.*?)</tr>", page).group(1)
        assert f">{state}</td>" in row, (learner, row)
    crashed = page[page.index("id='crashed'"):]
    assert "eve broke the setup cell" in crashed and "ran out of time" in crashed
    # opens offline: nothing to fetch (no external script, style sheet, image or font)
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page) and "@import" not in page


def test_report_of_nothing_says_so() -> None:
    page = report.render([])
    assert "No exercise was graded" in page and "None." in page


def test_grading_in_children_keeps_the_cli_contract(tmp_path) -> None:
    """The child entry point prints one JSON scorecard (what grade(jobs=N) reads)."""
    out = subprocess.run([sys.executable, "-m", "course.tools.grading", str(ROOT / "notebooks" / LESSON)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout.strip().splitlines()[-1])
    assert card["exercises"][0]["status"] == "not attempted"
