"""Lessons 07-09: verdicts that name the mistake and point the right way (issue 17)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from course.exercises import INCORRECT, all_exercises, lesson07, lesson09, lesson_modules
from tests.conftest import private_db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("feedback0709") as handle:
        yield handle


async def test_row_by_row_insert_is_told_the_bulk_path_not_add_all(db):
    verdict = await lesson07.q1.evaluate(lesson07._q1_insert_per_row, db=db)
    text = str(verdict)
    assert verdict.status == INCORRECT
    assert verdict.message.startswith("200 INSERT statements for 200 rows"), text  # the headline is the diagnosis
    assert "session.execute(insert(Tag), rows)" in text
    assert "Not add_all()" in text and "use add_all" not in text.lower()
    assert "add() and add_all() always do that" not in text  # no RETURNING advice aimed at add()


async def test_lost_commit_is_not_retried_and_the_order_exists_once(db):
    verdict = await lesson09.q5.evaluate(lesson09._q5_solution, db=db)
    assert verdict.status == "correct", str(verdict)
    retried = await lesson09.q5.evaluate(lesson09._q5_commit_in_retry, db=db)
    assert retried.status == INCORRECT
    assert "charged 2 times" in str(retried)  # the first COMMIT really landed: the retry charged again


EXERCISES = all_exercises()


@pytest.mark.parametrize("exercise_id", [e for e in sorted(EXERCISES) if e[:2] in ("07", "08", "09")])
def test_lessons_07_to_09_catalogue_four_mistakes_and_accept_another_form(exercise_id):
    """Issue 17: at least four named mistakes per exercise, and a correct answer of another form."""
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 4
    assert len({c.says.lower() for c in exercise.counterexamples}) >= 4  # four different messages
    if exercise_id == "08.q4" and not hasattr(asyncio, "TaskGroup"):
        pytest.skip("its alternative uses asyncio.TaskGroup (Python 3.11+)")
    assert getattr(lesson_modules()[exercise_id[:2]], "ALTERNATIVES", {}).get(exercise_id)
