"""Lesson 12 · Capstone: a small async data-access layer for a feed, judged requirement by requirement.

The answer is ONE object (a class with ``@staticmethod`` async functions, an instance, a
``SimpleNamespace``, a module) holding:

    async def feed(session, *, limit, cursor=None, tag=None) -> (items, next_cursor)
    async def create_post(session, *, author_id, title, body, tag_names, published_at) -> post id

Every exercise runs those functions on a scratch database the notebook never showed: a
smaller seed, posts whose ``published_at`` ties across page boundaries, and the unique
index on ``(author_id, title)`` the lesson adds. Each requirement is a scenario (pages
walked with the cursor while a new post arrives, a write that the database refuses half-way,
a duplicate, a duplicate that appears between a check and an insert) scored as its own
group of rules. References are raw SQL, independent of the reference answer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, event, func, insert, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import strategies
from sqlalchemy.util import await_only

from ..engines import HIDDEN
from ..lab.errorkinds import constraint_kind, error_code, is_transient
from ..recorder import SqlLog, record
from ..schema import Comment, Post, Tag, User, post_tags
from .core import (
    FUNCTIONS,
    Counterexample,
    Exercise,
    ExerciseFailed,
    Requirement,
    _AnswerRaised,
    _is_lazy_load,
    _LazyLoadCounter,
    _note_lazy_load,
    _usable,
    call_answer,
    strict,
)
from .lesson03 import _offset_skipped
from .rules import Attempt, BoundParameters, NoLazyLoads, Probe, SessionUsable, StatementBudget
from .verdict import RuleResult, Verdict

SCALE = 0.3  # the checker's data set: 1,500 posts (the notebook has 5,000)
TAG = "async"  # the tag the checker filters by
QUOTED_TAG = "it's-new"  # a tag nobody uses, with a quote: pasted into SQL text it breaks the statement
UNIQUE_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS uq_posts_author_title ON posts (author_id, title)"
FIELDS = ("id", "title", "author", "published_at", "tags", "comment_count")
PAGE_BUDGET = 3
CREATE_BUDGET = 6
WHEN = datetime(2026, 1, 1, 9, 30)  # published_at of the posts the checker creates (after every seeded one)


@dataclass
class CapstoneExercise(Exercise):
    """An Exercise that remembers its last verdict, so the scorecard need not run it again."""

    _last: tuple[Any, Verdict] | None = field(default=None, repr=False)

    async def evaluate(self, answer: Any = ..., *, db: Any = None) -> Verdict:
        verdict = await super().evaluate(answer, db=db)
        self._last = (answer, verdict)
        return verdict

    def last_verdict(self, answer: Any) -> Verdict | None:
        """The verdict of the last evaluation, if it judged this very object."""
        return self._last[1] if self._last is not None and self._last[0] is answer else None


class AlreadyExists(Exception):
    """The domain error ``create_post`` raises when the author already has a post with that title."""


# =========================================================================== the reference design


class FeedRepository:
    """Two statements per feed page whatever its size; one savepoint per new post."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        comment_count = select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()
        stmt = (
            select(Post.id, Post.title, Post.published_at, User.username, comment_count.label("comment_count"))
            .join(Post.author)
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
        names = defaultdict(list)
        if page:
            pairs = await session.execute(
                select(post_tags.c.post_id, Tag.name)
                .join(Tag, Tag.id == post_tags.c.tag_id)
                .where(post_tags.c.post_id.in_([row.id for row in page]))
            )
            for post_id, name in pairs:
                names[post_id].append(name)
        items = [
            {
                "id": row.id,
                "title": row.title,
                "author": row.username,
                "published_at": row.published_at,
                "tags": sorted(names[row.id]),
                "comment_count": row.comment_count,
            }
            for row in page
        ]
        next_cursor = (page[-1].published_at, page[-1].id) if len(rows) > limit else None
        return items, next_cursor

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        known = {}
        if names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))}
        post = Post(
            author_id=author_id,
            title=title,
            body=body,
            status="published",
            created_at=published_at,
            published_at=published_at,
        )
        try:
            async with session.begin_nested():  # a SAVEPOINT: a failure undoes this post only
                session.add(post)  # in the session first, then linked to tags that already are
                post.tags = [known.get(name) or Tag(name=name) for name in names]
        except IntegrityError as exc:
            if constraint_kind(exc) != "unique":  # a foreign key, a NOT NULL...: not a duplicate
                raise
            raise AlreadyExists(f"author {author_id} already has a post titled {title!r}") from exc
        return post.id


# =========================================================================== the checker's data set


async def _feed_order(conn: Any, tag: str | None = None) -> list[tuple[datetime, int]]:
    """(published_at, id) of the feed's posts, newest first (sorted here, not by the database)."""
    sql = "SELECT p.published_at, p.id FROM posts p WHERE p.status = 'published'"
    params: dict[str, Any] = {}
    if tag is not None:
        sql += (
            " AND EXISTS (SELECT 1 FROM post_tags pt JOIN tags t ON t.id = pt.tag_id"
            " WHERE pt.post_id = p.id AND t.name = :tag)"
        )
        params["tag"] = tag
    rows = (await conn.execute(text(sql).columns(published_at=DateTime, id=Integer), params)).all()
    return sorted(((r.published_at, r.id) for r in rows), reverse=True)


async def _tie(conn: Any, order: list[tuple[datetime, int]], first: int, last: int) -> None:
    """Give the posts at ranks first..last (0-based) the published_at of the one at ``first``."""
    at = order[first][0]
    ids = [pk for _, pk in order[first : last + 1]]
    posts = Post.__table__
    await conn.execute(posts.update().where(posts.c.id.in_(ids)).values(published_at=at))


async def prepare(scratch: Any) -> None:
    """The data set the learner has not seen: ties across page boundaries, and the unique index."""
    async with scratch.engine.begin() as conn:
        await conn.execute(text(UNIQUE_INDEX))
        # six posts share one published_at across the boundary of 50-post pages ...
        await _tie(conn, await _feed_order(conn), 47, 52)
        # ... and six tagged posts across the boundary of 10-post pages of the tag's feed
        await _tie(conn, await _feed_order(conn, TAG), 7, 12)


async def reference_feed(conn: Any, tag: str | None = None) -> list[tuple[Any, ...]]:
    """The whole feed in raw SQL: (id, title, author, published_at, tags, comment_count), newest first."""
    sql = (
        "SELECT p.id, p.title, u.username, p.published_at,"
        " (SELECT count(*) FROM comments c WHERE c.post_id = p.id) AS comment_count"
        " FROM posts p JOIN users u ON u.id = p.author_id WHERE p.status = 'published'"
    )
    params: dict[str, Any] = {}
    if tag is not None:
        sql += (
            " AND EXISTS (SELECT 1 FROM post_tags pt JOIN tags t ON t.id = pt.tag_id"
            " WHERE pt.post_id = p.id AND t.name = :tag)"
        )
        params["tag"] = tag
    rows = (
        await conn.execute(
            text(sql).columns(id=Integer, title=String, username=String, published_at=DateTime, comment_count=Integer),
            params,
        )
    ).all()
    names: dict[int, list[str]] = defaultdict(list)
    for post_id, name in await conn.execute(
        text("SELECT pt.post_id, t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id")
    ):
        names[post_id].append(name)
    items = [(r.id, r.title, r.username, r.published_at, tuple(sorted(names[r.id])), r.comment_count) for r in rows]
    return sorted(items, key=lambda item: (item[3], item[0]), reverse=True)


# =========================================================================== reading the answer


class _Shape(Exception):
    """What the answer returned does not have the agreed shape."""


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise _Shape(f"each feed item needs the key {name!r}; yours has {sorted(map(str, item))}")
        return item[name]
    mapping = getattr(item, "_mapping", None)  # a Row
    if mapping is not None:
        if name not in mapping:
            raise _Shape(f"each feed item needs the column {name!r}; yours has {list(mapping.keys())}")
        return mapping[name]
    if not hasattr(item, name):
        raise _Shape(f"each feed item needs {name!r}; a {type(item).__name__} has no such attribute")
    return getattr(item, name)


def _item(item: Any) -> tuple[Any, ...]:
    values = {name: _field(item, name) for name in FIELDS}
    author, tags = values["author"], values["tags"]
    if not isinstance(author, str):
        raise _Shape(f"author should be the author's username (a str); yours is a {type(author).__name__}")
    if isinstance(tags, str) or not hasattr(tags, "__iter__"):
        raise _Shape(f"tags should be a list of tag names; yours is a {type(tags).__name__}")
    tags = list(tags)
    if any(not isinstance(t, str) for t in tags):
        kind = next(type(t).__name__ for t in tags if not isinstance(t, str))
        raise _Shape(f"tags should be tag names (str); yours holds {kind} objects")
    return (
        values["id"], values["title"], author, values["published_at"], tuple(tags), values["comment_count"],
    )


def _page(returned: Any) -> tuple[list[tuple[Any, ...]], Any]:
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        raise _Shape(f"feed should return a pair (items, next_cursor); yours returned {type(returned).__name__}")
    items, next_cursor = returned
    return [_item(i) for i in list(items)], next_cursor


@asynccontextmanager
async def _session(scratch: Any, attempt: Attempt, *, begin: bool = False):
    """A session on the scratch database, watched for lazy loads (``begin``: the caller owns a transaction)."""
    async with scratch.session() as session:
        counter = _LazyLoadCounter(session)

        def name_it(orm_state: Any) -> None:  # which relationship loaded lazily ("Post.tags")
            if not orm_state.is_select or orm_state.lazy_loaded_from is None:
                return
            path = orm_state.loader_strategy_path
            if path is not None and path.path:
                attempt.extra.setdefault("lazy_attribute", str(path.path[-1]))

        event.listen(session.sync_session, "do_orm_execute", name_it)
        if begin:
            await session.begin()
        try:
            yield session
        finally:
            attempt.lazy_loads += counter.count


_LAZY_LOADER = getattr(strategies, "_LazyLoader", None) or strategies.LazyLoader  # renamed in 2.1


def _lazy_attribute(exc: BaseException) -> str | None:
    """The relationship a lazy load fired for ("Post.author"), read from the LazyLoader in the traceback."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            loader = tb.tb_frame.f_locals.get("self")
            if isinstance(loader, _LAZY_LOADER) and getattr(loader, "parent_property", None) is not None:
                return str(loader.parent_property)
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    return None


def _note_lazy(attempt: Attempt, exc: BaseException) -> None:
    """Remember which relationship loaded lazily, before the frames that tell are released."""
    attempt.extra.setdefault("lazy_attribute", _lazy_attribute(exc))


async def _feed(answer: Any, session: AsyncSession, attempt: Attempt, **call: Any) -> Any:
    try:
        return await call_answer(answer.feed, session, **call)
    except _AnswerRaised as raised:
        if _is_lazy_load(raised.error):
            _note_lazy(attempt, raised.error)
        raise


_READ_LAZILY = (
    "{where} was loaded lazily, one query per item (in async code it raises MissingGreenlet): load it with "
    "the page: join it and select the column you need, or load it up front with joinedload({where}) or "
    "selectinload({where})"
)
_WRITTEN_LAZILY = (
    "{where} was loaded lazily: assigning a collection of an object already flushed (a SELECT after "
    "session.add() autoflushes it) first loads the old collection, a query of its own (in async code "
    "MissingGreenlet). Look the tags up before you add the post, then set post.tags"
)


@dataclass
class NoLazyLoadsNamed(NoLazyLoads):
    """No lazy loads; a failure names the relationship that loaded lazily, and what to do about it."""

    advice: str = _READ_LAZILY

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        where = attempt.extra.get("lazy_attribute")
        if not result.passed and where:
            result.message = self.advice.format(where=where)
        return result


def _shape_or_lazy(attempt: Attempt, exc: BaseException) -> None:
    """Reading the answer's items failed: a lazy load (counted) or a wrong shape (reported)."""
    if _is_lazy_load(exc):
        _note_lazy(attempt, exc)
        _note_lazy_load(attempt, exc)
    elif isinstance(exc, _Shape):
        attempt.extra["shape"] = str(exc)
    else:
        raise exc


def _shape_rule(attempt: Attempt) -> str | None:
    return attempt.extra.get("shape")


SHAPE = Probe(_shape_rule, name="the agreed shape")


# =========================================================================== 12.q1 · one page


def _page_scenario(*, limit: int, tag: str | None = None):
    async def scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
        async with scratch.engine.connect() as conn:
            whole = await reference_feed(conn, tag)
            attempt.extra["archived"] = set(
                (await conn.execute(text("SELECT id FROM posts WHERE status <> 'published'"))).scalars()
            )
        attempt.expected = whole[:limit]
        attempt.extra["more"] = len(whole) > limit
        attempt.extra["limit"], attempt.extra["tag"] = limit, tag
        async with _session(scratch, attempt) as session:
            with record(show=False) as log:
                attempt.log = log
                returned = await _feed(answer, session, attempt, limit=limit, tag=tag)
            try:
                attempt.value, attempt.extra["next"] = _page(returned)
            except Exception as exc:
                _shape_or_lazy(attempt, exc)

    return scenario


def _items_rule(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if got is None:
        return "not compared: " + (attempt.extra.get("shape") or "feed stopped before returning its items")
    limit, tag = attempt.extra.get("limit"), attempt.extra.get("tag")
    got_ids, want_ids = [g[0] for g in got], [w[0] for w in want]
    if got_ids != want_ids:
        extra = [i for i in got_ids if i not in want_ids]
        missing = [i for i in want_ids if i not in got_ids]
        if len(got_ids) > (limit or 0):
            return f"{len(got_ids)} items on a page of limit={limit}: return at most limit items"
        twice = [i for i in dict.fromkeys(got_ids) if got_ids.count(i) > 1]
        if twice:
            return (
                f"post {twice[0]} appears {got_ids.count(twice[0])} times on the page: a join to the tags "
                "gives a post one row per tag. Select one row per post, and fetch the tag names in a second "
                "statement (IN the page's ids)"
            )
        if not extra and got_ids == want_ids[: len(got_ids)]:
            return (
                f"{len(got_ids)} posts on a page of limit={limit}, though {len(want_ids)} belong on it: LIMIT "
                "counts rows, not posts, and a join to the tags gives a post one row per tag. Select one row "
                "per post, and fetch the tag names in a second statement (IN the page's ids)"
            )
        if extra and set(extra) <= attempt.extra.get("archived", set()):
            return (
                f"post(s) {extra[:3]} are not published (status {'archived'!r} or draft): the feed shows "
                "status == 'published' only; published_at IS NOT NULL is not the same thing"
            )
        if not extra and not missing:
            return "the right posts in the wrong order: newest first, Post.published_at.desc() then Post.id.desc()"
        where = f" tagged {tag!r}" if tag else ""
        parts = []
        if extra:
            parts.append(f"post(s) {extra[:3]} should not be on this page")
        if missing:
            parts.append(f"post(s) {missing[:3]} are missing")
        return (
            f"{'; '.join(parts)}. The first page of {limit} holds the newest published posts{where} "
            f"(ids {want_ids[:4]}{' ...' if len(want_ids) > 4 else ''})"
        )
    for g, w in zip(got, want, strict=True):
        for index, name in enumerate(FIELDS):
            if g[index] == w[index]:
                continue
            message = f"post {w[0]}: {name} is {g[index]!r}, should be {w[index]!r}"
            if name == "comment_count" and isinstance(g[index], int) and g[index] > w[index]:
                message += (
                    " (too high: a join to another table multiplies the comment rows; count in a "
                    "correlated subquery or a grouped subquery of comments alone)"
                )
            elif name == "tags" and sorted(g[index]) == list(w[index]):
                message += " (sort the tag names)"
            elif name == "tags":
                message += " (every tag of the post, not only the one filtered by)" if tag else ""
            return message
    return None


def _next_cursor_rule(attempt: Attempt) -> str | None:
    if attempt.value is None or "next" not in attempt.extra:
        return None
    more, nxt = attempt.extra["more"], attempt.extra["next"]
    if more and nxt is None:
        return "more posts follow this page, so next_cursor should not be None"
    if not more and nxt is not None:
        return (
            f"no post follows this page, so next_cursor should be None, not {nxt!r} "
            "(fetch limit + 1 rows to find out)"
        )
    return None


ITEMS = Probe(_items_rule, name="the items")
NEXT = Probe(_next_cursor_rule, name="the next cursor")


def _quoted_tag_scenario():
    async def scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
        async with _session(scratch, attempt) as session:
            with record(show=False) as log:
                attempt.log = log
                try:
                    returned = await _feed(answer, session, attempt, limit=5, tag=QUOTED_TAG)
                except _AnswerRaised as raised:
                    if _is_lazy_load(raised.error):
                        raise
                    attempt.extra["raised"] = raised.explain()
                    return
            try:
                attempt.value, attempt.extra["next"] = _page(returned)
            except Exception as exc:
                _shape_or_lazy(attempt, exc)

    return scenario


def _quoted_tag_rule(attempt: Attempt) -> str | None:
    if "raised" in attempt.extra:
        return (
            f"with tag={QUOTED_TAG!r} {attempt.extra['raised'][0].lower()}{attempt.extra['raised'][1:]}. "
            "A quote in the value broke the SQL text: the value was pasted into it. Compare "
            "Tag.name == tag and SQLAlchemy sends it as a bound parameter"
        )
    if attempt.value is None:
        return None
    if attempt.value or attempt.extra.get("next") is not None:
        return f"no post has the tag {QUOTED_TAG!r}: expected ([], None), got {len(attempt.value)} item(s)"
    return None


q1 = CapstoneExercise(
    id="12.q1",
    title="The feed, one page",
    kind=FUNCTIONS,
    functions=("feed",),
    solution_answer=FeedRepository,
    prepare=prepare,
    scratch_scale=SCALE,
    requirements=[
        Requirement(
            "first page",
            _page_scenario(limit=5),
            [SHAPE, ITEMS, NEXT, StatementBudget(PAGE_BUDGET), NoLazyLoadsNamed()],
        ),
        Requirement(
            f"a tag's first page ({TAG!r})",
            _page_scenario(limit=4, tag=TAG),
            [SHAPE, ITEMS, NEXT, StatementBudget(PAGE_BUDGET), BoundParameters([TAG]), NoLazyLoadsNamed()],
        ),
        Requirement(
            "a page of 200",
            _page_scenario(limit=200),
            [SHAPE, ITEMS, StatementBudget(PAGE_BUDGET), NoLazyLoadsNamed()],
        ),
        Requirement(
            "a tag with a quote in its name",
            _quoted_tag_scenario(),
            [SHAPE, Probe(_quoted_tag_rule, name="an empty page, safely")],
        ),
    ],
    hints=[
        "One statement selects the page's columns: Post.id, Post.title, Post.published_at, User.username "
        "(join Post.author) and the comment count as a correlated scalar subquery. A second statement "
        "fetches (post_id, tag name) for the page's ids with one IN. Two statements, whatever the limit.",
        "Filter with .where(Post.status == 'published'), and for a tag .where(Post.tags.any(Tag.name == tag)): "
        "EXISTS does not multiply rows the way a join can. Order by Post.published_at.desc(), Post.id.desc().",
        "Fetch limit + 1 rows: page = rows[:limit]; next_cursor = (page[-1].published_at, page[-1].id) "
        "if len(rows) > limit else None. Build each item as a dict with the six keys; sort the tag names.",
    ],
    why=(
        "A page costs the same two statements at 5 or 200 items, no lazy load can fire, and the tag "
        "travels as a bound parameter."
    ),
)


# =========================================================================== 12.q2 · the cursor walk


async def _publish_newcomer(scratch: Any, title: str) -> None:
    """A post published while the reader pages: newer than everything, so it belongs before page 1."""
    async with scratch.engine.begin() as conn:
        newest = (await _feed_order(conn))[0][0]
        at = newest + timedelta(minutes=5)
        await conn.execute(
            Post.__table__.insert().values(
                author_id=1, title=title, body="fresh", status="published", created_at=at, published_at=at,
            )
        )


async def _remove(scratch: Any, title: str) -> None:
    async with scratch.engine.begin() as conn:
        await conn.execute(Post.__table__.delete().where(Post.__table__.c.title == title))


def _walk_scenario(*, limit: int, tag: str | None = None, newcomer: bool = False):
    async def scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
        async with scratch.engine.connect() as conn:
            order = await _feed_order(conn, tag)
            everyone = len(await _feed_order(conn)) if tag is not None else len(order)
        attempt.expected = [pk for _, pk in order]
        ties: dict[datetime, set[int]] = defaultdict(set)
        for at, pk in order:
            ties[at].add(pk)
        attempt.extra["tied"] = set().union(*(ids for ids in ties.values() if len(ids) > 1))
        attempt.extra["limit"] = limit
        pages: list[list[Any]] = []
        worst = SqlLog()
        everything = SqlLog()
        title = f"Capstone newcomer {limit}"
        cursor = None
        try:
            for number in range(everyone // limit + 3):  # enough even for a filter applied after LIMIT
                async with _session(scratch, attempt) as session:  # one request, one session
                    with record(show=False) as log:
                        returned = await _feed(answer, session, attempt, limit=limit, cursor=cursor, tag=tag)
                    try:
                        items, cursor = _page(returned)
                    except Exception as exc:
                        _shape_or_lazy(attempt, exc)
                        return
                pages.append([item[0] for item in items])
                everything.statements += log.statements
                if len(log.queries) > len(worst.queries):
                    worst = log
                if number == 0 and newcomer:
                    await _publish_newcomer(scratch, title)
                if cursor is None:
                    break
            else:
                attempt.extra["endless"] = True
        finally:
            if newcomer:
                await _remove(scratch, title)
            attempt.log = worst
            attempt.extra["pages"] = pages
            attempt.extra["all_sql"] = everything
            attempt.value = [pk for page in pages for pk in page]

    return scenario


def _uses_offset(attempt: Attempt) -> bool:
    """An OFFSET that skips rows (SQLite writes ``OFFSET ?`` bound to 0 for a bare LIMIT)."""
    return any(_offset_skipped(s) for s in attempt.extra.get("all_sql", ()))


def _twice_rule(attempt: Attempt) -> str | None:
    seen: dict[Any, int] = {}
    for number, page in enumerate(attempt.extra.get("pages", []), 1):
        for pk in page:
            if pk in seen:
                first = seen[pk]
                if _uses_offset(attempt):
                    return (
                        f"post {pk} came back on page {number} after page {first}: a post published while "
                        "the reader paged pushed every row down one place, and OFFSET counted from the top "
                        "again. Continue after the cursor's (published_at, id) instead of skipping rows"
                    )
                if pk in attempt.extra.get("tied", set()):
                    return (
                        f"post {pk} came back on page {number} after page {first}: it shares its "
                        "published_at with other posts, and the cursor compared published_at alone (or <=). "
                        "Compare the pair strictly: tuple_(Post.published_at, Post.id) < tuple_(*cursor)"
                    )
                return f"post {pk} came back on page {number} after page {first}"
            seen[pk] = number
    return None


def _skipped_rule(attempt: Attempt) -> str | None:
    if "pages" not in attempt.extra or attempt.extra.get("endless"):
        return None
    got = set(attempt.value or [])
    missing = [pk for pk in attempt.expected if pk not in got]
    if not missing:
        return None
    tied = [pk for pk in missing if pk in attempt.extra.get("tied", set())]
    if tied:
        return (
            f"post(s) {tied[:3]} were skipped: they share a published_at with the last post of a page, "
            "and the cursor compared published_at alone. Compare (published_at, id) as a pair"
        )
    return f"{len(missing)} post(s) never showed up on any page (e.g. {missing[:3]})"


def _order_rule(attempt: Attempt) -> str | None:
    got = list(dict.fromkeys(attempt.value or []))
    want = [pk for pk in attempt.expected if pk in set(got)]
    if [pk for pk in got if pk in set(want)] != want:
        return "the pages together are not newest first: order by published_at desc, then id desc"
    return None


def _ends_rule(attempt: Attempt) -> str | None:
    pages = attempt.extra.get("pages")
    if pages is None:
        return None
    if attempt.extra.get("endless"):
        return (
            f"after {len(pages)} pages next_cursor was still not None: the cursor does not move past "
            "the page it came from"
        )
    if len(pages) > 1 and not pages[-1]:
        return (
            "the walk ended with an empty page: next_cursor should be None on the page that holds the "
            "last post (fetch limit + 1 rows to know whether another follows)"
        )
    return None


def _full_pages_rule(attempt: Attempt) -> str | None:
    pages, limit = attempt.extra.get("pages"), attempt.extra.get("limit")
    if not pages:
        return None
    last = max((n for n, page in enumerate(pages, 1) if page), default=0)  # an empty tail is _ends_rule's
    for number, page in enumerate(pages, 1):
        if len(page) > limit:
            return f"page {number} holds {len(page)} posts, more than limit={limit}"
        if number < last and len(page) < limit:
            return (
                f"page {number} holds {len(page)} posts, not {limit}, and more followed: filter in SQL, "
                "before LIMIT, not in Python afterwards"
            )
    return None


WALK_RULES = [
    SHAPE,
    Probe(_twice_rule, name="no post twice"),
    Probe(_skipped_rule, name="no post skipped"),
    Probe(_order_rule, name="newest first"),
    Probe(_full_pages_rule, name="full pages"),
    Probe(_ends_rule, name="the walk ends"),
    StatementBudget(PAGE_BUDGET),
    NoLazyLoadsNamed(),
]

q2 = CapstoneExercise(
    id="12.q2",
    title="The feed, page after page",
    kind=FUNCTIONS,
    functions=("feed",),
    solution_answer=FeedRepository,
    prepare=prepare,
    scratch_scale=SCALE,
    requirements=[
        Requirement("every post once, while new posts arrive (50 a page)", _walk_scenario(limit=50, newcomer=True),
                    WALK_RULES),
        Requirement(f"a tag's feed, 10 a page ({TAG!r})", _walk_scenario(limit=10, tag=TAG), WALK_RULES),
    ],
    hints=[
        "The cursor is the last item's (published_at, id). Pass it back, and the next page is the posts "
        "strictly after it in the feed's order.",
        "Several posts can share a published_at: compare the pair, tuple_(Post.published_at, Post.id) < "
        "tuple_(*cursor), with ORDER BY published_at DESC, id DESC. Not published_at alone, not <=.",
        "No OFFSET: a post published between two requests shifts every row, and an OFFSET page repeats one. "
        "Fetch limit + 1 rows; next_cursor is None when the extra row did not come back.",
    ],
    why=(
        "A keyset on a unique (published_at, id) pair gives every post exactly once, however timestamps tie "
        "and whatever gets published between two requests."
    ),
)


# =========================================================================== 12.q3 · create_post


@contextmanager
def _watch_commits(scratch: Any, attempt: Attempt):
    """Count real COMMITs on the scratch engine while the answer runs (a RELEASE SAVEPOINT is not one)."""
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(scratch.engine.sync_engine, "commit", on_commit)
    try:
        yield
    finally:
        event.remove(scratch.engine.sync_engine, "commit", on_commit)
        attempt.extra["commits"] = attempt.extra.get("commits", 0) + len(commits)


def _no_commit_rule(attempt: Attempt) -> str | None:
    n = attempt.extra.get("commits", 0)
    if n:
        return (
            f"create_post committed ({n} COMMIT{'s' if n > 1 else ''}): the caller owns the transaction "
            "and commits once, when the whole request succeeded. Inside, flush() (or a savepoint) gives "
            "you the ids; a commit in the middle makes a later failure leave half a post behind"
        )
    return None


NO_COMMIT = Probe(_no_commit_rule, name="no commit inside")
NO_LAZY_WRITE = NoLazyLoadsNamed(advice=_WRITTEN_LAZILY)


async def _create(answer: Any, session: AsyncSession, scratch: Any, attempt: Attempt, **call: Any) -> Any:
    """Call create_post; its SQL joins the attempt's log, and this call's own log is kept by title."""
    with _watch_commits(scratch, attempt), record(show=False) as log:
        try:
            return await call_answer(answer.create_post, session, **call)
        finally:
            attempt.log.statements += log.statements
            attempt.extra.setdefault("calls", []).append(log)


async def _rows(scratch: Any, sql: str, **params: Any) -> list[Any]:
    async with scratch.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


EXISTING = ["testing", "python", "orm", "sql", TAG]
NEW_TAG = "capstone-fresh"
DOOMED_TAG = "capstone-doomed"


def _error_name(error: BaseException) -> str:
    return type(error).__name__


async def _create_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    names = [EXISTING[0], NEW_TAG, *EXISTING[1:]]
    title = "Capstone: a post with six tags"
    attempt.extra["tags_before"] = (await _rows(scratch, "SELECT count(*) FROM tags"))[0][0]
    attempt.expected = sorted(names)
    async with _session(scratch, attempt, begin=True) as session:
        try:
            returned = await _create(
                answer, session, scratch, attempt,
                author_id=2, title=title, body="Six tags, one new.", tag_names=names, published_at=WHEN,
            )
        except _AnswerRaised as raised:
            if _is_lazy_load(raised.error):
                raise
            attempt.extra["raised"] = raised.explain()
            return
        await session.commit()
    rows = await _rows(
        scratch,
        "SELECT id, body, status, published_at FROM posts WHERE author_id = 2 AND title = :title",
        title=title,
    )
    attempt.extra["rows"] = rows
    attempt.extra["returned"] = returned
    if len(rows) == 1:
        tags = await _rows(
            scratch,
            "SELECT t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = :id",
            id=rows[0][0],
        )
        attempt.value = sorted(t[0] for t in tags)
    attempt.extra["tags_after"] = (await _rows(scratch, "SELECT count(*) FROM tags"))[0][0]


def _created_rule(attempt: Attempt) -> str | None:
    if "raised" in attempt.extra:
        return (
            f"creating a post with a new title failed: {attempt.extra['raised']}. If that is about tags: "
            "reuse the tags that exist (one SELECT ... WHERE name IN (...)) and create only the missing ones"
        )
    rows = attempt.extra.get("rows")
    if rows is None:
        return None
    if len(rows) != 1:
        return f"after the caller committed, {len(rows)} posts carry the new title (expected exactly 1)"
    pk, body, status, published_at = rows[0]
    returned = attempt.extra.get("returned")
    returned = getattr(returned, "id", returned)
    if returned != pk:
        return f"create_post should return the new post's id ({pk}); it returned {returned!r}"
    if status != "published":
        return f"the new post's status is {status!r}: create_post publishes it (status 'published')"
    if str(published_at)[:16] != str(WHEN)[:16]:
        return f"the new post's published_at is {published_at!r}, not the published_at passed in ({WHEN})"
    return None


def _tags_rule(attempt: Attempt) -> str | None:
    if attempt.value is None:
        return None
    if attempt.value != attempt.expected:
        missing = sorted(set(attempt.expected) - set(attempt.value))
        return f"the post's tags are {attempt.value}; missing {missing}"
    grew = attempt.extra["tags_after"] - attempt.extra["tags_before"]
    if grew != 1:
        return f"the tags table grew by {grew} rows; only {NEW_TAG!r} was new"
    return None


def _create_budget_rule(attempt: Attempt) -> str | None:
    n = len(attempt.log.queries)
    if n > CREATE_BUDGET:
        selects = attempt.log.count("SELECT")
        return (
            f"{n} statements for one post with six tag names ({selects} SELECTs): look the tags up with one "
            f"IN query, not one query per name (an N+1 hidden in a helper). {CREATE_BUDGET} is enough"
        )
    return None


def _arm_failure(scratch: Any, fired: list[int]):
    """Make the database refuse the INSERT INTO post_tags: it names a table that does not exist."""

    def inject(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool):
        if re.match(r'\s*INSERT\s+INTO\s+"?post_tags"?[\s(]', statement, re.I):
            fired.append(1)
            statement = re.sub(r'post_tags', "post_tags_injected_failure", statement, count=1)
        return statement, parameters

    event.listen(scratch.engine.sync_engine, "before_cursor_execute", inject, retval=True)
    return inject


async def _failure_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    title = "Capstone: a post the database refuses half-way"
    fired: list[int] = []
    async with _session(scratch, attempt, begin=True) as session:
        inject = _arm_failure(scratch, fired)
        try:
            await _create(
                answer, session, scratch, attempt,
                author_id=3, title=title, body="Doomed.", tag_names=["python", DOOMED_TAG], published_at=WHEN,
            )
            attempt.extra["outcome"] = "returned"
        except _AnswerRaised as raised:
            if _is_lazy_load(raised.error):
                raise
            attempt.extra["outcome"] = raised.error
        finally:
            event.remove(scratch.engine.sync_engine, "before_cursor_execute", inject)
        attempt.extra["fired"] = bool(fired)
        await session.rollback()  # the caller saw an error: it rolls back
    attempt.extra["left_posts"] = len(await _rows(scratch, "SELECT id FROM posts WHERE title = :t", t=title))
    attempt.extra["left_tags"] = len(await _rows(scratch, "SELECT id FROM tags WHERE name = :n", n=DOOMED_TAG))


def _reaches_caller_rule(attempt: Attempt) -> str | None:
    if "outcome" not in attempt.extra:
        return None
    if not attempt.extra.get("fired"):
        return (
            "the checker found no INSERT INTO post_tags in create_post's SQL, so it could not fail it "
            "half-way: does create_post write the post's tags?"
        )
    outcome = attempt.extra["outcome"]
    if outcome == "returned":
        return (
            "the database refused the INSERT INTO post_tags, and create_post returned normally: let the "
            "error reach the caller (re-raise it), so the caller rolls back and the client hears about it"
        )
    if isinstance(outcome, AlreadyExists) or _error_name(outcome) == "AlreadyExists":
        return (
            "the database refused a write for another reason, and create_post reported AlreadyExists: "
            "catch only an IntegrityError (the duplicate) and let every other error through"
        )
    return None


def _nothing_left_rule(attempt: Attempt) -> str | None:
    if "left_posts" not in attempt.extra or not attempt.extra.get("fired"):
        return None
    if attempt.extra["left_posts"] or attempt.extra["left_tags"]:
        what = []
        if attempt.extra["left_posts"]:
            what.append("the post")
        if attempt.extra["left_tags"]:
            what.append(f"the new tag {DOOMED_TAG!r}")
        return (
            f"{' and '.join(what)} survived although writing the tags failed and the caller rolled back: "
            "something committed in the middle. All or nothing: one transaction, owned by the caller"
        )
    return None


q3 = CapstoneExercise(
    id="12.q3",
    title="Create a post with its tags, all or nothing",
    kind=FUNCTIONS,
    functions=("create_post",),
    solution_answer=FeedRepository,
    prepare=prepare,
    scratch_scale=SCALE,
    requirements=[
        Requirement(
            "a post with five known tags and one new",
            _create_scenario,
            [Probe(_created_rule, name="the post"), Probe(_tags_rule, name="its tags"), NO_COMMIT,
             Probe(_create_budget_rule, name=f"statement budget ({CREATE_BUDGET})"), NO_LAZY_WRITE],
        ),
        Requirement(
            "the database refuses the tags half-way",
            _failure_scenario,
            [Probe(_reaches_caller_rule, name="the error reaches the caller"),
             Probe(_nothing_left_rule, name="nothing left behind"), NO_COMMIT, NO_LAZY_WRITE],
        ),
    ],
    hints=[
        "Look the tags up in one statement: select(Tag).where(Tag.name.in_(names)). Add the Post to the "
        "session, then set post.tags = [known.get(n) or Tag(name=n) for n in names]: the unit of work inserts "
        "the new tags, the post and the post_tags rows.",
        "Do not commit: the caller owns the transaction (async with session.begin(): ...). To get the new "
        "id, flush, for example by leaving an async with session.begin_nested(): block. Return post.id.",
        "If anything fails, let the error out: the caller's rollback then removes the post, the new tags "
        "and the links together. Catch IntegrityError only where you mean it (the next exercise).",
    ],
    why=(
        "The caller owns one transaction: a failure anywhere leaves nothing behind, and the tags are looked "
        "up in one statement whatever their number."
    ),
)


# =========================================================================== 12.q4 · duplicates


def _is_already_exists(error: BaseException) -> bool:
    return isinstance(error, AlreadyExists) or _error_name(error) == "AlreadyExists"


async def _outcome(call: Awaitable[Any]) -> Any:
    """What one create_post call did: "returned", or the exception it raised (a lazy load goes on up)."""
    try:
        await call
        return "returned"
    except _AnswerRaised as raised:
        if _is_lazy_load(raised.error):
            raise
        return raised.error


async def _duplicate_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    title = "Capstone: the same title twice"
    dup_tag = "capstone-duplicate-only"
    async with _session(scratch, attempt, begin=True) as session:
        call = dict(body="First.", published_at=WHEN)
        first = await _outcome(
            _create(answer, session, scratch, attempt, author_id=4, title=title, tag_names=["python"], **call)
        )
        if first != "returned":
            attempt.extra["first_failed"] = _AnswerRaised(first).explain()
            return
        attempt.extra["duplicate"] = await _outcome(
            _create(answer, session, scratch, attempt, author_id=4, title=title, tag_names=["sql", dup_tag], **call)
        )
        attempt.extra["duplicate_log"] = attempt.extra["calls"][-1]
        attempt.session_usable = await _usable(session)
        if attempt.session_usable:
            other = await _outcome(
                _create(answer, session, scratch, attempt, author_id=5, title=title, tag_names=[], **call)
            )
            if other != "returned":
                attempt.extra["other_author"] = _AnswerRaised(other).explain()
            try:
                await session.commit()
            except Exception as exc:  # the caller's commit failed: the transaction was already broken
                attempt.extra["commit_failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
    attempt.extra["author_posts"] = len(
        await _rows(scratch, "SELECT id FROM posts WHERE author_id = 4 AND title = :t", t=title)
    )
    attempt.extra["other_posts"] = len(
        await _rows(scratch, "SELECT id FROM posts WHERE author_id = 5 AND title = :t", t=title)
    )
    attempt.extra["dup_tags"] = len(await _rows(scratch, "SELECT id FROM tags WHERE name = :n", n=dup_tag))


def _caused_by(error: BaseException) -> BaseException | None:
    """The exception an AlreadyExists was raised from (``raise ... from exc``, or while handling it)."""
    return error.__cause__ or error.__context__


_BLANKET = (
    "every IntegrityError became 'already exists' (a blanket mapping, the anti-pattern of lesson 10). "
    "Tell the constraints apart by code: only a unique violation is a duplicate (constraint_kind(exc) "
    "== 'unique'; e.orig.sqlstate == '23505' on PostgreSQL, e.orig.sqlite_errorname == "
    "'SQLITE_CONSTRAINT_UNIQUE' on SQLite); re-raise the others"
)


def _raises_already_exists(context: str):
    def rule(attempt: Attempt) -> str | None:
        if "first_failed" in attempt.extra:
            return f"creating the first post failed: {attempt.extra['first_failed']}"
        outcome = attempt.extra.get("duplicate")
        if outcome is None:
            return None
        if outcome == "returned":
            return f"{context}, and create_post returned normally: raise AlreadyExists"
        if _is_already_exists(outcome):
            cause = _caused_by(outcome)
            if cause is not None and not isinstance(cause, IntegrityError) and is_transient(cause):
                return (
                    f"{context}, and create_post turned a {type(cause).__name__} ({_first_line(cause)}) into "
                    "AlreadyExists: that error is transient, not a duplicate. Catch IntegrityError only, and "
                    "let the rest reach the caller, which retries the whole transaction"
                )
            return None
        name = type(getattr(outcome, "orig", None) or outcome).__name__
        name = f" ({name})" if name != "IntegrityError" else ""
        if isinstance(outcome, IntegrityError):
            if attempt.extra.get("race"):
                return (
                    f"{context}: a raw IntegrityError{name} reached the caller. A SELECT beforehand cannot "
                    "see a row another request is about to commit: checking first races. Let the unique "
                    "index decide: insert inside session.begin_nested(), turn the unique violation into "
                    "AlreadyExists"
                )
            return (
                f"{context}: a raw IntegrityError{name} reached the caller. Catch it (inside a "
                "savepoint, session.begin_nested()) and raise AlreadyExists, a domain error"
            )
        return f"{context}: create_post raised {type(outcome).__name__} ({_first_line(outcome)}), not AlreadyExists"

    return rule


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:160]


_INSERT_POSTS = re.compile(r'\s*INSERT\s+INTO\s+"?posts"?[\s(]', re.I)


def _unprotected_insert(log: Any) -> bool:
    """True when an INSERT INTO posts that could fail ran with no SAVEPOINT open, read from the SQL."""
    depth = 0
    for statement in log or ():
        head = " ".join(statement.sql.split()[:3]).upper()
        if head.startswith("SAVEPOINT"):
            depth += 1
        elif head.startswith(("RELEASE", "ROLLBACK TO")):
            depth = max(0, depth - 1)
        elif _INSERT_POSTS.match(statement.sql) and "ON CONFLICT" not in statement.sql.upper() and not depth:
            return True
    return False


_ABORTED = (
    "SQLite undoes only the failed statement and carries on, so this can pass there; PostgreSQL aborts "
    "the whole transaction on an error ('current transaction is aborted, commands ignored until end of "
    "transaction block'), and the caller's next statement and its COMMIT fail. Wrap the insert in "
    "async with session.begin_nested(): a failure then rolls back to the savepoint only"
)


def _savepoint_rule(attempt: Attempt) -> str | None:
    outcome = attempt.extra.get("duplicate")
    if outcome is None or outcome == "returned":
        return None
    if attempt.session_usable and attempt.extra.get("author_posts") == 0:
        return None  # a rollback threw the earlier post away: "earlier work kept" says so
    if _unprotected_insert(attempt.extra.get("duplicate_log")):
        return f"the duplicate INSERT INTO posts ran outside a SAVEPOINT. {_ABORTED}"
    return None


def _kept_rule(attempt: Attempt) -> str | None:
    if "author_posts" not in attempt.extra or "first_failed" in attempt.extra or not attempt.session_usable:
        return None
    if "commit_failed" in attempt.extra:
        return f"the caller's commit failed afterwards ({attempt.extra['commit_failed']})"
    if attempt.extra["author_posts"] == 0:
        return (
            "the post created just before the duplicate is gone: session.rollback() threw away the "
            "caller's whole transaction. Wrap the insert in session.begin_nested(), so a failure rolls back "
            "to the savepoint only"
        )
    return None


def _partial_rule(attempt: Attempt) -> str | None:
    if attempt.extra.get("dup_tags"):
        return (
            "the new tag of the refused post survived: create the tags inside the same savepoint as the "
            "post, so the duplicate takes them back too"
        )
    return None


def _other_author_rule(attempt: Attempt) -> str | None:
    if "other_author" in attempt.extra:
        return (
            f"another author may use the same title, but create_post refused it: {attempt.extra['other_author']}. "
            "A duplicate is the same title for the same author"
        )
    return None


MISSING_AUTHOR = 999_999


async def _missing_author_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    """A post by an author who does not exist: the foreign key refuses it, and that is no duplicate."""
    async with _session(scratch, attempt, begin=True) as session:
        attempt.extra["outcome"] = await _outcome(
            _create(
                answer, session, scratch, attempt, author_id=MISSING_AUTHOR, title="Capstone: by nobody",
                body="Orphan.", tag_names=["python"], published_at=WHEN,
            )
        )
        await session.rollback()


def _not_a_duplicate_rule(attempt: Attempt) -> str | None:
    outcome = attempt.extra.get("outcome")
    if outcome is None:
        return None
    refused = f"the database refused a post by author {MISSING_AUTHOR}, who does not exist (a foreign-key violation)"
    if outcome == "returned":
        return f"{refused}, and create_post returned normally: let the error reach the caller"
    if _is_already_exists(outcome):
        cause = _caused_by(outcome)
        code = error_code(cause) if cause is not None else None
        return f"{refused}{f', code {code}' if code else ''}, and create_post reported AlreadyExists: {_BLANKET}"
    return None


class _OtherRequest:
    """Another request, on its own connection and in its own transaction, that publishes ``title`` and
    commits just before the answer's INSERT INTO posts runs (a listener on the answer's engine)."""

    def __init__(self, scratch: Any, title: str, author_id: int) -> None:
        self.scratch, self.title, self.author_id = scratch, title, author_id
        # its own engine: its own connection, and a short wait where the answer already holds the lock
        self.engine = scratch.create_engine(connect_args={"timeout": 1})
        self.committed = False
        self.failed: str | None = None
        self.fired = False

    def __enter__(self) -> _OtherRequest:
        event.listen(self.scratch.engine.sync_engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.scratch.engine.sync_engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.fired or not _INSERT_POSTS.match(statement) or self.title not in repr(parameters):
            return
        self.fired = True
        await_only(self._publish())  # the answer's INSERT waits while the other request commits

    async def _publish(self) -> None:
        try:
            async with self.engine.begin() as conn:
                conn = await conn.execution_options(**{HIDDEN: True})
                if self.scratch.is_postgresql:
                    await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                await conn.execute(
                    Post.__table__.insert().values(
                        author_id=self.author_id, title=self.title, body="first", status="published",
                        created_at=WHEN, published_at=WHEN,
                    )
                )
            self.committed = True
        except Exception as exc:  # it could not write: the answer's transaction already held the lock
            self.failed = f"{type(exc).__name__}: {_first_line(exc)}"

    async def cleanup(self) -> None:
        """Delete what the other request committed (the caller's rollback cannot), and close its engine."""
        try:
            async with self.scratch.engine.begin() as conn:
                await conn.execute(Post.__table__.delete().where(Post.__table__.c.title == self.title))
        finally:
            await self.engine.dispose()


RACE_TITLE = "Capstone: a title two requests want"
RACE_AUTHOR = 6


async def _race_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    """A real second request commits the same title between the answer's first read and its INSERT.

    PostgreSQL (READ COMMITTED): the answer's INSERT meets the committed row in the unique index:
    IntegrityError (23505), contained by a savepoint. SQLite (WAL, deferred BEGIN): the answer's
    transaction read before the other committed, so its write fails with SQLITE_BUSY_SNAPSHOT
    ("database is locked"); the answer must let that out, and the caller retries the whole
    transaction, which then meets the duplicate. The other request's row is deleted afterwards.
    """
    attempt.extra["race"] = True
    call = dict(author_id=RACE_AUTHOR, title=RACE_TITLE, body="Second.", tag_names=["python"], published_at=WHEN)
    other = _OtherRequest(scratch, RACE_TITLE, RACE_AUTHOR)
    try:
        async with _session(scratch, attempt, begin=True) as session:
            await session.execute(select(User.id).where(User.id == RACE_AUTHOR))  # a handler reads first
            with other:
                outcome = await _outcome(_create(answer, session, scratch, attempt, **call))
            attempt.extra["first_log"] = attempt.extra["calls"][-1]
            attempt.extra["first_outcome"] = outcome
            if (
                other.committed and not isinstance(outcome, str) and not _is_already_exists(outcome)
                and is_transient(outcome)
            ):
                # the caller's part: roll back and run the whole transaction again
                attempt.extra["retried"] = True
                await session.rollback()
                await session.begin()
                outcome = await _outcome(_create(answer, session, scratch, attempt, **call))
            attempt.extra["duplicate"] = outcome
            attempt.session_usable = await _usable(session)
            await session.rollback()
    finally:
        await other.cleanup()
    attempt.extra["other"] = other
    if not other.fired:
        attempt.extra["duplicate"] = None


def _race_rule(attempt: Attempt) -> str | None:
    other = attempt.extra.get("other")
    if other is None:
        return None
    if not other.fired:
        return "the checker found no INSERT INTO posts carrying the title: does create_post insert the post?"
    if other.failed:
        return None  # the answer's transaction held the write lock: the other request waits, no race to judge
    if attempt.extra.get("retried") and _unprotected_insert(attempt.extra.get("first_log")):
        return (
            "another request committed the same title between your SELECT and your INSERT, and your INSERT "
            "ran outside a SAVEPOINT: this races. SQLite refused the stale write (database is locked) and the "
            "retry found the duplicate; on PostgreSQL your INSERT meets the committed row, a raw "
            "IntegrityError aborts the caller's transaction. Let the unique index decide: insert inside "
            "session.begin_nested() and turn the unique violation into AlreadyExists"
        )
    return _raises_already_exists("another request committed the same title just before your INSERT")(attempt)


q4 = CapstoneExercise(
    id="12.q4",
    title="Duplicates, gracefully",
    kind=FUNCTIONS,
    functions=("create_post",),
    solution_answer=FeedRepository,
    prepare=prepare,
    scratch_scale=SCALE,
    requirements=[
        Requirement(
            "the same title twice, then carry on",
            _duplicate_scenario,
            [Probe(_raises_already_exists("the author already had a post with this title"), name="AlreadyExists"),
             Probe(_savepoint_rule, name="a savepoint around the insert"),
             SessionUsable(), Probe(_kept_rule, name="earlier work kept"),
             Probe(_partial_rule, name="nothing partial"), Probe(_other_author_rule, name="other authors"),
             NO_COMMIT, NO_LAZY_WRITE],
        ),
        Requirement(
            "another request commits the same title meanwhile",
            _race_scenario,
            [Probe(_race_rule, name="AlreadyExists"), SessionUsable()],
        ),
        Requirement(
            "an author who does not exist",
            _missing_author_scenario,
            [Probe(_not_a_duplicate_rule, name="not a duplicate")],
        ),
    ],
    hints=[
        "The unique index on (author_id, title) is the source of truth: insert, and if the database says "
        "IntegrityError, it was a duplicate. A SELECT beforehand cannot see a row another request is about "
        "to insert.",
        "A failed INSERT breaks the whole transaction unless it ran inside a savepoint: "
        "async with session.begin_nested(): session.add(post). The savepoint rolls back; the caller's "
        "earlier work stays.",
        "try: async with session.begin_nested(): session.add(post) / except IntegrityError as exc: raise "
        "AlreadyExists(...) from exc. Never session.rollback() in here: that is the caller's transaction.",
    ],
    why=(
        "The index decides, a savepoint contains the failure, and the caller gets a domain error with its "
        "transaction intact: race-free, and the session stays usable."
    ),
)


# =========================================================================== the scorecard

_ICONS = {"correct": "✅", "incorrect": "❌", "not attempted": "✏️", "error": "⚠️"}


@dataclass
class Scorecard:
    """The four capstone verdicts, one line per requirement: rules passed and the first problem."""

    name: str
    verdicts: list[Verdict]

    @property
    def score(self) -> tuple[int, int]:
        """(exercises correct, exercises)."""
        return sum(v.correct for v in self.verdicts), len(self.verdicts)

    def lines(self) -> list[tuple[Verdict, str, int, int, str]]:
        """(verdict, requirement, rules passed, rules, first problem) per requirement."""
        out = []
        for verdict in self.verdicts:
            groups: dict[str, list[Any]] = {}
            for rule in verdict.rules:
                groups.setdefault(rule.rule.split(" · ", 1)[0], []).append(rule)
            if not groups:
                out.append((verdict, "", 0, 0, verdict.message if verdict.status != "correct" else ""))
            for group, rules in groups.items():
                failed = [r for r in rules if not r.passed]
                problem = failed[0].message.split(": ", 1)[-1] if failed else ""
                out.append((verdict, group, len(rules) - len(failed), len(rules), problem))
        return out

    def __str__(self) -> str:
        got, total = self.score
        rules = [(p, n) for _, _, p, n, _ in self.lines()]
        n_rules = sum(n for _, n in rules)
        text_ = [f"{self.name}: {got}/{total} exercises correct"
                 + (f", {sum(p for p, _ in rules)}/{n_rules} rules pass" if n_rules else "")]
        shown = None
        for verdict, group, passed, n, problem in self.lines():
            if verdict is not shown:
                text_.append(f"  {_ICONS.get(verdict.status, '?')} {verdict.exercise} {verdict.title}: {verdict.status}")
                shown = verdict
            if group:
                text_.append(f"       {passed}/{n}  {group}" + (f": {problem}" if problem else ""))
            elif problem:
                text_.append(f"       {problem}")
        return "\n".join(text_)

    def _repr_html_(self) -> str:
        from ..display import box, esc

        rows = []
        shown = None
        for verdict, group, passed, n, problem in self.lines():
            first = verdict is not shown
            shown = verdict
            head = f"{_ICONS.get(verdict.status, '?')} {esc(verdict.exercise)} {esc(verdict.title)}" if first else ""
            count = f"{passed}/{n}" if n else ""
            rows.append(
                f"<tr><td>{head}</td><td>{esc(group)}</td><td>{count}</td><td>{esc(problem)}</td></tr>"
            )
        got, total = self.score
        table = (
            "<table class=\"course-table\"><tr><th>exercise</th><th>requirement</th><th>rules</th><th>first problem</th></tr>"
            + "".join(rows) + "</table>"
        )
        kind = "ok" if got == total else "todo" if all(v.status == "not attempted" for v in self.verdicts) else "bad"
        return box(kind, f"Scorecard · {esc(self.name)}: {got}/{total} exercises correct", table, css="course-verdict")


async def scorecard(answer: Any, *, db: Any = None, fresh: bool = False) -> Scorecard:
    """Judge ``answer`` on every capstone exercise and show one scorecard, requirement by requirement.

    An exercise just checked with this very object is not run again (``fresh=True`` runs all
    four). ``card.score`` is ``(correct, total)``; ``card.verdicts`` holds each exercise's
    verdict with every rule. In strict mode (the test suite) a wrong answer raises, as
    ``check()`` does.
    """
    from ..display import in_notebook

    verdicts = []
    for exercise in (q1, q2, q3, q4):
        known = None if fresh else exercise.last_verdict(answer)
        verdicts.append(known or await exercise.evaluate(answer, db=db))
    card = Scorecard(getattr(answer, "__name__", type(answer).__name__), verdicts)
    if in_notebook():
        from IPython.display import display

        display(card)
    else:
        print(card)
    bad = [v for v in verdicts if v.status in ("incorrect", "error")]
    if strict() and bad:
        raise ExerciseFailed(str(bad[0]))
    return card


# =========================================================================== counterexamples
# Each one is the reference with one function rewritten the way a learner plausibly would.


class _TagsPerPostHelper(FeedRepository):
    """An N+1 hidden in a helper: the tags of each post fetched one post at a time."""

    @staticmethod
    async def _tags_of(session, post_id):
        stmt = select(Tag.name).join(post_tags, post_tags.c.tag_id == Tag.id).where(post_tags.c.post_id == post_id)
        return sorted((await session.scalars(stmt)).all())

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        items, next_cursor = await FeedRepository.feed(session, limit=limit, cursor=cursor, tag=tag)
        for item in items:
            item["tags"] = await _TagsPerPostHelper._tags_of(session, item["id"])
        return items, next_cursor


class _LazyAuthor(FeedRepository):
    """Whole Post objects with their tags loaded, but the author left to a lazy load."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        from sqlalchemy.orm import selectinload

        comment_count = select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()
        stmt = (
            select(Post, comment_count)
            .where(Post.status == "published")
            .options(selectinload(Post.tags))
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
             "tags": sorted(t.name for t in p.tags), "comment_count": n}
            for p, n in page
        ]
        return items, ((page[-1][0].published_at, page[-1][0].id) if len(rows) > limit else None)


class _TagsJoinedIntoPage(FeedRepository):
    """The tag names joined into the page query, rows grouped into posts in Python: LIMIT counted rows."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        comment_count = select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()
        stmt = (
            select(Post.id, Post.title, Post.published_at, User.username, comment_count.label("n"), Tag.name)
            .join(Post.author)
            .outerjoin(Post.tags)
            .where(Post.status == "published")
            .order_by(Post.published_at.desc(), Post.id.desc())
            .limit(limit + 1)
        )
        if tag is not None:
            stmt = stmt.where(Post.tags.any(Tag.name == tag))
        if cursor is not None:
            stmt = stmt.where(_pair_after(cursor))
        rows = (await session.execute(stmt)).all()
        items: dict[int, dict] = {}
        for r in rows:
            item = items.setdefault(r.id, {"id": r.id, "title": r.title, "author": r.username,
                                           "published_at": r.published_at, "tags": [], "comment_count": r.n})
            if r.name is not None:
                item["tags"] = sorted([*item["tags"], r.name])
        page = list(items.values())[:limit]
        return page, ((page[-1]["published_at"], page[-1]["id"]) if len(items) > limit else None)


class _CountThroughTagsJoin(FeedRepository):
    """The comment count taken over a join that also goes through the tags: counts multiplied."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        items, next_cursor = await FeedRepository.feed(session, limit=limit, cursor=cursor, tag=tag)
        ids = [item["id"] for item in items]
        counts = dict(
            (
                await session.execute(
                    select(Post.id, func.count(Comment.id))
                    .outerjoin(Comment, Comment.post_id == Post.id)
                    .outerjoin(post_tags, post_tags.c.post_id == Post.id)
                    .where(Post.id.in_(ids))
                    .group_by(Post.id)
                )
            ).all()
        )
        for item in items:
            item["comment_count"] = counts.get(item["id"], 0)
        return items, next_cursor


def _pair_after(cursor):
    return tuple_(Post.published_at, Post.id) < tuple_(*cursor)


def _exists_tag(tag):
    return Post.tags.any(Tag.name == tag)


def _walker(where_after=_pair_after, *, order_by_id: bool = True, offset: bool = False,
            filter_in_python: bool = False, always_next: bool = False,
            published=lambda: Post.status == "published", tag_filter=_exists_tag):
    """A feed like the reference, with one piece changed."""

    async def feed(session, *, limit, cursor=None, tag=None):
        comment_count = select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()
        order = [Post.published_at.desc(), Post.id.desc()] if order_by_id else [Post.published_at.desc()]
        stmt = (
            select(Post.id, Post.title, Post.published_at, User.username, comment_count.label("comment_count"))
            .join(Post.author)
            .where(published())
            .order_by(*order)
        )
        if offset:
            stmt = stmt.offset(cursor or 0)
        elif cursor is not None:
            stmt = stmt.where(where_after(cursor))
        if tag is not None and not filter_in_python:
            stmt = stmt.where(tag_filter(tag))
        rows = (await session.execute(stmt.limit(limit + 1))).all()
        page = rows[:limit]
        names = defaultdict(list)
        if page:
            pairs = await session.execute(
                select(post_tags.c.post_id, Tag.name)
                .join(Tag, Tag.id == post_tags.c.tag_id)
                .where(post_tags.c.post_id.in_([row.id for row in page]))
            )
            for post_id, name in pairs:
                names[post_id].append(name)
        items = [
            {"id": r.id, "title": r.title, "author": r.username, "published_at": r.published_at,
             "tags": sorted(names[r.id]), "comment_count": r.comment_count}
            for r in page
        ]
        more = len(rows) > limit
        if filter_in_python and tag is not None:
            items = [item for item in items if tag in item["tags"]]
        if offset:
            return items, ((cursor or 0) + limit if more else None)
        if always_next:
            return items, ((page[-1].published_at, page[-1].id) if page else None)
        return items, ((page[-1].published_at, page[-1].id) if more else None)

    return staticmethod(feed)


class _KeysetOnPublishedAtOnly(FeedRepository):
    feed = _walker(lambda c: Post.published_at < c[0])


class _KeysetLessOrEqual(FeedRepository):
    feed = _walker(lambda c: Post.published_at <= c[0], order_by_id=False)


class _OffsetCursor(FeedRepository):
    feed = _walker(offset=True)


class _TagFilteredInPython(FeedRepository):
    feed = _walker(filter_in_python=True)


class _NextCursorOnLastPage(FeedRepository):
    feed = _walker(always_next=True)


class _StringBuiltTagFilter(FeedRepository):
    """The tag filter pasted into SQL text with an f-string."""

    feed = _walker(
        tag_filter=lambda tag: text(
            "EXISTS (SELECT 1 FROM post_tags JOIN tags ON tags.id = post_tags.tag_id "
            f"WHERE post_tags.post_id = posts.id AND tags.name = '{tag}')"  # the mistake on show
        )
    )


class _PublishedAtNotNull(FeedRepository):
    """'Published' read as 'has a published_at': archived posts slip in."""

    feed = _walker(published=lambda: Post.published_at.is_not(None))


def _new_post(session, author_id, title, body, published_at, tags):
    post = Post(
        author_id=author_id, title=title, body=body, status="published",
        created_at=published_at, published_at=published_at,
    )
    session.add(post)
    post.tags = tags
    return post


class _CommitInTheMiddle(FeedRepository):
    """The post committed first, 'to get its id', then the tags."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at, [])
        await session.commit()
        known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
        post.tags = [known.get(name) or Tag(name=name) for name in tag_names]
        await session.flush()
        return post.id


class _TagLookupPerName(FeedRepository):
    """A get-or-create helper called once per tag name: an N+1 of lookups."""

    @staticmethod
    async def _tag(session, name):
        tag = await session.scalar(select(Tag).where(Tag.name == name))
        return tag or Tag(name=name)

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        tags = [await _TagLookupPerName._tag(session, name) for name in tag_names]
        try:
            async with session.begin_nested():
                post = _new_post(session, author_id, title, body, published_at, tags)
        except IntegrityError as exc:
            raise AlreadyExists(title) from exc
        return post.id


class _TagsSetAfterAutoflush(FeedRepository):
    """The post added first, the tags looked up next: that SELECT autoflushes the post, and assigning
    post.tags then loads its (empty) collection lazily."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        try:
            async with session.begin_nested():
                post = Post(author_id=author_id, title=title, body=body, status="published",
                            created_at=published_at, published_at=published_at)
                session.add(post)
                known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
                post.tags = [known.get(name) or Tag(name=name) for name in tag_names]
        except IntegrityError as exc:
            if constraint_kind(exc) != "unique":
                raise
            raise AlreadyExists(title) from exc
        return post.id


class _CreateEveryTag(FeedRepository):
    """Every tag name inserted as a new tag, existing or not."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        try:
            async with session.begin_nested():
                post = _new_post(session, author_id, title, body, published_at, [Tag(name=n) for n in tag_names])
        except IntegrityError as exc:
            raise AlreadyExists(title) from exc
        return post.id


class _SwallowsFailure(FeedRepository):
    """Any error logged away, and the function returns as if all went well."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        try:
            return await FeedRepository.create_post(
                session, author_id=author_id, title=title, body=body, tag_names=tag_names, published_at=published_at,
            )
        except Exception:
            return None


class _EveryErrorIsADuplicate(FeedRepository):
    """except Exception: raise AlreadyExists: a refused write reported as a duplicate."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        try:
            return await FeedRepository.create_post(
                session, author_id=author_id, title=title, body=body, tag_names=tag_names, published_at=published_at,
            )
        except Exception as exc:
            raise AlreadyExists(title) from exc


class _NoSavepoint(FeedRepository):
    """A plain flush: the IntegrityError escapes and breaks the caller's transaction."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        known = {}
        if tag_names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
        post = _new_post(session, author_id, title, body, published_at, [known.get(n) or Tag(name=n) for n in tag_names])
        await session.flush()
        return post.id


class _RollbackOnDuplicate(FeedRepository):
    """The common pattern: except IntegrityError: await session.rollback(); raise a 409."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        known = {}
        if tag_names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
        post = _new_post(session, author_id, title, body, published_at, [known.get(n) or Tag(name=n) for n in tag_names])
        try:
            await session.flush()
        except IntegrityError as exc:
            await session.rollback()
            raise AlreadyExists(title) from exc
        return post.id


class _CheckThenInsert(FeedRepository):
    """SELECT first, INSERT if nothing was found: no savepoint, and a race between the two."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        taken = await session.scalar(
            select(func.count()).select_from(Post).where(Post.author_id == author_id, Post.title == title)
        )
        if taken:
            raise AlreadyExists(title)
        known = {}
        if tag_names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
        post = _new_post(session, author_id, title, body, published_at, [known.get(n) or Tag(name=n) for n in tag_names])
        await session.flush()
        return post.id


class _EveryIntegrityErrorIsADuplicate(FeedRepository):
    """The blanket mapping: except IntegrityError: raise AlreadyExists, a foreign-key violation included."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        known = {}
        if tag_names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
        try:
            async with session.begin_nested():
                post = _new_post(session, author_id, title, body, published_at,
                                 [known.get(n) or Tag(name=n) for n in tag_names])
        except IntegrityError as exc:
            raise AlreadyExists(title) from exc
        return post.id


class _CoreInsertNoSavepoint(FeedRepository):
    """One INSERT ... RETURNING through session.execute(), IntegrityError caught, no savepoint:
    SQLite carries on after the failed statement, PostgreSQL aborts the transaction."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        try:
            post_id = await session.scalar(
                insert(Post).values(author_id=author_id, title=title, body=body, status="published",
                                    created_at=published_at, published_at=published_at).returning(Post.id)
            )
        except IntegrityError as exc:
            if constraint_kind(exc) != "unique":
                raise
            raise AlreadyExists(title) from exc
        known = {t.name: t.id for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))} if names else {}
        for name in names:
            if name not in known:
                known[name] = await session.scalar(insert(Tag).values(name=name).returning(Tag.id))
        if names:
            await session.execute(insert(post_tags), [{"post_id": post_id, "tag_id": known[n]} for n in names])
        return post_id


class _TitleTakenByAnyone(FeedRepository):
    """The duplicate check forgets the author: one title per site."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        taken = await session.scalar(select(func.count()).select_from(Post).where(Post.title == title))
        if taken:
            raise AlreadyExists(title)
        return await FeedRepository.create_post(
            session, author_id=author_id, title=title, body=body, tag_names=tag_names, published_at=published_at,
        )


q1.counterexamples = [
    Counterexample("tags fetched per post in a helper (N+1)", _TagsPerPostHelper, "N+1"),
    Counterexample("tag filter built with an f-string", _StringBuiltTagFilter, "pasted"),
    Counterexample("author left to a lazy load", _LazyAuthor, "Post.author was loaded lazily"),
    Counterexample("comment count over a join through tags", _CountThroughTagsJoin, "multiplies"),
    Counterexample("tag names joined into the page query", _TagsJoinedIntoPage, "LIMIT counts rows"),
    Counterexample("published_at IS NOT NULL instead of status", _PublishedAtNotNull, "not published"),
]
q2.counterexamples = [
    Counterexample("keyset on published_at alone", _KeysetOnPublishedAtOnly, "skipped"),
    Counterexample("published_at <= cursor, no id tiebreak", _KeysetLessOrEqual, "came back on page"),
    Counterexample("an OFFSET for a cursor", _OffsetCursor, "offset"),
    Counterexample("tag filter applied in Python after LIMIT", _TagFilteredInPython, "before limit"),
    Counterexample("a next cursor on the last page", _NextCursorOnLastPage, "empty page"),
]
q3.counterexamples = [
    Counterexample("commit in the middle", _CommitInTheMiddle, "commit"),
    Counterexample("one tag lookup per name in a helper", _TagLookupPerName, "n+1"),
    Counterexample("every tag created, known or not", _CreateEveryTag, "reuse the tags"),
    Counterexample("the failure swallowed", _SwallowsFailure, "returned normally"),
    Counterexample("every error reported as a duplicate", _EveryErrorIsADuplicate, "only an integrityerror"),
    Counterexample("tags assigned after an autoflush", _TagsSetAfterAutoflush, "Post.tags was loaded lazily"),
]
q4.counterexamples = [
    Counterexample("no savepoint: IntegrityError escapes", _NoSavepoint, "raw IntegrityError"),
    Counterexample("session.rollback() on the duplicate", _RollbackOnDuplicate, "threw away"),
    Counterexample("check first, then insert", _CheckThenInsert, "races"),
    Counterexample("duplicate check ignores the author", _TitleTakenByAnyone, "another author"),
    Counterexample("every IntegrityError mapped to AlreadyExists", _EveryIntegrityErrorIsADuplicate,
                   "every IntegrityError became 'already exists'"),
    Counterexample("IntegrityError caught without a savepoint", _CoreInsertNoSavepoint, "outside a SAVEPOINT"),
]
