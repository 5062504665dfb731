"""Every exercise: its reference passes and its plausible wrong answers are rejected by name.

Runs on the active backend (COURSE_DATABASE_URL selects PostgreSQL), so CI proves
each checker on both.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from course.exercises import CORRECT, INCORRECT, all_exercises
from tests.conftest import private_db

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
    assert case.says.lower() in str(verdict).lower(), str(verdict)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_exercise_has_two_wrong_answers_and_a_hint(exercise_id):
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 2
    assert exercise.hints
    assert exercise.why


ALTERNATIVES = [
    pytest.param(ex_id, i, id=f"{ex_id}-alternative-{alt.label}")
    for ex_id, ex in sorted(EXERCISES.items())
    for i, alt in enumerate(getattr(ex, "alternatives", ()))
]


@pytest.mark.parametrize(("exercise_id", "index"), ALTERNATIVES)
async def test_alternative_correct_answer_is_accepted(db, exercise_id, index):
    """A correct answer written differently from the reference is judged correct too."""
    exercise = EXERCISES[exercise_id]
    alternative = exercise.alternatives[index]
    verdict = await exercise.evaluate(_answer(exercise, alternative.answer), db=db)
    assert verdict.status == CORRECT, str(verdict)


@pytest.mark.parametrize("exercise_id", sorted(i for i in EXERCISES if i.startswith(("10.", "11."))))
def test_lessons_10_and_11_catalogue_four_mistakes_per_exercise(exercise_id):
    """Issue 17: at least four wrong answers per exercise, each with its own key phrase."""
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 4
    assert len({case.says for case in exercise.counterexamples}) >= 4
    assert getattr(exercise, "alternatives", ())  # and at least one right answer of another form
