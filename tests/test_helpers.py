"""``course.expect`` checks that a block fails as a lesson claims; ``course.frame`` makes tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only

import course
from course.expect import _caught_html
from course.schema import Tag, User
from tests.conftest import private_db

USER_COLUMNS = [
    "id", "email", "username", "display_name", "role", "country", "is_active",
    "created_at", "last_login", "phone", "invited_by_id",
]


# -- expect --------------------------------------------------------------------------------


def test_expect_catches_the_expected_error() -> None:
    with course.expect(ValueError, show=False) as caught:
        raise ValueError("bad value")
    assert isinstance(caught.error, ValueError)
    assert caught.match is caught.error
    assert caught.message == "bad value"
    assert caught.wrapped_in == []


def test_expect_accepts_a_subclass_and_any_of_several() -> None:
    with course.expect(LookupError, show=False) as caught:
        {}["missing"]
    assert isinstance(caught.match, KeyError)
    with course.expect(TypeError, ZeroDivisionError, show=False) as caught:
        1 / 0  # noqa: B018
    assert isinstance(caught.match, ZeroDivisionError)


def test_expect_fails_when_nothing_is_raised() -> None:
    with pytest.raises(course.ExpectationFailed, match="ran without raising"), course.expect(ValueError, show=False):
        pass


def test_expect_fails_on_a_different_error() -> None:
    with pytest.raises(course.ExpectationFailed) as info, course.expect(ValueError, show=False):
        raise KeyError("something else")
    message = str(info.value)
    assert "expected ValueError" in message
    assert "KeyError" in message
    # the real error is kept for whoever debugs the lesson
    assert isinstance(info.value.__cause__, KeyError)


def test_expectation_failed_is_an_assertion_error() -> None:
    # so nbval and pytest report it as a failed check
    assert issubclass(course.ExpectationFailed, AssertionError)


def test_expect_finds_an_error_wrapped_in_another() -> None:
    with course.expect(ValueError, show=False) as caught:
        raise RuntimeError("outer") from ValueError("inner")
    assert isinstance(caught.error, RuntimeError)
    assert isinstance(caught.match, ValueError)
    assert caught.message == "inner"
    assert caught.wrapped_in == ["RuntimeError"]
    html = _caught_html(caught, "because")
    assert "course-expect" in html
    assert "Raised as expected: ValueError" in html
    assert "arrived wrapped in RuntimeError" in html
    assert "because" in html


def test_expect_finds_an_error_raised_while_handling_another() -> None:
    with course.expect(KeyError, show=False) as caught:
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("while handling")  # noqa: B904 - the implicit __context__ is the point
    assert isinstance(caught.match, KeyError)
    assert caught.wrapped_in == ["RuntimeError"]


class Wrapper(Exception):
    """Like SQLAlchemy's StatementError: the driver's error sits in ``.orig``."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__(f"wrapped: {orig}")
        self.orig = orig


def test_expect_looks_inside_orig() -> None:
    with course.expect(ZeroDivisionError, show=False) as caught:
        raise Wrapper(ZeroDivisionError("deep"))
    assert caught.message == "deep"
    assert caught.wrapped_in == ["Wrapper"]


def test_expect_match_checks_the_message() -> None:
    with course.expect(ValueError, match="inner", show=False) as caught:
        raise RuntimeError("outer") from ValueError("the inner one")
    assert caught.message == "the inner one"
    with pytest.raises(course.ExpectationFailed, match="mentioning 'nope'"), course.expect(
        ValueError, match="nope", show=False
    ):
        raise ValueError("something")


# -- frame ---------------------------------------------------------------------------------


@pytest.fixture
async def db() -> AsyncIterator[course.CourseDB]:
    async with private_db("help") as handle:
        yield handle


async def test_expect_catches_a_real_integrity_error(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.expect(IntegrityError, show=False) as caught:
            await conn.execute(insert(Tag).values(name="python"))  # names are unique
        await conn.rollback()
    assert isinstance(caught.match, IntegrityError)
    assert "unique" in str(caught.match).lower()
    assert caught.wrapped_in == []  # SQLAlchemy's IntegrityError is the outermost error


async def test_frame_of_a_result_of_rows(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        result = await conn.execute(select(User.id, User.email).where(User.id <= 5).order_by(User.id))
        df = course.frame(result)
    assert list(df.columns) == ["id", "email"]
    assert len(df) == 5
    assert list(df["id"]) == [1, 2, 3, 4, 5]


async def test_frame_of_a_list_of_rows(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(Tag.id, Tag.name.label("tag")).order_by(Tag.id))).all()
    df = course.frame(rows)
    assert list(df.columns) == ["id", "tag"]
    assert len(df) == 30
    assert df["tag"].iloc[0] == "python"


async def test_frame_of_orm_objects(db: course.CourseDB) -> None:
    async with db.session() as session:
        users = (await session.execute(select(User).order_by(User.id).limit(4))).scalars().all()
    df = course.frame(users)
    assert list(df.columns) == USER_COLUMNS
    assert len(df) == 4
    assert list(df["id"]) == [1, 2, 3, 4]


async def test_frame_of_a_result_of_orm_objects(db: course.CourseDB) -> None:
    async with db.session() as session:
        df = course.frame(await session.execute(select(User).order_by(User.id).limit(6)))
    assert list(df.columns) == USER_COLUMNS
    assert len(df) == 6


async def test_frame_never_triggers_a_lazy_load(db: course.CourseDB) -> None:
    async with db.session() as session:
        users = (
            await session.execute(select(User).options(load_only(User.id, User.email)).limit(3))
        ).scalars().all()
        with course.sql(show=False) as log:
            df = course.frame(users)
    assert len(log) == 0
    assert list(df.columns) == ["id", "email"]
    assert len(df) == 3


async def test_frame_of_scalars(db: course.CourseDB) -> None:
    async with db.session() as session:
        emails = (await session.execute(select(User.email).order_by(User.id).limit(8))).scalars().all()
    df = course.frame(emails)
    assert list(df.columns) == ["value"]
    assert len(df) == 8
    assert df["value"].iloc[0] == emails[0]
    assert list(course.frame(emails, columns=["email"]).columns) == ["email"]


async def test_db_frame_runs_a_statement(db: course.CourseDB) -> None:
    df = await db.frame(select(Tag.name).where(Tag.id <= 3).order_by(Tag.id))
    assert list(df.columns) == ["name"]
    assert list(df["name"]) == ["python", "sql", "async"]


def test_frame_of_plain_python_data() -> None:
    assert len(course.frame([])) == 0
    df = course.frame([{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert list(df.columns) == ["a", "b"] and len(df) == 2
    df = course.frame([(1, "x"), (2, "y")], columns=["n", "s"])
    assert list(df.columns) == ["n", "s"] and len(df) == 2
