"""Lesson 12's checker: the race with a real second request, its cleanup, and correct answers of other forms.

Runs on the active backend (COURSE_DATABASE_URL selects PostgreSQL); each claim holds on both.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime

import pytest
import pytest_asyncio
from sqlalchemy import event, func, insert, literal, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.util import await_only

from course.database import open_scratch
from course.exercises import CORRECT, lesson12
from course.exercises.lesson12 import counterexamples, dataset, reference, writes
from course.exercises.rules import Attempt
from course.lab.errorkinds import constraint_kind
from course.recorder import record
from course.schema import Comment, Post, Tag, post_tags
from tests.conftest import private_db

Reference = lesson12.FeedRepository
AlreadyExists = lesson12.AlreadyExists


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("lesson12tests") as handle:
        yield handle


@pytest_asyncio.fixture(loop_scope="module")
async def scratch(db):
    handle = await open_scratch(db.lesson, scale=reference.SCALE)
    await dataset.prepare(handle)
    try:
        yield handle
    finally:
        await handle.discard()


async def _titled(scratch, title):
    return (await writes._rows(scratch, "SELECT count(*) FROM posts WHERE title = :t", t=title))[0][0]


# ---------------------------------------------------------------- the race: a second connection, committed


async def test_the_race_is_run_by_a_second_request_that_commits(scratch):
    attempt = Attempt()
    await writes._race_scenario(Reference, scratch, attempt)
    other = attempt.extra["other"]
    assert other.fired and other.committed and other.failed is None  # it wrote, on its own connection
    first = attempt.extra["first_outcome"]
    if scratch.is_postgresql:
        # the unique index met the committed row: 23505 inside the savepoint, mapped to the domain error
        assert isinstance(first, AlreadyExists) and first.__cause__.orig.sqlstate == "23505"
        assert not attempt.extra.get("retried")
    else:
        # the answer's deferred transaction had read first: its write fails, the caller retries it whole
        assert isinstance(first, OperationalError) and first.orig.sqlite_errorname == "SQLITE_BUSY_SNAPSHOT"
        assert attempt.extra["retried"]
    assert isinstance(attempt.extra["duplicate"], AlreadyExists) and attempt.session_usable
    assert await _titled(scratch, writes.RACE_TITLE) == 0  # the other request's committed row is gone


class _CrashAfterInsert(Reference):
    """Inserts the post (so the other request commits first), then fails for an unrelated reason."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        try:
            async with session.begin_nested():
                session.add(Post(author_id=author_id, title=title, body=body, status="published",
                                 created_at=published_at, published_at=published_at))
        except (IntegrityError, OperationalError):
            pass
        raise RuntimeError("boom")


async def test_the_other_requests_row_is_deleted_even_when_the_answer_crashes(scratch):
    attempt = Attempt()
    await writes._race_scenario(_CrashAfterInsert, scratch, attempt)
    assert attempt.extra["other"].committed
    assert isinstance(attempt.extra["duplicate"], RuntimeError)
    assert await _titled(scratch, writes.RACE_TITLE) == 0
    # and the next requirement on the same scratch database sees no trace of it
    again = Attempt()
    await writes._race_scenario(Reference, scratch, again)
    assert again.extra["other"].committed and isinstance(again.extra["duplicate"], AlreadyExists)
    assert await _titled(scratch, writes.RACE_TITLE) == 0


async def test_a_whole_q4_check_leaves_the_notebook_database_untouched(db):
    before = await db.counts()
    verdict = await lesson12.q4.evaluate(Reference, db=db)
    assert verdict.status == CORRECT, str(verdict)
    assert await db.counts() == before


async def test_a_new_tag_another_request_committed_is_no_duplicate_post(scratch):
    """tags.name is unique too: the reference reads back before it says AlreadyExists."""
    other = scratch.create_engine()
    fired = []

    def commit_the_tag_first(conn, cursor, statement, parameters, context, many):
        if not fired and writes._INSERT_POSTS.match(statement):
            fired.append(1)

            async def publish_tag():
                async with other.begin() as oc:
                    await oc.execute(insert(Tag).values(name="capstone-contested"))

            await_only(publish_tag())

    async def create(answer):
        async with scratch.session() as session, session.begin():
            return await answer.create_post(
                session, author_id=7, title="Capstone: a contested tag", body="...",
                tag_names=["python", "capstone-contested"], published_at=reference.WHEN,
            )

    class OnlyTheKind(Reference):  # the mapping the lesson warns about: any unique violation is a duplicate
        @staticmethod
        async def create_post(session, **call):
            tags = await counterexamples._known_or_new(session, call["tag_names"])
            return await counterexamples._in_savepoint(session, tags, **call)

    try:
        for answer, expected in ((Reference, IntegrityError), (OnlyTheKind, AlreadyExists)):
            fired.clear()
            event.listen(scratch.engine.sync_engine, "before_cursor_execute", commit_the_tag_first)
            try:
                with pytest.raises((IntegrityError, OperationalError, AlreadyExists)) as raised:
                    await create(answer)
            finally:
                event.remove(scratch.engine.sync_engine, "before_cursor_execute", commit_the_tag_first)
                async with scratch.engine.begin() as conn:
                    await conn.execute(Tag.__table__.delete().where(Tag.name == "capstone-contested"))
            assert fired
            if scratch.is_postgresql:  # the tag's unique index, not the post's
                assert isinstance(raised.value, expected), raised.value
                cause = raised.value.__cause__ if expected is AlreadyExists else raised.value
                assert cause.orig.__cause__.constraint_name == "tags_name_key"
            else:  # SQLite: the transaction had read before the tag was committed, so it cannot write at all
                assert isinstance(raised.value, OperationalError)
                assert raised.value.orig.sqlite_errorname == "SQLITE_BUSY_SNAPSHOT"
        assert await _titled(scratch, "Capstone: a contested tag") == 0
    finally:
        await other.dispose()


@pytest.mark.sqlite  # SQLite's locking: deselected on PostgreSQL, never skipped
async def test_on_sqlite_only_a_writer_that_has_not_read_waits_for_the_lock(db):
    """A deferred transaction that read gets SQLITE_BUSY at once; BEGIN IMMEDIATE waits its busy timeout."""
    holder = db.engine.execution_options(sqlite_begin="IMMEDIATE")
    quick = db.create_engine(connect_args={"timeout": 0.5})
    try:
        async with holder.connect() as held:
            await held.begin()  # BEGIN IMMEDIATE: the write lock, held
            async with quick.connect() as reader:
                await reader.begin()
                await reader.scalar(select(1).select_from(Tag))  # reads: a snapshot
                started = time.perf_counter()
                with pytest.raises(OperationalError) as busy:
                    await reader.execute(insert(Tag).values(name="capstone-never"))
                assert busy.value.orig.sqlite_errorname == "SQLITE_BUSY"
                assert time.perf_counter() - started < 0.4  # at once: the busy timeout (0.5 s) did not apply
                await reader.rollback()
            async with quick.execution_options(sqlite_begin="IMMEDIATE").connect() as writer:
                started = time.perf_counter()
                with pytest.raises(OperationalError, match="database is locked"):
                    await writer.begin()
                    await writer.scalar(select(1))  # the BEGIN IMMEDIATE runs here, and waits
                assert time.perf_counter() - started >= 0.45  # it waited for the busy timeout
            await held.rollback()
    finally:
        await quick.dispose()


# ---------------------------------------------------------------- the SQLite BEGIN option the lesson uses


async def test_sqlite_begin_immediate_is_emitted_and_recorded_and_ignored_by_postgresql(db):
    writers = db.engine.execution_options(sqlite_begin="IMMEDIATE")
    with record(show=False) as log:
        async with writers.begin() as conn:
            assert await conn.scalar(select(1)) == 1
        async with db.engine.begin() as conn:  # the plain engine: BEGIN, hidden as before
            assert await conn.scalar(select(1)) == 1
    assert [s.sql for s in log if s.verb == "BEGIN"] == (["BEGIN IMMEDIATE"] if db.is_sqlite else [])


async def test_an_unknown_sqlite_begin_mode_is_refused_by_name(db):
    if db.is_postgresql:
        async with db.engine.execution_options(sqlite_begin="NOW").begin() as conn:  # SQLite's option only
            assert await conn.scalar(select(1)) == 1
        return
    with pytest.raises(ValueError, match="sqlite_begin='NOW'.*DEFERRED, IMMEDIATE, EXCLUSIVE"):
        async with db.engine.execution_options(sqlite_begin="NOW").begin():
            pass


# ---------------------------------------------------------------- correct answers of other forms


class OrmObjects(Reference):
    """Post objects with the author joined eagerly and the tags selectin-loaded: still 2 statements."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        n = select(func.count()).where(Comment.post_id == Post.id).scalar_subquery()
        stmt = (
            select(Post, n)
            .options(joinedload(Post.author), selectinload(Post.tags))
            .where(Post.status == "published")
            .order_by(Post.published_at.desc(), Post.id.desc())
            .limit(limit + 1)
        )
        if tag is not None:
            stmt = stmt.where(Post.tags.any(Tag.name == tag))
        if cursor is not None:
            stmt = stmt.where(tuple_(Post.published_at, Post.id) < tuple_(*cursor))
        rows = (await session.execute(stmt)).all()
        page = rows[:limit]
        items = [
            {"id": p.id, "title": p.title, "author": p.author.username, "published_at": p.published_at,
             "tags": sorted(t.name for t in p.tags), "comment_count": count}
            for p, count in page
        ]
        return items, ((page[-1][0].published_at, page[-1][0].id) if len(rows) > limit else None)


class GroupedCountsStringCursor(Reference):
    """Comment counts from a grouped subquery, and an opaque string cursor."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        counts = select(Comment.post_id, func.count().label("n")).group_by(Comment.post_id).subquery()
        stmt = (
            select(Post.id, Post.title, Post.published_at, Post.author_id,
                   func.coalesce(counts.c.n, 0).label("n"))
            .outerjoin(counts, counts.c.post_id == Post.id)
            .where(Post.status == "published")
            .order_by(Post.published_at.desc(), Post.id.desc())
            .limit(limit + 1)
        )
        if tag is not None:
            stmt = stmt.where(Post.tags.any(Tag.name == tag))
        if cursor is not None:
            at, pk = cursor.split("|")
            stmt = stmt.where(tuple_(Post.published_at, Post.id) < (datetime.fromisoformat(at), int(pk)))
        rows = (await session.execute(stmt)).all()
        page = rows[:limit]
        from course.schema import User

        names, authors = defaultdict(list), {}
        if page:
            ids = [r.id for r in page]
            pairs = await session.execute(
                select(post_tags.c.post_id, Tag.name, User.id, User.username)
                .select_from(Post)
                .join(User, User.id == Post.author_id)
                .outerjoin(post_tags, post_tags.c.post_id == Post.id)
                .outerjoin(Tag, Tag.id == post_tags.c.tag_id)
                .where(Post.id.in_(ids))
            )
            for post_id, name, user_id, username in pairs:
                authors[user_id] = username
                if name is not None:
                    names[post_id].append(name)
        items = [
            {"id": r.id, "title": r.title, "author": authors[r.author_id], "published_at": r.published_at,
             "tags": sorted(names[r.id]), "comment_count": r.n}
            for r in page
        ]
        last = page[-1] if page else None
        return items, (f"{last.published_at.isoformat()}|{last.id}" if len(rows) > limit else None)


async def _tags(session, tag_names):
    """Known tags in one lookup, new ones built: before the post is added (no autoflush of it)."""
    names = list(dict.fromkeys(tag_names))
    known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))} if names else {}
    return [known.get(n) or Tag(name=n) for n in names]


def telling_duplicates_by(is_duplicate):
    """A create_post in a savepoint that maps an IntegrityError to AlreadyExists when ``is_duplicate(exc)``."""

    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        tags = await _tags(session, tag_names)
        try:
            async with session.begin_nested():
                post = Post(author_id=author_id, title=title, body=body, status="published",
                            created_at=published_at, published_at=published_at)
                session.add(post)
                post.tags = tags
        except IntegrityError as exc:
            if is_duplicate(exc):
                raise AlreadyExists(title) from exc
            raise
        return post.id

    return staticmethod(create_post)


class ByCode(Reference):
    """The driver's code read directly: SQLSTATE 23505 or SQLite's extended result name."""

    create_post = telling_duplicates_by(
        lambda exc: (getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None))
        in ("23505", "SQLITE_CONSTRAINT_UNIQUE")
    )


class ByMessage(Reference):
    """The error text read instead of the code (works on both, if less robust)."""

    create_post = telling_duplicates_by(
        lambda exc: "UNIQUE constraint failed" in str(exc.orig) or "duplicate key value" in str(exc.orig)
    )


class CheckFirstThenSavepoint(Reference):
    """A SELECT to answer the common case early, and still the savepoint for the race."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        taken = await session.scalar(select(Post.id).where(Post.author_id == author_id, Post.title == title))
        if taken is not None:
            raise AlreadyExists(title)
        return await Reference.create_post(
            session, author_id=author_id, title=title, body=body, tag_names=tag_names, published_at=published_at,
        )


class CoreInsertsInSavepoint(Reference):
    """Core INSERT ... RETURNING statements, all inside one savepoint."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        try:
            async with session.begin_nested():
                post_id = await session.scalar(
                    insert(Post).values(author_id=author_id, title=title, body=body, status="published",
                                        created_at=published_at, published_at=published_at).returning(Post.id)
                )
                known = dict((await session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names)))).all())
                missing = [n for n in names if n not in known]
                if missing:
                    known.update((await session.execute(
                        insert(Tag).returning(Tag.name, Tag.id), [{"name": n} for n in missing])).all())
                if names:
                    await session.execute(insert(post_tags), [{"post_id": post_id, "tag_id": known[n]} for n in names])
        except IntegrityError as exc:
            if constraint_kind(exc) == "unique":
                raise AlreadyExists(title) from exc
            raise
        return post_id


class LinksFromSelect(Reference):
    """The links written by one INSERT ... SELECT from the tags (no VALUES: the checker's failure for q3 is
    then a missing table, not NULLs)."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        async with session.begin_nested():
            post = Post(author_id=author_id, title=title, body=body, status="published",
                        created_at=published_at, published_at=published_at)
            session.add(post)
            known = set(await session.scalars(select(Tag.name).where(Tag.name.in_(names))))
            session.add_all([Tag(name=n) for n in names if n not in known])
            await session.flush()
            await session.execute(insert(post_tags).from_select(
                ["post_id", "tag_id"], select(literal(post.id), Tag.id).where(Tag.name.in_(names))
            ))
        return post.id


@pytest.mark.parametrize(
    ("exercise", "answer"),
    [
        ("q1", OrmObjects), ("q2", OrmObjects),
        ("q3", LinksFromSelect),
        ("q1", GroupedCountsStringCursor), ("q2", GroupedCountsStringCursor),
        ("q3", ByCode), ("q4", ByCode), ("q4", ByMessage),
        ("q4", CheckFirstThenSavepoint),
        ("q3", CoreInsertsInSavepoint), ("q4", CoreInsertsInSavepoint),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
async def test_a_correct_answer_of_another_form_is_accepted(db, exercise, answer):
    verdict = await getattr(lesson12, exercise).evaluate(answer, db=db)
    assert verdict.status == CORRECT, str(verdict)


@pytest.mark.sqlite  # SQLite's locking hides the race's unique violation: deselected on PostgreSQL, never skipped
async def test_on_sqlite_a_check_first_answer_meets_the_unique_violation_its_select_missed(scratch):
    """The race ends in 'database is locked' and a retry whose SELECT finds the post; so a post committed
    before is hidden from the answer's SELECT until its INSERT, which then meets the unique index."""
    for answer, expected in (
        (CheckFirstThenSavepoint, AlreadyExists),
        (counterexamples._CheckFirstSavepointNoConversion, IntegrityError),
    ):
        attempt = Attempt()
        await writes._race_scenario(answer, scratch, attempt)
        assert attempt.extra["retried"] and isinstance(attempt.extra["duplicate"], AlreadyExists)
        assert isinstance(attempt.extra["unseen"], expected), attempt.extra["unseen"]
        assert await _titled(scratch, writes.UNSEEN_TITLE) == 0  # the committed post is gone again


# ---------------------------------------------------------------- feedback that names the mistake


def test_every_capstone_exercise_has_four_counterexamples():
    for exercise in (lesson12.q1, lesson12.q2, lesson12.q3, lesson12.q4):
        assert len(exercise.counterexamples) >= 4, exercise.id


async def test_the_blanket_mapping_is_named_with_the_code_of_the_refusal(db):
    verdict = await lesson12.q4.evaluate(counterexamples._EveryIntegrityErrorIsADuplicate, db=db)
    assert verdict.message.startswith("an author who does not exist:"), verdict.message
    code = "23503" if db.is_postgresql else "SQLITE_CONSTRAINT_FOREIGNKEY"
    assert f"code {code}" in verdict.message and "foreign-key violation" in verdict.message
    assert "every IntegrityError became 'already exists'" in verdict.message


def test_the_scorecard_says_each_problem_once_without_backticks():
    from course.exercises.lesson12.scorecard import Scorecard
    from course.exercises.verdict import RuleResult, Verdict

    lazy = "first page: `Post.author` was loaded lazily: load it with `selectinload()`"
    verdict = Verdict("12.q1", "The feed, one page", "incorrect", lazy, [
        RuleResult("first page · no lazy loads", False, lazy),
        RuleResult("a page of 200 · no lazy loads", False, lazy.replace("first page", "a page of 200")),
        RuleResult("a page of 200 · the items", True),
    ])
    card = Scorecard("Repo", [verdict])
    text_, html = str(card), card._repr_html_()
    assert text_.count("was loaded lazily") == 1, text_  # said on the first line, not again
    assert "`" not in text_ and "Post.author was loaded lazily" in text_
    assert "`" not in html and "<code>Post.author</code>" in html


async def test_an_error_that_is_not_about_the_quote_does_not_blame_the_quote(db):
    """12.q1: a NameError in feed is reported as such, not as "a quote broke the SQL text"."""

    class Typo(lesson12.FeedRepository):
        @staticmethod
        async def feed(session, *, limit, cursor=None, tag=None):
            items, next_cursor = await lesson12.FeedRepository.feed(session, limit=limit, cursor=cursor, tag=tag)
            return itmes, next_cursor  # noqa: F821 - the learner's typo

    verdict = await lesson12.q1.evaluate(Typo, db=db)
    assert "NameError" in str(verdict), str(verdict)
    assert "broke the sql text" not in str(verdict).lower() and "quote in the" not in str(verdict).lower(), str(verdict)
