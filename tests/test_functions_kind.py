"""The FUNCTIONS answer kind: an object holding named async functions, judged requirement by requirement."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from course.exercises import CORRECT, ERROR, FUNCTIONS, INCORRECT, NOT_ATTEMPTED, Exercise, lesson12
from course.exercises.core import Requirement, call_answer, solution_source
from course.exercises.rules import Attempt, Probe, StatementBudget
from course.schema import User
from tests.conftest import private_db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("functionskind") as handle:
        yield handle


async def _count_users(answer, scratch, attempt: Attempt) -> None:
    async with scratch.session() as session:
        from course.recorder import record

        with record(show=False) as log:
            attempt.log = log
            attempt.value = await call_answer(answer.count_users, session)
    attempt.expected = scratch.seeded["users"]


def _same(attempt: Attempt) -> str | None:
    return None if attempt.value == attempt.expected else f"{attempt.value} is not {attempt.expected}"


counting = Exercise(
    id="t.f1", title="count users", kind=FUNCTIONS, functions=("count_users",),
    solution_answer=SimpleNamespace, scratch_scale=0.1,
    requirements=[Requirement("users", _count_users, [Probe(_same, name="the count"), StatementBudget(1)])],
    hints=["count"], why="counted",
)


class Good:
    @staticmethod
    async def count_users(session):
        return await session.scalar(select(func.count()).select_from(User))


class Stub:
    @staticmethod
    async def count_users(session):
        raise NotImplementedError  # YOUR CODE HERE


class Wrong:
    @staticmethod
    async def count_users(session):
        return len((await session.scalars(select(User.id))).all()) + 1


class Crashing:
    @staticmethod
    async def count_users(session):
        raise ValueError("boom")


class WithSelf:
    async def count_users(self, session):
        return await session.scalar(select(func.count()).select_from(User))


class Sync:
    @staticmethod
    def count_users(session):
        return 0


async def test_an_object_with_the_functions_is_judged_rule_by_rule(db):
    verdict = await counting.evaluate(Good, db=db)
    assert verdict.status == CORRECT, str(verdict)
    assert [r.rule for r in verdict.rules] == ["users · the count", "users · statement budget (1 of 1)"]
    # the scratch database has its own scale: 0.1 gives the minimum of 50 users, not the notebook's 500
    assert (await counting.evaluate(SimpleNamespace(count_users=Good.count_users), db=db)).correct


async def test_an_instance_with_methods_works_and_a_class_with_self_is_named(db):
    assert (await counting.evaluate(WithSelf(), db=db)).correct
    verdict = await counting.evaluate(WithSelf, db=db)
    assert verdict.status == ERROR and "takes self" in verdict.message and "WithSelf()" in verdict.message


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (SimpleNamespace(), "has no function count_users"),
        (Sync, "async def"),
        (Good.count_users, "You passed one function"),
    ],
)
async def test_wrong_shapes_name_what_is_missing(db, answer, says):
    verdict = await counting.evaluate(answer, db=db)
    assert verdict.status == ERROR and says in verdict.message, str(verdict)


async def test_stub_is_not_attempted_and_a_crash_is_a_failed_rule(db):
    assert (await counting.evaluate(Stub, db=db)).status == NOT_ATTEMPTED
    wrong = await counting.evaluate(Wrong, db=db)
    assert wrong.status == INCORRECT and "users: 51 is not 50" in wrong.message
    crash = await counting.evaluate(Crashing, db=db)
    assert crash.status == INCORRECT and "ValueError: boom" in crash.message
    assert crash.rules[0].rule == "users · ran to the end"


def test_solution_of_a_class_is_its_whole_source():
    source = solution_source(lesson12.FeedRepository)
    assert source.startswith("class FeedRepository:") and "async def create_post" in source


async def test_capstone_scorecard_reuses_the_verdict_just_computed(db, monkeypatch):
    monkeypatch.setenv("COURSE_STRICT", "0")
    empty = SimpleNamespace()  # no function at all: judged at once, no database needed
    checked = await lesson12.q1.evaluate(empty, db=db)
    card = await lesson12.scorecard(empty, db=db)
    assert card.verdicts[0] is checked  # not run again
    assert card.score == (0, 4) and all(v.status == ERROR for v in card.verdicts)
    assert "has no function feed" in str(card) and "has no function create_post" in str(card)
    again = await lesson12.scorecard(empty, db=db, fresh=True)
    assert again.verdicts[0] is not checked
