"""Every exercise: its reference passes and its plausible wrong answers are rejected by name.

Runs on the active backend (COURSE_DATABASE_URL selects PostgreSQL), so CI proves
each checker on both.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from course.exercises import CORRECT, INCORRECT, all_exercises
from course.exercises.verdict import plain
from tests.conftest import private_db
from tests.feedback_support import assert_renders_cleanly

EXERCISES = all_exercises()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("exercisetests") as handle:
        yield handle


def _answer(exercise, build):
    """Statement exercises keep a builder; function exercises keep the function itself."""
    from course.exercises.core import STATEMENT

    return build() if exercise.kind == STATEMENT else build


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
async def test_reference_solution_is_correct(db, exercise_id):
    exercise = EXERCISES[exercise_id]
    verdict = await exercise.evaluate(_answer(exercise, exercise.solution_answer), db=db)
    assert verdict.status == CORRECT, str(verdict)
    assert_renders_cleanly(verdict)


CASES = [
    pytest.param(ex_id, i, id=f"{ex_id}-{c.label}")
    for ex_id, ex in sorted(EXERCISES.items())
    for i, c in enumerate(ex.counterexamples)
]


@pytest.mark.parametrize(("exercise_id", "index"), CASES)
async def test_wrong_answer_is_rejected_by_name(db, exercise_id, index):
    exercise = EXERCISES[exercise_id]
    case = exercise.counterexamples[index]
    verdict = await exercise.evaluate(_answer(exercise, case.answer), db=db)
    assert verdict.status in (INCORRECT, "error"), str(verdict)
    # the phrase as the learner reads it: backtick-marked code shows without its backticks
    assert plain(case.says).lower() in str(verdict).lower(), str(verdict)
    # every message of every counterexample renders as HTML and as text with no markup leaking
    assert_renders_cleanly(verdict)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_exercise_has_two_wrong_answers_and_a_hint(exercise_id):
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 2
    assert exercise.hints
    assert exercise.why
