"""Learner progress: check() records verdicts; course.progress() and `python -m course progress` report them.

Every test points COURSE_DATA_DIR at its own temporary folder and runs from a folder that
is not solutions/, so nothing here touches a learner's record or another test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

import course
from course.exercises import lesson00, lesson02
from course.exercises import record as tracking
from course.exercises.core import STATEMENT
from tests.conftest import private_db

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("progresstests") as handle:
        yield handle


@pytest.fixture
def learner(tmp_path, monkeypatch):
    """A learner's own setting: a data folder of their own, a notebooks/ kernel, checks not strict."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(data))
    monkeypatch.setenv("COURSE_STRICT", "0")
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    for name in tracking.BINDER_ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    return data


def right(exercise):
    build = exercise.solution_answer
    return build() if exercise.kind == STATEMENT else build


def wrong(exercise):
    build = exercise.counterexamples[0].answer
    return build() if exercise.kind == STATEMENT else build


def cli(*args: str, data: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COURSE_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "course", "progress", *args], capture_output=True,
                          text=True, env=env, timeout=60, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


async def work_three_exercises(db) -> None:
    """00.q1 right; 02.q1 wrong; 02.q2 wrong, then right."""
    await lesson00.q1.check(right(lesson00.q1), db=db)
    await lesson02.q1.check(wrong(lesson02.q1), db=db)
    await lesson02.q2.check(wrong(lesson02.q2), db=db)
    await lesson02.q2.check(right(lesson02.q2), db=db)


async def test_three_exercises_in_two_lessons_are_reported_exactly(db, learner):
    await work_three_exercises(db)

    view = course.progress()
    status = view.status()
    assert status["00.q1"] == "correct"
    assert status["02.q1"] == "not yet"
    assert status["02.q2"] == "correct"  # right after wrong: done
    others = {k: v for k, v in status.items() if k not in ("00.q1", "02.q1", "02.q2")}
    assert others and set(others.values()) == {"not attempted"}
    assert view.counts() == {"correct": 2, "not yet": 1, "not attempted": len(status) - 3}
    assert view.next_exercise().id == "01.q1"  # lesson 00 is done; 01 comes before 02's open one
    assert [s.attempts for s in view.lessons["02"][:3]] == [1, 2, 0]

    lesson = course.progress("02")
    assert list(lesson.lessons) == ["02"]
    assert lesson.next_exercise().id == "02.q1"
    assert str(lesson).splitlines()[2].split() == ["02", "Filtering", "✘", "✔", "·", "·", "·", "1/5", "#x"]

    # the same in a terminal, from a new process (a restarted kernel reads the same record)
    done = cli(data=learner)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"Your progress in the course: 2 of {len(status)} exercises correct, "
                        f"1 not yet, {len(status) - 3} not attempted")
    row = {line.split()[0]: line.split() for line in lines[2:15]}
    assert row["00"] == ["00", "Start", "here", "✔", "1/1", "#"]
    assert row["02"] == ["02", "Filtering", "✘", "✔", "·", "·", "·", "1/5", "#x"]
    assert row["01"][-1] == "0/4" and set(row["01"][4:-1]) == {"·"}
    assert "Next: 01.q1 A 1.x query, spelled the 2.x way" in done.stdout
    one = cli("2", data=learner)
    assert one.returncode == 0 and "Next: 02.q1 Active users from three countries" in one.stdout

    # the record holds statuses and times, never the answer
    record = (learner / tracking.FILE).read_text()
    items = [json.loads(line) for line in record.splitlines()]
    assert [(i["exercise"], i["status"]) for i in items] == [
        ("00.q1", "correct"), ("02.q1", "not yet"), ("02.q2", "not yet"), ("02.q2", "correct")]
    assert all(set(i) == {"lesson", "exercise", "status", "time"} for i in items)
    assert "SELECT" not in record.upper() and "users" not in record


async def test_a_new_start_keeps_the_record(db, learner):
    await lesson00.q1.check(right(lesson00.q1), db=db)
    again = await course.start("progressrestart")
    try:
        assert course.progress("00").status() == {"00.q1": "correct"}
    finally:
        await again.discard()


async def test_nothing_is_recorded_from_solutions_or_when_switched_off_or_not_attempted(db, learner, tmp_path, monkeypatch):
    await lesson00.q1.check(db=db)  # the untouched stub: not attempted
    assert not (learner / tracking.FILE).exists()

    (tmp_path / "solutions").mkdir()
    monkeypatch.chdir(tmp_path / "solutions")
    await lesson00.q1.check(right(lesson00.q1), db=db)
    assert not (learner / tracking.FILE).exists()
    assert "not recorded: this notebook runs from solutions/" in str(course.progress("00"))

    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    await lesson00.q1.check(right(lesson00.q1), db=db)
    assert not (learner / tracking.FILE).exists()
    monkeypatch.delenv("COURSE_PROGRESS")
    await lesson00.q1.check(right(lesson00.q1), db=db)
    assert (learner / tracking.FILE).exists()


async def test_reset_asks_and_refuses_without_a_terminal(db, learner):
    await work_three_exercises(db)
    before = (learner / tracking.FILE).read_text()

    refused = cli("--reset", data=learner)
    assert refused.returncode == 1
    assert "no terminal here to ask" in refused.stderr and "--reset --yes" in refused.stderr
    assert (learner / tracking.FILE).read_text() == before

    one = cli("02", "--reset", "--yes", data=learner)
    assert one.returncode == 0 and "Cleared 3 recorded checks" in one.stdout
    assert course.progress().status()["00.q1"] == "correct"
    assert course.progress().status()["02.q2"] == "not attempted"

    every = cli("--reset", "--yes", data=learner)
    assert every.returncode == 0 and "Cleared 1 recorded checks" in every.stdout
    assert not (learner / tracking.FILE).exists()
    assert "Nothing to clear" in cli("--reset", data=learner).stdout


def test_an_unknown_lesson_is_a_message_not_a_traceback(learner):
    done = cli("99", data=learner)
    assert done.returncode == 2
    assert "There is no lesson '99'" in done.stderr and "Traceback" not in done.stderr


def test_on_binder_it_says_the_record_goes_with_the_session(learner, monkeypatch):
    assert "Binder" not in str(course.progress())
    monkeypatch.setenv("BINDER_SERVICE_HOST", "10.0.0.1")
    text = str(course.progress())
    assert "lost when it stops" in text and "Download" in text and str(learner / tracking.FILE) in text


def test_the_notebook_view_has_a_table_and_the_course_view_a_chart(learner):
    whole = course.progress()._repr_html_()
    assert 'class="course-table course-progress-table"' in whole
    assert whole.count("<tr>") == 1 + 13 and 'class="course-progress-chart"' in whole
    one = course.progress("06")._repr_html_()
    assert one.count("<tr>") == 2 and "course-progress-chart" not in one
