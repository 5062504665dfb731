"""course.lab.loaders (lesson 06): the strategy harness, the comparison and the explorer widget."""

from __future__ import annotations

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from course.lab import loaders
from course.schema import User
from tests.conftest import private_db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("loadertests") as handle:
        yield handle


@pytest.mark.parametrize(
    ("entity", "path"), [(e, p) for e, paths in loaders.PATHS.items() for p in paths]
)
async def test_every_strategy_reaches_the_same_objects(db, entity, path):
    parents = 1 if entity in ("User", "Tag") else 3  # user 1 and tag 1 already have hundreds of posts
    runs = {s: await loaders.statements_for(entity, path, s, parents=parents, db=db) for s in loaders.STRATEGIES}
    reached = {s: r.related for s, r in runs.items() if s != "raiseload"}
    assert len(set(reached.values())) == 1, reached
    assert runs["joinedload"].statements == 1
    assert runs["selectinload"].statements <= 1 + len(path.split(".")) * 2  # IN batches at most
    assert runs["lazy"].statements == runs["immediateload"].statements
    assert runs["raiseload"].error and runs["raiseload"].error.startswith("InvalidRequestError")
    assert all(r.error is None for s, r in runs.items() if s != "raiseload")


async def test_lazy_is_one_plus_n(db):
    run = await loaders.statements_for("User", "posts", "lazy", parents=10, db=db)
    assert run.statements == 11 and 'data-statements="11"' in run.summary_html()
    assert 'class="course-sql-log"' in run.sql_html()


def test_unknown_choices_are_named():
    with pytest.raises(ValueError, match="unknown strategy"):
        loaders.loader_option("User", "posts", "eagerload")


async def test_explorer_follows_widget_changes(db):
    explorer = await loaders.explorer(db)
    assert explorer.count == 11
    explorer.strategy.value = "selectinload"  # a sync callback schedules the query on this loop
    await explorer.settled()
    assert explorer.count == 2 and 'data-statements="2"' in explorer.summary.value
    assert 'class="course-sql-log"' in explorer.sql.value
    explorer.entity.value = "Comment"
    await explorer.settled()
    assert explorer.path.value == "author" and explorer.count == 2
    # several quick changes: only the last choice is shown
    explorer.strategy.value = "lazy"
    explorer.strategy.value = "joinedload"
    await explorer.settled()
    assert explorer.choice[2] == "joinedload" and explorer.count == 1
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "course-loader-count" in bundle["text/html"]
    classes = {c for w in (explorer.strategy, explorer.summary, explorer.sql) for c in w._dom_classes}
    assert {"course-loader-strategy", "course-loader-summary", "course-loader-sql"} <= classes
    assert explorer.strategy.description == "strategy"


async def test_measure_table_and_chart(db):
    async def selectin(session):
        users = (await session.scalars(select(User).where(User.id <= 5).options(selectinload(User.posts)))).all()
        return sum(len(u.posts) for u in users)

    async def awaited(session):
        users = (await session.scalars(select(User).where(User.id <= 5))).all()
        return sum([len(await u.awaitable_attrs.posts) for u in users])

    comparison = await loaders.measure({"selectinload": selectin, "awaited": awaited}, db=db, repeat=1)
    table = comparison.table()
    assert table["statements"].to_dict() == {"selectinload": 2, "awaited": 6}
    assert comparison["awaited"].result == comparison["selectinload"].result
    assert comparison.chart("t")._repr_mimebundle_()[0]["image/png"].startswith(b"\x89PNG")
