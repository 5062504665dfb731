"""The exercise machinery itself: answer kinds, stubs, strict mode, isolation, display."""

from __future__ import annotations

import contextlib

import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select, text

import course
from course.exercises import ERROR, NOT_ATTEMPTED, SESSION_FN, Exercise, lesson00, sql_reference
from course.exercises.core import ExerciseFailed
from course.exercises.rules import NoLazyLoads, SameResult, SessionUsable, StatementBudget
from course.schema import Post, Tag, User
from tests.conftest import private_db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("platformtests") as handle:
        yield handle


async def test_untouched_stub_is_not_attempted(db):
    assert (await lesson00.q1.evaluate(..., db=db)).status == NOT_ATTEMPTED


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("SELECT id, username FROM users", "SQL string"),
        ([1, 2, 3], "a list"),
        (42, "int"),
    ],
)
async def test_wrong_kind_names_the_kind_expected(db, answer, says):
    verdict = await lesson00.q1.evaluate(answer, db=db)
    assert verdict.status == ERROR
    assert says in verdict.message and "SQLAlchemy statement" in verdict.message


async def _posts_of_user_1(session):
    user = await session.get(User, 1)
    return [p.id for p in user.posts]  # a lazy load: fails in async code


async def _posts_of_user_1_loaded(session):
    from sqlalchemy.orm import selectinload

    user = await session.scalar(select(User).where(User.id == 1).options(selectinload(User.posts)))
    return [p.id for p in user.posts]


def _sync_answer(session):
    return []


posts_of_user_1 = Exercise(
    id="t.q1", title="posts of user 1", kind=SESSION_FN,
    solution_answer=_posts_of_user_1_loaded,
    expected=sql_reference("SELECT id FROM posts WHERE author_id = 1 ORDER BY id", flat=True),
    rules=[SameResult(ordered=True), StatementBudget(2), NoLazyLoads()],
    hints=["load the posts up front"], why="no lazy loads",
)


async def test_session_function_kinds(db):
    assert (await posts_of_user_1.evaluate(_posts_of_user_1_loaded, db=db)).correct
    lazy = await posts_of_user_1.evaluate(_posts_of_user_1, db=db)
    assert lazy.status == "incorrect" and "lazily" in lazy.message
    sync = await posts_of_user_1.evaluate(_sync_answer, db=db)
    assert sync.status == ERROR and "async def" in sync.message
    coro = await posts_of_user_1.evaluate(_posts_of_user_1_loaded(None), db=db)
    assert coro.status == ERROR and "without parentheses" in coro.message


async def _raises(session):
    raise NotImplementedError


async def test_not_implemented_stub_is_not_attempted(db):
    assert (await posts_of_user_1.evaluate(_raises, db=db)).status == NOT_ATTEMPTED


async def _commits_a_tag(session):
    session.add(Tag(name="leaky"))
    await session.commit()
    return [1]


async def _breaks_session(session):
    session.add(User(id=1, email="dupe@example.com", username="dupe", display_name="d",
                     country="US", created_at=course.seed.REFERENCE_DATE))
    with contextlib.suppress(Exception):
        await session.flush()  # swallowed without rollback: the session is left failed
    return []


breaks = Exercise(
    id="t.q2", title="leave the session usable", kind=SESSION_FN,
    solution_answer=_commits_a_tag, expected=None,
    rules=[SessionUsable()], hints=["roll back"], why="usable",
)


async def test_answers_that_commit_leave_nothing_behind(db):
    before = await db.counts()
    verdict = await breaks.evaluate(_commits_a_tag, db=db)
    assert verdict.correct, str(verdict)
    assert await db.counts() == before
    async with db.session() as session:
        assert await session.scalar(select(func.count()).where(Tag.name == "leaky")) == 0


async def test_a_failed_transaction_is_a_verdict_and_the_database_stays_usable(db):
    verdict = await breaks.evaluate(_breaks_session, db=db)
    assert verdict.status == "incorrect" and "failed transaction" in verdict.message
    assert (await lesson00.q1.evaluate(lesson00.q1.solution_answer(), db=db)).correct


async def test_an_answer_that_raises_is_a_verdict(db):
    verdict = await lesson00.q1.evaluate(select(text("no_such_column")).select_from(User), db=db)
    assert verdict.status == ERROR and "raised" in verdict.message


async def test_strict_mode_raises_for_wrong_but_not_for_unattempted(db, monkeypatch):
    monkeypatch.setenv("COURSE_STRICT", "1")
    await lesson00.q1.check(..., db=db)
    with pytest.raises(ExerciseFailed):
        await lesson00.q1.check(select(User.id, User.username).where(User.country == "DE"), db=db)
    monkeypatch.setenv("COURSE_STRICT", "0")
    await lesson00.q1.check(select(User.id, User.username).where(User.country == "DE"), db=db)


async def test_insert_statement_answer_is_rolled_back(db):
    ex = Exercise(
        id="t.q3", title="insert", kind="statement",
        solution_answer=lambda: insert(Tag).values(name="zzz"),
        expected=None, rules=[], hints=["x"], why="y",
    )
    assert (await ex.evaluate(insert(Tag).values(name="zzz"), db=db)).correct
    async with db.session() as session:
        assert await session.scalar(select(func.count()).where(Tag.name == "zzz")) == 0


def test_verdict_renders_with_stable_class_and_json():
    from course.exercises.verdict import MIME, RuleResult, Verdict

    v = Verdict("00.q1", "t", "incorrect", "2 missing rows", [RuleResult("the right result", False, "2 missing rows")])
    bundle = v._repr_mimebundle_()
    assert 'class="course-box course-bad course-verdict"' in bundle["text/html"]
    assert "Not yet" in bundle["text/html"] and "course-icon-bad" in bundle["text/html"]  # an SVG mark, no font needed
    assert bundle[MIME]["status"] == "incorrect"
    assert bundle[MIME]["rules"][0]["message"] == "2 missing rows"


def test_hints_are_graded(capsys):
    lesson00.q1._hint_level = 0
    lesson00.q1.hint()
    lesson00.q1.hint()
    lesson00.q1.hint()
    out = capsys.readouterr().out
    assert out.count("Start from select") == 1 and out.count(".where(") == 2


def test_solution_shows_the_reference_code(capsys):
    lesson00.q1.solution()
    assert 'select(User.id, User.username).where(User.country == "NL")' in capsys.readouterr().out


async def test_posts_relationship_imported_for_lint():
    assert Post.__tablename__ == "posts"


async def test_create_engine_takes_any_pool_class(db):
    """db.create_engine(poolclass=NullPool) works on both backends: the course's own pool
    size (PostgreSQL) applies only to queue pools, which are the only ones that take a size."""
    from sqlalchemy.pool import NullPool

    engine = db.create_engine(poolclass=NullPool)
    try:
        assert isinstance(engine.pool, NullPool)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
    sized = db.create_engine(pool_size=3, max_overflow=0)
    assert (sized.pool.size(), sized.pool._max_overflow) == (3, 0)
    await sized.dispose()


async def test_sqlalchemy_warnings_reach_the_verdict(db):
    cartesian = select(User.id, User.username).where(User.country == "NL", Post.id < 3).order_by(User.id)
    verdict = await lesson00.q1.evaluate(cartesian, db=db)
    assert verdict.status == "incorrect"
    assert "SQLAlchemy warned" in verdict.message and "cartesian product" in verdict.message


async def _post_counts_one_by_one(session):
    return [await session.scalar(select(func.count(Post.id)).where(Post.author_id == uid)) for uid in range(1, 13)]


async def _post_counts_in_batches_of_three(session):
    counts = {}
    for start in range(1, 13, 3):
        ids = list(range(start, start + 3))
        rows = await session.execute(
            select(Post.author_id, func.count(Post.id)).where(Post.author_id.in_(ids)).group_by(Post.author_id)
        )
        counts.update(dict(rows.all()))
    return [counts.get(uid, 0) for uid in range(1, 13)]


async def _post_counts_in_one_query(session):
    rows = await session.execute(
        select(User.id, func.count(Post.id)).outerjoin(Post, Post.author_id == User.id)
        .where(User.id <= 12).group_by(User.id).order_by(User.id)
    )
    return [count for _, count in rows.all()]


post_counts = Exercise(
    id="t.q3", title="post counts of users 1-12", kind=SESSION_FN,
    solution_answer=_post_counts_in_one_query,
    expected=sql_reference(
        "SELECT count(p.id) FROM users u LEFT JOIN posts p ON p.author_id = u.id "
        "WHERE u.id <= 12 GROUP BY u.id ORDER BY u.id", flat=True,
    ),
    rules=[SameResult(ordered=True), StatementBudget(1)], hints=["one query"], why="one round trip",
)


async def test_statement_budget_tells_an_n_plus_one_from_small_batches(db):
    assert (await post_counts.evaluate(_post_counts_in_one_query, db=db)).correct
    one_by_one = await post_counts.evaluate(_post_counts_one_by_one, db=db)
    assert one_by_one.status == "incorrect"
    assert "took 12 statements" in one_by_one.message and "N+1" in one_by_one.message
    batches = await post_counts.evaluate(_post_counts_in_batches_of_three, db=db)
    assert batches.status == "incorrect"
    assert "took 4 statements" in batches.message and "N+1" not in batches.message
    assert "ran 4 times with 3 parameters each" in batches.message


@pytest.mark.parametrize(
    ("sql", "sorted_"),
    [
        ("SELECT id FROM users ORDER BY id", True),
        ("SELECT id FROM users\nORDER BY users.id DESC\n LIMIT ? OFFSET ?", True),
        ("SELECT id FROM users", False),
        ("SELECT id, row_number() OVER (ORDER BY created_at) AS n FROM users", False),
        ("SELECT anon_1.id FROM (SELECT id FROM users ORDER BY id LIMIT 5) AS anon_1", False),
        ("WITH top AS (SELECT id FROM users ORDER BY id LIMIT 5) SELECT id FROM top ORDER BY id", True),
        ("SELECT id FROM users WHERE note = 'x) ORDER BY (y'", False),
        ("SELECT reorder BYTES FROM t", False),
    ],
)
def test_top_level_order_by_is_told_from_inner_ones(sql, sorted_):
    from course.exercises.rules import has_top_level_order_by

    assert has_top_level_order_by(sql) is sorted_
