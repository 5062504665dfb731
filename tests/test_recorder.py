"""``with course.sql() as log:`` records exactly the statements the database receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

import course
from course.schema import Tag, User
from tests.conftest import private_db


@pytest.fixture
async def db() -> AsyncIterator[course.CourseDB]:
    async with private_db("rec") as handle:
        yield handle


def new_users(n: int) -> list[User]:
    return [
        User(
            email=f"new{i}@example.com", username=f"new{i}", display_name=f"New {i}",
            country="NL", created_at=datetime(2026, 1, 1),
        )
        for i in range(n)
    ]


async def test_one_select_is_one_statement(db: course.CourseDB) -> None:
    async with db.session() as session:
        with course.sql(show=False) as log:
            users = (await session.execute(select(User).where(User.id <= 7).order_by(User.id))).scalars().all()
    assert len(users) == 7
    assert len(log) == 1
    assert log.count("SELECT") == 1
    statement = log[0]
    assert statement.verb == "SELECT"
    assert "FROM users" in statement.sql
    assert statement.executemany is False
    assert statement.rows == 7
    assert log.rows == 7
    assert statement.duration_ms > 0


async def test_rows_reported_for_a_select(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.sql(show=False) as log:
            await conn.execute(select(Tag.id))
            await conn.execute(select(User.id).where(User.id < 0))
    assert [s.rows for s in log] == [30, 0]
    assert log.rows == 30


async def test_selectinload_is_two_statements(db: course.CourseDB) -> None:
    async with db.session() as session:
        with course.sql(show=False) as log:
            result = await session.execute(
                select(User).order_by(User.id).limit(10).options(selectinload(User.posts))
            )
            users = result.scalars().all()
    assert len(users) == 10
    assert len(log) == 2
    assert log.count("SELECT") == 2
    assert "FROM users" in log[0].sql
    assert "FROM posts" in log[1].sql and " IN " in log[1].sql
    assert log[0].rows == 10
    assert log[1].rows == sum(len(u.posts) for u in users)


async def test_core_executemany_is_one_statement(db: course.CourseDB) -> None:
    async with db.engine.begin() as conn:
        with course.sql(show=False) as log:
            await conn.execute(insert(Tag), [{"name": "one"}, {"name": "two"}, {"name": "three"}])
    assert len(log) == 1
    statement = log[0]
    assert statement.verb == "INSERT"
    assert statement.executemany is True
    assert statement.batch_size == 3
    assert len(statement.params) == 3
    assert "executemany x3" in str(statement)


@pytest.mark.postgresql
async def test_orm_add_all_is_one_batch_on_postgresql(db: course.CourseDB) -> None:
    async with db.session() as session:
        with course.sql(show=False) as log:
            session.add_all(new_users(5))
            await session.flush()
        await session.rollback()
    assert len(log) == 1
    statement = log[0]
    assert statement.verb == "INSERT"
    assert "RETURNING" in statement.sql
    assert statement.executemany is True
    assert statement.batch_size == 5
    assert statement.rows == 5


@pytest.mark.sqlite
async def test_orm_add_all_is_one_insert_per_row_on_sqlite(db: course.CourseDB) -> None:
    async with db.session() as session:
        with course.sql(show=False) as log:
            session.add_all(new_users(5))
            await session.flush()
        await session.rollback()
    assert len(log) == 5
    assert log.count("INSERT") == 5
    assert all("RETURNING" in s.sql for s in log)
    assert all(s.rows == 1 for s in log)


async def test_failed_statement_is_still_recorded(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.sql(show=False) as log, pytest.raises(IntegrityError):
            await conn.execute(insert(Tag).values(id=1, name="python"))
        await conn.rollback()
    assert len(log) == 1
    assert log[0].verb == "INSERT"
    assert "tags" in log[0].sql
    assert log[0].duration_ms >= 0
    # the next statement on the same connection is recorded on its own
    async with db.engine.connect() as conn:
        with course.sql(show=False) as after:
            await conn.execute(select(Tag.id).where(Tag.id == 1))
    assert len(after) == 1 and after[0].verb == "SELECT" and after[0].rows == 1


async def test_nothing_is_recorded_without_an_open_log(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(select(User.id))
        with course.sql(show=False) as log:
            await conn.execute(select(Tag.id))
        await conn.execute(select(User.email))
    assert [s.sql for s in log] == log.sql
    assert len(log) == 1
    assert "FROM tags" in log[0].sql
    assert log.active is False


async def test_nested_logs_both_see_statements(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.sql(show=False) as outer:
            await conn.execute(select(User.id).where(User.id == 1))
            with course.sql(show=False) as inner:
                await conn.execute(select(Tag.id).where(Tag.id == 1))
            await conn.execute(select(User.id).where(User.id == 2))
    assert len(inner) == 1
    assert "FROM tags" in inner[0].sql
    assert len(outer) == 3
    assert outer[1] is inner[0]


async def test_concurrent_connections_are_recorded_separately(db: course.CourseDB) -> None:
    async def count_users(limit: int) -> int:
        async with db.engine.connect() as conn:
            return len((await conn.execute(select(User.id).limit(limit))).all())

    with course.sql(show=False) as log:
        got = await asyncio.gather(count_users(3), count_users(7), count_users(11))
    assert got == [3, 7, 11]
    assert sorted(s.rows for s in log) == [3, 7, 11]


async def test_engine_plumbing_is_not_recorded(db: course.CourseDB) -> None:
    """SQLite's BEGIN (sent by the engine hook) and the course's own statements stay out."""
    with course.sql(show=False) as log:
        async with db.engine.begin() as conn:
            await conn.execute(select(Tag.id).where(Tag.id == 1))
        async with db.session() as session, session.begin():
            await session.execute(select(User.id).where(User.id == 1))
    assert log.count("BEGIN") == 0
    assert log.count("PRAGMA") == 0
    assert [s.verb for s in log] == ["SELECT", "SELECT"]


@pytest.mark.sqlite
async def test_sqlite_begin_is_really_sent(db: course.CourseDB) -> None:
    """The hidden BEGIN exists: a transaction is open on the driver while the block runs."""
    async with db.engine.begin() as conn:
        raw = await conn.get_raw_connection()
        await conn.execute(select(Tag.id).where(Tag.id == 1))
        assert raw.driver_connection._conn.in_transaction


async def test_created_engines_are_recorded(db: course.CourseDB) -> None:
    extra = db.create_engine(pool_size=1) if db.is_postgresql else db.create_engine()
    async with extra.connect() as conn:
        with course.sql(show=False) as log:
            await conn.execute(select(Tag.id))
    assert len(log) == 1 and log[0].rows == 30


# -- secrets in parameters ---------------------------------------------------------------

accounts = Table(
    "accounts",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("login", String(40)),
    Column("password", String(80)),
)


@pytest.fixture
async def accounts_table(db: course.CourseDB) -> Table:
    async with db.engine.begin() as conn:
        await conn.run_sync(accounts.metadata.create_all)
    return accounts


def all_shown(log: course.SqlLog) -> str:
    return "\n".join([str(log), log._repr_html_(), *(repr(s.params) for s in log)])


async def test_password_parameters_are_hidden(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.sql(show=False) as log:
            await conn.execute(
                select(
                    bindparam("password", "hunter2", type_=String),
                    bindparam("login", "ada", type_=String),
                )
            )
    assert len(log) == 1
    shown = all_shown(log)
    assert "hunter2" not in shown
    assert "***" in shown
    assert "ada" in shown  # other values are still shown


async def test_password_parameters_are_hidden_in_text(db: course.CourseDB) -> None:
    stmt = text("SELECT :user_password AS p, :n AS n").bindparams(
        bindparam("user_password", type_=String), bindparam("n", type_=Integer)
    )
    async with db.engine.connect() as conn:
        with course.sql(show=False) as log:
            await conn.execute(stmt, {"user_password": "hunter2", "n": 42})
    shown = all_shown(log)
    assert "hunter2" not in shown
    assert "42" in shown


async def test_password_columns_are_hidden_on_insert(db: course.CourseDB, accounts_table: Table) -> None:
    rows = [{"login": f"user{i}", "password": f"hunter2-{i}"} for i in range(3)]
    async with db.engine.begin() as conn:
        with course.sql(show=False) as log:
            await conn.execute(insert(accounts_table).values(login="solo", password="hunter2-solo"))
            await conn.execute(insert(accounts_table), rows)  # executemany
            await conn.execute(insert(accounts_table).returning(accounts_table.c.id), rows)  # batched VALUES
            await conn.execute(
                select(accounts_table.c.id).where(
                    accounts_table.c.password.in_(["hunter2-0", "hunter2-1"])
                )
            )
    assert len(log) >= 4
    shown = all_shown(log)
    assert "hunter2" not in shown
    assert "user1" in shown and "solo" in shown


async def test_log_renders_as_text_and_html(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with course.sql("Two queries", show=False) as log:
            await conn.execute(select(User.id).where(User.id == 1))
            await conn.execute(select(Tag.name).where(Tag.id == 1))
    shown = str(log)
    assert shown.startswith("Two queries: 2 statements")
    assert "1. SELECT users.id" in shown
    assert "2. SELECT tags.name" in shown
    html = log._repr_html_()
    assert 'class="course-sql-log"' in html
    assert "Two queries" in html
    assert html.count("<tr>") == 3  # header and two statements
    assert repr(log) == "<SqlLog 2 statements>"


def test_empty_log_renders() -> None:
    with course.sql(show=False) as log:
        pass
    assert len(log) == 0
    assert str(log) == "SQL emitted: 0 statements"
    assert 'class="course-sql-log"' in log._repr_html_()


@pytest.mark.parametrize(
    ("returning", "update"), [(True, False), (False, False), (True, True)],
    ids=["do nothing returning", "do nothing", "do update where, returning"],
)
async def test_upsert_batch_counts_the_rows_sent_not_the_rows_inserted(db: course.CourseDB, returning, update) -> None:
    """ON CONFLICT DO NOTHING: 10 rows sent, the 4 that exist skipped. The batch is 10 rows.
    DO UPDATE ... WHERE adds a parameter outside VALUES, sent once per batch, not per row."""
    existing = (await db.frame(select(Tag.name).order_by(Tag.id).limit(4)))["name"].tolist()
    names = existing + [f"fresh-{i}" for i in range(6)]
    insert_ = _dialect_insert(db)(Tag)
    if update:
        insert_ = insert_.on_conflict_do_update(
            index_elements=["name"], set_={"name": insert_.excluded.name}, where=Tag.id > 2
        )
    else:
        insert_ = insert_.on_conflict_do_nothing(index_elements=["name"])
    if returning:
        insert_ = insert_.returning(Tag.id)
    async with db.engine.connect() as conn:
        with course.sql(show=False) as log:
            result = await conn.execute(insert_, [{"name": n} for n in names])
            inserted = len(result.all()) if returning else None
        await conn.rollback()
    assert log.count("INSERT") == 1, log.sql
    statement = log.queries[0]
    assert statement.executemany
    assert statement.batch_size == 10
    if update:  # tags 1 and 2 fail the WHERE: neither updated nor returned
        assert inserted == 8 and statement.rows == 8
    elif returning:
        assert inserted == 6 and statement.rows == 6


def _dialect_insert(db: course.CourseDB):
    if db.backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
