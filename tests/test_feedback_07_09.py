"""Lessons 07-09: verdicts that name the mistake and point the right way (issue 17)."""

from __future__ import annotations

import pytest_asyncio

from course.exercises import INCORRECT, lesson07, lesson09
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
