"""The sample data is deterministic, lands identically on both backends, and leaves a usable database."""

from __future__ import annotations

import hashlib
import marshal
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

import course
from course import database, seed
from course.schema import TABLES_IN_LOAD_ORDER, Base, Order, Post, Tag, User
from tests.conftest import private_db

#: sha256 over every seeded row (scale 1). Computed once from ``seed.generate()``; a change
#: here means every learner's data (and every lesson's expected output) changes with it.
EXPECTED_CHECKSUM = "b8d8e8fb3043eeb7e63b9b4ca079f96c0b30d2fabc8f17dc606c142de12a4c08"

EXPECTED_COUNTS = {
    "users": 500, "tags": 30, "posts": 5_000, "post_tags": 9_949, "comments": 20_000, "orders": 3_000,
}


def _key_positions(table: str) -> list[int]:
    columns = seed.COLUMNS[table]
    return [columns.index(c.name) for c in Base.metadata.tables[table].primary_key.columns]


def checksum(tables: dict[str, Iterable[tuple[Any, ...]]]) -> str:
    """sha256 of ``repr`` of every row, table by table in load order, rows ordered by key."""
    digest = hashlib.sha256()
    for table in TABLES_IN_LOAD_ORDER:
        keys = _key_positions(table)
        digest.update(f"[{table}]\n".encode())
        for row in sorted((tuple(r) for r in tables[table]), key=lambda r: [r[k] for k in keys]):
            digest.update(repr(row).encode())
            digest.update(b"\n")
    return digest.hexdigest()


async def read_back(db: course.CourseDB) -> dict[str, list[tuple[Any, ...]]]:
    """Every table through SQLAlchemy Core, columns in seed order, ordered by primary key."""
    out = {}
    async with db.engine.connect() as conn:
        for name in TABLES_IN_LOAD_ORDER:
            table = Base.metadata.tables[name]
            stmt = select(*(table.c[c] for c in seed.COLUMNS[name])).order_by(*table.primary_key.columns)
            out[name] = [tuple(r) for r in (await conn.execute(stmt)).all()]
    return out


@pytest.fixture
async def db() -> AsyncIterator[course.CourseDB]:
    async with private_db("seed") as handle:
        yield handle


# -- the generator ---------------------------------------------------------------------


def test_generate_is_identical_across_calls() -> None:
    first = seed.generate()
    seed.generate.cache_clear()
    second = seed.generate()
    assert first is not second  # really computed twice
    assert first == second
    assert checksum(first) == checksum(second)


def test_generate_matches_the_recorded_checksum() -> None:
    assert checksum(seed.generate()) == EXPECTED_CHECKSUM


def test_generate_sizes() -> None:
    data = seed.generate()
    assert {t: len(rows) for t, rows in data.items()} == EXPECTED_COUNTS
    for table, rows in data.items():
        assert all(len(r) == len(seed.COLUMNS[table]) for r in rows)


def test_generate_ignores_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    class FarFuture(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime(2099, 6, 1, 12, 0, 0, tzinfo=tz)

        @classmethod
        def utcnow(cls):  # type: ignore[override]
            return datetime(2099, 6, 1, 12, 0, 0)

        @classmethod
        def today(cls):  # type: ignore[override]
            return datetime(2099, 6, 1, 12, 0, 0)

    monkeypatch.setattr(seed, "datetime", FarFuture)
    monkeypatch.setattr(time, "time", lambda: 4_084_000_000.0)
    monkeypatch.setattr(time, "time_ns", lambda: 4_084_000_000 * 10**9)
    seed.generate.cache_clear()
    try:
        data = seed.generate()
        assert checksum(data) == EXPECTED_CHECKSUM
    finally:
        seed.generate.cache_clear()
    # and every timestamp lies before the fixed reference date
    stamps = [v for rows in data.values() for row in rows for v in row if isinstance(v, datetime)]
    assert stamps
    assert max(stamps) < seed.REFERENCE_DATE


def test_generate_ignores_hash_randomisation() -> None:
    """Iterating a set of strings would differ between interpreter runs; the data must not."""
    code = (
        "import hashlib, sys; sys.path.insert(0, sys.argv[1]); import test_seed as t; "
        "print(t.checksum(t.seed.generate()))"
    )
    here = os.path.dirname(__file__)
    results = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code, here], env=env, capture_output=True, text=True, check=True
        )
        results.add(out.stdout.strip())
    assert results == {EXPECTED_CHECKSUM}


def test_scale_is_checked() -> None:
    with pytest.raises(ValueError, match="scale must be positive"):
        seed.generate(0)


# -- the SQLite-ready rows, cached on disk for the next kernel --------------------------


@pytest.fixture
def rows_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """An empty data folder and no rows in memory: as a new kernel on a new machine."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    seed.sqlite_rows.cache_clear()
    yield tmp_path
    seed.sqlite_rows.cache_clear()


def _generate_must_not_run(scale: float = 1.0) -> None:
    raise AssertionError("the rows were generated again instead of read from the cache file")


def test_a_new_kernel_reads_the_rows_from_disk(rows_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    first = seed.sqlite_rows()
    [cache_file] = rows_cache.glob("seed-rows-x1-*.marshal")
    seed.sqlite_rows.cache_clear()  # a new kernel: nothing in memory
    monkeypatch.setattr(seed, "generate", _generate_must_not_run)
    again = seed.sqlite_rows()
    assert again is not first and again == first
    assert {len(again[t]) for t in ("users", "posts", "comments", "orders")} == {500, 5_000, 20_000, 3_000}
    assert cache_file.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not marshal at all", marshal.dumps({"users": []}), marshal.dumps([1, 2, 3])],
    ids=["empty", "garbage", "wrong tables", "not a dict"],
)
def test_a_broken_cache_file_is_replaced(rows_cache, content: bytes) -> None:
    path = seed._rows_cache_path(1.0)
    path.write_bytes(content)
    rows = seed.sqlite_rows()
    assert {t: len(r) for t, r in rows.items()} == EXPECTED_COUNTS
    assert marshal.loads(path.read_bytes()) == rows  # rewritten whole


def test_an_unwritable_cache_only_costs_time(rows_cache) -> None:
    seed._rows_cache_path(1.0).mkdir()  # the file cannot be created: a folder is in its place
    rows = seed.sqlite_rows()
    assert {t: len(r) for t, r in rows.items()} == EXPECTED_COUNTS
    assert [p.name for p in rows_cache.iterdir()] == [seed._rows_cache_path(1.0).name]  # no temp file left


def test_cache_files_of_earlier_versions_are_removed(rows_cache) -> None:
    old = rows_cache / "seed-rows-x1-0123456789abcdef.marshal"
    other_scale = rows_cache / "seed-rows-x2-0123456789abcdef.marshal"
    old.write_bytes(b"from an earlier version")
    other_scale.write_bytes(b"another scale")
    seed.sqlite_rows()
    assert not old.exists() and other_scale.exists()
    assert seed._rows_cache_path(1.0).exists()


# -- loaded into the database ----------------------------------------------------------


async def test_database_holds_exactly_the_generated_rows(db: course.CourseDB) -> None:
    assert db.seeded == EXPECTED_COUNTS
    assert await db.counts() == EXPECTED_COUNTS
    rows = await read_back(db)
    # the same types come back on both backends (datetime, bool, None, int, str)
    assert rows["users"][0] == seed.generate()["users"][0]
    assert checksum(rows) == checksum(seed.generate()) == EXPECTED_CHECKSUM


async def test_scale_two_doubles_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_NAMESPACE", f"seed{uuid.uuid4().hex[:10]}")
    db = await course.start("t", scale=2)
    try:
        counts = await db.counts()
        assert counts["users"] == 2 * EXPECTED_COUNTS["users"]
        assert counts["posts"] == 2 * EXPECTED_COUNTS["posts"]
        assert counts["comments"] == 2 * EXPECTED_COUNTS["comments"]
        assert counts == db.seeded
    finally:
        await db.close()
        await database.drop(db.namespace)


async def test_start_without_seed_leaves_empty_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_NAMESPACE", f"seed{uuid.uuid4().hex[:10]}")
    db = await course.start("t", seed=False)
    try:
        assert db.seeded == {}
        assert set((await db.counts()).values()) == {0}
    finally:
        await db.close()
        await database.drop(db.namespace)


@pytest.mark.postgresql
async def test_sequences_continue_after_the_seeded_ids(db: course.CourseDB) -> None:
    async with db.session() as session:
        user = User(
            email="new@example.com", username="newcomer", display_name="New Comer",
            country="NL", created_at=datetime(2026, 1, 1),
        )
        tag = Tag(name="brand-new")
        session.add_all([user, tag])
        await session.flush()
        assert user.id == 501
        assert tag.id == 31
        post = Post(author_id=user.id, title="t", body="b", created_at=datetime(2026, 1, 1))
        order = Order(user_id=user.id, status="paid", total_cents=100, created_at=datetime(2026, 1, 1))
        session.add_all([post, order])
        await session.flush()
        assert post.id == 5_001
        assert order.id == 3_001
        await session.commit()


async def test_foreign_keys_are_enforced(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                insert(Post).values(
                    id=999_999, author_id=999_999, title="orphan", body="", created_at=datetime(2026, 1, 1)
                )
            )
        await conn.rollback()
        assert (await conn.execute(select(func.count()).where(Post.id == 999_999))).scalar_one() == 0


@pytest.mark.sqlite
async def test_sqlite_foreign_keys_pragma_is_on(db: course.CourseDB) -> None:
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1


async def test_rolled_back_savepoint_keeps_the_outer_rows(db: course.CourseDB) -> None:
    with course.sql(show=False) as log:
        async with db.engine.begin() as conn:
            await conn.execute(insert(Tag).values(name="outer-before"))
            nested = await conn.begin_nested()
            await conn.execute(insert(Tag).values(name="inner"))
            await nested.rollback()
            await conn.execute(insert(Tag).values(name="outer-after"))
    assert log.count("SAVEPOINT") == 1
    assert log.count("ROLLBACK") == 1  # ROLLBACK TO SAVEPOINT; the outer one committed
    async with db.engine.connect() as conn:
        names = set((await conn.execute(select(Tag.name).where(Tag.id > 30))).scalars())
    assert names == {"outer-before", "outer-after"}


async def test_rolled_back_savepoint_in_a_session(db: course.CourseDB) -> None:
    async with db.session() as session, session.begin():
        session.add(Tag(name="kept"))
        try:
            async with session.begin_nested():
                session.add(Tag(name="dropped"))
                await session.flush()
                raise RuntimeError("undo the inner block")
        except RuntimeError:
            pass
        session.add(Tag(name="kept-too"))
    async with db.session() as session:
        names = set((await session.execute(select(Tag.name).where(Tag.id > 30))).scalars())
    assert names == {"kept", "kept-too"}



# -- PostgreSQL: one pristine copy per database, copied server-side ------------------------


@pytest.fixture
async def pristine(db: course.CourseDB) -> AsyncIterator[str]:
    """A pristine schema name no other run uses, outside the shared prefix: saving it sweeps nothing, so
    it never waits on the shared copy that kernels in other test workers read from."""
    name = f"testpristine_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def _reseed(db: course.CourseDB, pristine: str) -> dict[str, int]:
    """Recreate the notebook's empty tables as ``start()`` does, then load them."""
    await database._prepare_schema(db.engine, db.backend, db.namespace)
    async with db.engine.connect() as conn:
        return await seed.load(conn, db.backend, db.namespace, pristine=pristine)


async def _comment_on(db: course.CourseDB, schema: str) -> str | None:
    async with db.engine.connect() as conn:
        stmt = select(func.obj_description(func.to_regnamespace(schema), "pg_namespace"))
        return (await conn.execute(stmt)).scalar_one()


@pytest.mark.postgresql
async def test_the_first_start_saves_a_pristine_copy_the_next_copies_from(db, pristine) -> None:
    assert await _reseed(db, pristine) == EXPECTED_COUNTS  # no pristine yet: COPY, then saved
    assert await _comment_on(db, pristine) == seed.PRISTINE_COMPLETE
    async with db.engine.begin() as conn:  # mark the pristine copy, to see where the next rows come from
        await conn.exec_driver_sql(f"UPDATE \"{pristine}\".tags SET name = name || '!' WHERE id = 1")
    assert await _reseed(db, pristine) == EXPECTED_COUNTS
    rows = await read_back(db)
    assert rows["tags"][0][1].endswith("!")  # it came from the pristine schema, server-side
    rows["tags"][0] = (1, rows["tags"][0][1][:-1])
    assert checksum(rows) == EXPECTED_CHECKSUM  # and every other row is the seed's


@pytest.mark.postgresql
async def test_a_pristine_copy_that_lost_rows_is_not_used(db, pristine) -> None:
    await _reseed(db, pristine)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(f'DELETE FROM "{pristine}".orders WHERE id > 2990')
    assert await _reseed(db, pristine) == EXPECTED_COUNTS  # fell back to COPY: all 3,000 orders
    assert checksum(await read_back(db)) == EXPECTED_CHECKSUM


@pytest.mark.postgresql
async def test_an_unfinished_pristine_copy_is_rebuilt(db, pristine) -> None:
    async with db.engine.begin() as conn:  # a schema of that name without the completion mark
        await conn.exec_driver_sql(f'CREATE SCHEMA "{pristine}"')
    assert await _reseed(db, pristine) == EXPECTED_COUNTS
    assert await _comment_on(db, pristine) == seed.PRISTINE_COMPLETE
    assert checksum(await read_back(db)) == EXPECTED_CHECKSUM


async def _foreign_keys(db: course.CourseDB) -> set[tuple[str, str]]:
    async with db.engine.connect() as conn:
        return set(tuple(row) for row in (await conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
            "AND connamespace = current_schema()::regnamespace"
        )).all())


@pytest.mark.postgresql
async def test_foreign_keys_come_back_after_the_load(db, pristine) -> None:
    """The load drops the foreign keys and adds them back: same names and definitions, enforced."""
    await database._prepare_schema(db.engine, db.backend, db.namespace)
    created = await _foreign_keys(db)  # as create_all made them
    assert len(created) == sum(len(t.foreign_key_constraints) for t in Base.metadata.tables.values())
    for _ in range(2):  # COPY, then the pristine copy
        await _reseed(db, pristine)
        assert await _foreign_keys(db) == created
        async with db.engine.connect() as conn:
            with pytest.raises(IntegrityError):
                await conn.execute(insert(Post).values(
                    id=99_999, author_id=99_999, title="t", body="b", created_at=datetime(2026, 1, 1)
                ))


@pytest.mark.postgresql
async def test_seed_copy_off_never_saves_a_pristine_copy(db, pristine, monkeypatch) -> None:
    monkeypatch.setenv(seed.ENV_SEED_COPY, "0")
    assert await _reseed(db, pristine) == EXPECTED_COUNTS
    assert await _comment_on(db, pristine) is None
