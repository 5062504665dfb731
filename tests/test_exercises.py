"""Every exercise: its reference passes and its plausible wrong answers are rejected by name.

Runs on the active backend (COURSE_DATABASE_URL selects PostgreSQL), so CI proves
each checker on both.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from course.exercises import CORRECT, INCORRECT, all_exercises, lesson_modules
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


ALTERNATIVES = [
    pytest.param(ex_id, i, id=f"{ex_id}-{label}")
    for module in lesson_modules().values()
    for ex_id, answers in sorted(getattr(module, "ALTERNATIVES", {}).items())
    for i, (label, _answer_) in enumerate(answers)
]


@pytest.mark.parametrize(("exercise_id", "index"), ALTERNATIVES)
async def test_correct_answer_of_another_form_is_accepted(db, exercise_id, index):
    """A lesson module's ``ALTERNATIVES``: right answers written differently from the reference."""
    exercise = EXERCISES[exercise_id]
    module = lesson_modules()[exercise_id.split(".")[0]]
    _label, build = module.ALTERNATIVES[exercise_id][index]
    verdict = await exercise.evaluate(_answer(exercise, build), db=db)
    assert verdict.status == CORRECT, str(verdict)
    assert_renders_cleanly(verdict)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_exercise_has_two_wrong_answers_and_a_hint(exercise_id):
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 2
    assert exercise.hints
    assert exercise.why


@pytest.mark.parametrize("exercise_id", [e for e in sorted(EXERCISES) if e[:2] in ("00", "01", "02", "03", "10", "11")])
def test_catalogued_lessons_have_four_mistakes_and_accept_another_form(exercise_id):
    """Issue 17: at least four named mistakes per exercise, and a correct answer of another form."""
    exercise = EXERCISES[exercise_id]
    module = lesson_modules()[exercise_id[:2]]
    assert len(exercise.counterexamples) >= 4
    assert len({c.says.lower() for c in exercise.counterexamples}) >= 4  # four different messages
    assert getattr(module, "ALTERNATIVES", {}).get(exercise_id)


@pytest.mark.parametrize("exercise_id", ["03.q4", "03.q5"])
async def test_paging_references_refuse_a_limit_below_one(exercise_id):
    """The references validate `limit` as lesson 03 teaches: 0 would say has_more forever (q4) or
    leave no last post to build the next cursor from (q5)."""
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        await EXERCISES[exercise_id].solution_answer(None, None, 0)


HEADLINES = [
    # (exercise, counterexample label, what the headline itself must say): the diagnosis, not a symptom
    ("11.q2", "cast(created_at, Date)", "ix_orders_active cannot search the date range"),  # its rows differ too on SQLite
    ("11.q2", "func.date(created_at) compared with strings", "wraps the column"),  # PostgreSQL refuses it: an error
    ("12.q1", "selectinload(Post.comments), then len()", "the comments were loaded to be counted"),
    ("12.q3", "every tag created, known or not", "inserted tags that already exist"),
    ("12.q4", "check first, then insert", "your check-then-insert races"),
    # trial 4d: a false pass on SQLite, or a symptom where the mistake is nameable
    ("10.q1", "lower(title), the term not lowered", "you lowered the title but not the term"),  # PG: ids missing too
    ("10.q2", "try inside the begin_nested() block", "your try inside the async with session.begin_nested(): block"),
    ("11.q4", "one IN for every id", "one statement carried 40,000 bound parameters"),  # PG: asyncpg's error
    ("12.q2", "published_at <= at AND id < id", "two comparisons joined by AND are not a keyset"),
    ("12.q4", "check first, then a savepoint that converts nothing", "your check-then-insert races"),
]


@pytest.mark.parametrize(("exercise_id", "label", "headline"), HEADLINES, ids=[f"{e}-{c}" for e, c, _ in HEADLINES])
async def test_the_headline_names_the_misconception(db, exercise_id, label, headline):
    exercise = EXERCISES[exercise_id]
    case = next(c for c in exercise.counterexamples if c.label == label)
    verdict = await exercise.evaluate(_answer(exercise, case.answer), db=db)
    assert headline.lower() in plain(verdict.message).lower(), str(verdict)
    if exercise_id == "12.q4":  # the race named on both backends, the fix given
        assert "both saw 'not there'" in verdict.message and "ON CONFLICT" in verdict.message, str(verdict)
        assert "23505" in verdict.message, str(verdict)
