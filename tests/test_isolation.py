"""Each notebook owns its namespace: no leaks between notebooks, resets are real, the learner's own tables are safe."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

import course
from course import database
from course.schema import Tag, User


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cleanup() -> AsyncIterator[list[course.CourseDB]]:
    """Handles to close and namespaces to drop at the end of the test."""
    handles: list[course.CourseDB] = []
    yield handles
    for db in handles:
        await db.close()
        await database.drop(db.namespace)


async def started(monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB], disc: str) -> course.CourseDB:
    monkeypatch.setenv("COURSE_NAMESPACE", disc)
    db = await course.start("t")
    cleanup.append(db)
    return db


async def tag_names(db: course.CourseDB) -> set[str]:
    async with db.engine.connect() as conn:
        return set((await conn.execute(select(Tag.name))).scalars())


async def test_two_namespaces_do_not_see_each_other(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]
) -> None:
    a = await started(monkeypatch, cleanup, unique("a"))
    b = await started(monkeypatch, cleanup, unique("b"))
    assert a.namespace != b.namespace
    async with a.engine.begin() as conn:
        await conn.execute(insert(Tag).values(name="only-in-a"))
        await conn.execute(delete(Tag).where(Tag.name == "python"))
    async with b.session() as session, session.begin():
        session.add(Tag(name="only-in-b"))
    names_a, names_b = await tag_names(a), await tag_names(b)
    assert "only-in-a" in names_a and "only-in-a" not in names_b
    assert "only-in-b" in names_b and "only-in-b" not in names_a
    assert "python" not in names_a and "python" in names_b
    assert len(names_a) == 30 and len(names_b) == 31
    if a.is_sqlite:
        assert a.sqlite_file != b.sqlite_file


async def test_start_again_resets(monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]) -> None:
    disc = unique("r")
    first = await started(monkeypatch, cleanup, disc)
    async with first.engine.begin() as conn:
        await conn.execute(insert(Tag).values(name="scribble"))
        await conn.execute(update(User).where(User.id == 1).values(display_name="Scribbled"))
        await conn.execute(delete(Tag).where(Tag.name == "python"))
    assert "scribble" in await tag_names(first)

    second = await started(monkeypatch, cleanup, disc)
    assert second.namespace == first.namespace
    assert course.current() is second
    names = await tag_names(second)
    assert "scribble" not in names and "python" in names
    assert await second.counts() == second.seeded
    async with second.engine.connect() as conn:
        name = (await conn.execute(select(User.display_name).where(User.id == 1))).scalar_one()
    assert name != "Scribbled"


async def test_reset_method_resets(monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]) -> None:
    db = await started(monkeypatch, cleanup, unique("m"))
    async with db.engine.begin() as conn:
        await conn.execute(insert(Tag).values(name="scribble"))
    fresh = await db.reset()
    cleanup.append(fresh)
    assert "scribble" not in await tag_names(fresh)


async def test_drop_removes_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_NAMESPACE", unique("d"))
    db = await course.start("t")
    namespace, path = db.namespace, db.sqlite_file
    await database.drop(namespace)
    if db.is_sqlite:
        assert path is not None and not Path(path).exists()
        return
    engine = create_async_engine(os.environ["COURSE_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :n"), {"n": namespace}
            )
            assert found.scalar_one() == 0
    finally:
        await engine.dispose()


async def test_concurrent_starts(monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]) -> None:
    # the namespace is read when each start() runs; different lessons give different namespaces
    monkeypatch.setenv("COURSE_NAMESPACE", unique("g"))
    dbs = await asyncio.gather(course.start("ga"), course.start("gb"), course.start("gc"))
    cleanup.extend(dbs)
    assert len({db.namespace for db in dbs}) == 3
    for db in dbs:
        assert await db.counts() == db.seeded
        assert db.seeded["users"] == 500
    async with dbs[0].engine.begin() as conn:
        await conn.execute(insert(Tag).values(name="only-in-ga"))
    assert "only-in-ga" not in await tag_names(dbs[1])
    assert "only-in-ga" not in await tag_names(dbs[2])


@pytest.mark.postgresql
async def test_learner_table_in_public_survives(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]
) -> None:
    table = f"learner_notes_{uuid.uuid4().hex[:8]}"
    plain = create_async_engine(os.environ["COURSE_DATABASE_URL"])
    try:
        async with plain.begin() as conn:
            await conn.execute(text(f"CREATE TABLE public.{table} (id int PRIMARY KEY, note text)"))
            await conn.execute(text(f"INSERT INTO public.{table} VALUES (1, 'mine')"))

        disc = unique("p")
        db = await started(monkeypatch, cleanup, disc)
        await started(monkeypatch, cleanup, disc)  # start() again: a reset
        await database.drop(db.namespace)

        async with plain.connect() as conn:
            notes = (await conn.execute(text(f"SELECT note FROM public.{table}"))).scalars().all()
        assert notes == ["mine"]
    finally:
        async with plain.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS public.{table}"))
        await plain.dispose()


@pytest.mark.postgresql
async def test_course_tables_live_in_the_namespace_schema(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]
) -> None:
    db = await started(monkeypatch, cleanup, unique("s"))
    async with db.engine.connect() as conn:
        path = (await conn.execute(text("SHOW search_path"))).scalar_one()
        schemas = set(
            (
                await conn.execute(
                    text("SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = 'users'")
                )
            ).scalars()
        )
    assert path.strip('"') == db.namespace
    assert db.namespace in schemas


@pytest.mark.postgresql
async def test_emitted_sql_carries_no_schema_name(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[course.CourseDB]
) -> None:
    db = await started(monkeypatch, cleanup, unique("q"))
    with course.sql(show=False) as log:
        async with db.session() as session:
            user = await session.get(User, 1)
            assert user is not None
            await user.awaitable_attrs.posts
            session.add(Tag(name="fresh"))
            await session.commit()
    assert len(log) >= 3
    for statement in log:
        assert db.namespace not in statement.sql
        assert "public." not in statement.sql
