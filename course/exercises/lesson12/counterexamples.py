"""Plausible wrong answers, the mistake catalogue of the capstone: each is the reference with one
function rewritten the way a learner would, registered with the phrase its verdict must contain.

Misconceptions, and the rule that names each:

- 12.q1: tags fetched per post (N+1; statement budget) · the tag pasted into SQL text (bound
  parameters; a quote in the tag) · the author left to a lazy load (no lazy loads, naming
  ``Post.author``) · comments counted over a join that multiplies them · tags joined into the page
  query, so LIMIT counts rows · "published" read as ``published_at IS NOT NULL`` · comments loaded
  with ``selectinload(Post.comments)`` to be counted with ``len()`` · a forgotten ``return``.
- 12.q2: a keyset on ``published_at`` alone (skipped) or ``<=`` (repeated) · the two columns
  compared apart, joined by AND (skipped; read from the SQL) · a row-value ``<`` under ORDER BY
  published_at DESC, id ASC (mixed directions, read from the SQL) · OFFSET as a cursor ·
  the tag filtered in Python after LIMIT (short pages) · a next cursor on the last page · LIMIT limit
  with a cursor whenever the page is full (no limit + 1: a feed of exactly one page).
- 12.q3: a commit in the middle (also before the tags are set: the commit named before the lazy
  load it caused) · its own ``session.begin()`` in the caller's transaction · created_at not set to
  published_at · one tag lookup per name (N+1) · every tag created anew (reported
  as AlreadyExists, or the raw unique violation on tags.name) · the
  failure swallowed (``except Exception``, or ``except IntegrityError``: the checker's failure is one,
  NOT NULL on the links) · every error reported as a duplicate · tags assigned after an autoflush
  (a lazy load of ``Post.tags``) · no flush (``post.id`` returned as None, no INSERT inside).
- 12.q4: no savepoint (a raw IntegrityError) · ``session.rollback()`` on the duplicate · check
  first, then insert (races) · a duplicate check that forgets the author · every IntegrityError
  mapped to AlreadyExists (the foreign-key scenario) · IntegrityError caught without a savepoint
  (passes on SQLite, judged from the SQL: PostgreSQL aborts the transaction) · check first, then a
  savepoint that never raises AlreadyExists (PostgreSQL's race; on SQLite a post committed before and
  hidden from the SELECT until the INSERT) · the links inserted from an empty list (explain.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import and_, func, insert, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ...lab.errorkinds import constraint_kind
from ...schema import Comment, Post, Tag, User, post_tags
from ..core import Counterexample
from .feed import q1, q2
from .reference import AlreadyExists, FeedRepository
from .writes import q3, q4


def wrong(exercise, label: str, says: str):
    """Register the class below as a wrong answer to ``exercise``; its verdict must contain ``says``."""

    def register(cls):
        exercise.counterexamples = [*exercise.counterexamples, Counterexample(label, cls, says)]
        return cls

    return register


# ---------------------------------------------------------------- feed: pieces of the reference


def _comment_count():
    return select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()


def _pair_after(cursor):
    return tuple_(Post.published_at, Post.id) < tuple_(*cursor)


def _exists_tag(tag):
    return Post.tags.any(Tag.name == tag)


def _newest_first(stmt, limit, tag, cursor):
    """The feed's order, tag filter and keyset, and limit + 1 rows."""
    stmt = stmt.where(Post.status == "published").order_by(Post.published_at.desc(), Post.id.desc())
    if tag is not None:
        stmt = stmt.where(_exists_tag(tag))
    if cursor is not None:
        stmt = stmt.where(_pair_after(cursor))
    return stmt.limit(limit + 1)


def _item(post_id, title, author, published_at, tags, comment_count):
    return {"id": post_id, "title": title, "author": author, "published_at": published_at,
            "tags": sorted(tags), "comment_count": comment_count}


@wrong(q1, "tags fetched per post in a helper (N+1)", says="N+1")
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


@wrong(q1, "author left to a lazy load", says="Post.author was loaded lazily")
class _LazyAuthor(FeedRepository):
    """Whole Post objects with their tags loaded, but the author left to a lazy load."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        stmt = _newest_first(select(Post, _comment_count()).options(selectinload(Post.tags)), limit, tag, cursor)
        rows = (await session.execute(stmt)).all()
        page = rows[:limit]
        items = [_item(p.id, p.title, p.author.username, p.published_at, [t.name for t in p.tags], n) for p, n in page]
        return items, ((page[-1][0].published_at, page[-1][0].id) if len(rows) > limit else None)


@wrong(q1, "tag names joined into the page query", says="LIMIT counts rows")
class _TagsJoinedIntoPage(FeedRepository):
    """The tag names joined into the page query, rows grouped into posts in Python: LIMIT counted rows."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        columns = select(Post.id, Post.title, Post.published_at, User.username, _comment_count().label("n"), Tag.name)
        stmt = _newest_first(columns.join(Post.author).outerjoin(Post.tags), limit, tag, cursor)
        posts: dict[int, dict] = {}
        for r in await session.execute(stmt):
            item = posts.setdefault(r.id, _item(r.id, r.title, r.username, r.published_at, [], r.n))
            item["tags"] = sorted([*item["tags"], *([r.name] if r.name is not None else [])])
        page = list(posts.values())[:limit]
        return page, ((page[-1]["published_at"], page[-1]["id"]) if len(posts) > limit else None)


@wrong(q1, "comment count over a join through tags", says="multiplies")
class _CountThroughTagsJoin(FeedRepository):
    """The comment count taken over a join that also goes through the tags: counts multiplied."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        items, next_cursor = await FeedRepository.feed(session, limit=limit, cursor=cursor, tag=tag)
        counts = dict((await session.execute(
            select(Post.id, func.count(Comment.id))
            .outerjoin(Comment, Comment.post_id == Post.id)
            .outerjoin(post_tags, post_tags.c.post_id == Post.id)
            .where(Post.id.in_([item["id"] for item in items]))
            .group_by(Post.id)
        )).all())
        for item in items:
            item["comment_count"] = counts.get(item["id"], 0)
        return items, next_cursor


def _walker(where_after=_pair_after, *, order_by_id: bool = True, id_ascending: bool = False, offset: bool = False,
            filter_in_python: bool = False, always_next: bool = False, no_extra_row: bool = False,
            published=lambda: Post.status == "published", tag_filter=_exists_tag):
    """A feed like the reference, with one piece changed."""

    async def feed(session, *, limit, cursor=None, tag=None):
        order = [Post.published_at.desc(), Post.id.asc() if id_ascending else Post.id.desc()][: 2 if order_by_id else 1]
        stmt = (
            select(Post.id, Post.title, Post.published_at, User.username, _comment_count().label("comment_count"))
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
        rows = (await session.execute(stmt.limit(limit if no_extra_row else limit + 1))).all()
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
        items = [_item(r.id, r.title, r.username, r.published_at, names[r.id], r.comment_count) for r in page]
        more = len(rows) > limit
        if filter_in_python and tag is not None:
            items = [item for item in items if tag in item["tags"]]
        if offset:
            return items, ((cursor or 0) + limit if more else None)
        if always_next:
            return items, ((page[-1].published_at, page[-1].id) if page else None)
        if no_extra_row:  # a full page is taken to mean that more follow
            return items, ((page[-1].published_at, page[-1].id) if len(page) == limit else None)
        return items, ((page[-1].published_at, page[-1].id) if more else None)

    return staticmethod(feed)


@wrong(q1, "tag filter built with an f-string", says="pasted")
class _StringBuiltTagFilter(FeedRepository):
    """The tag filter pasted into SQL text with an f-string."""

    feed = _walker(
        tag_filter=lambda tag: text(
            "EXISTS (SELECT 1 FROM post_tags JOIN tags ON tags.id = post_tags.tag_id "
            f"WHERE post_tags.post_id = posts.id AND tags.name = '{tag}')"  # the mistake on show
        )
    )


@wrong(q1, "published_at IS NOT NULL instead of status", says="not published")
class _PublishedAtNotNull(FeedRepository):
    """'Published' read as 'has a published_at': archived posts slip in."""

    feed = _walker(published=lambda: Post.published_at.is_not(None))


@wrong(q2, "keyset on published_at alone", says="skipped")
class _KeysetOnPublishedAtOnly(FeedRepository):
    feed = _walker(lambda c: Post.published_at < c[0])


@wrong(q2, "published_at <= at AND id < id", says="two comparisons joined by AND are not a keyset")
class _KeysetAndedComparisons(FeedRepository):
    feed = _walker(lambda c: and_(Post.published_at <= c[0], Post.id < c[1]))


@wrong(q2, "published_at <= cursor, no id tiebreak", says="came back on page")
class _KeysetLessOrEqual(FeedRepository):
    feed = _walker(lambda c: Post.published_at <= c[0], order_by_id=False)


@wrong(q2, "ORDER BY published_at DESC, id ASC under a row-value <", says="sorts published_at descending but id ascending")
class _KeysetMixedDirections(FeedRepository):
    """The pair compared strictly, but the tie-breaker sorted the other way: ties come back and go missing."""

    feed = _walker(id_ascending=True)


@wrong(q2, "an OFFSET for a cursor", says="offset")
class _OffsetCursor(FeedRepository):
    feed = _walker(offset=True)


@wrong(q2, "tag filter applied in Python after LIMIT", says="before limit")
class _TagFilteredInPython(FeedRepository):
    feed = _walker(filter_in_python=True)


@wrong(q2, "a next cursor on the last page", says="empty page")
class _NextCursorOnLastPage(FeedRepository):
    feed = _walker(always_next=True)


@wrong(q1, "LIMIT limit, a cursor whenever the page is full", says="no post follows this page")
@wrong(q2, "LIMIT limit, a cursor whenever the page is full", says="limit + 1")
class _CursorWheneverFull(FeedRepository):
    feed = _walker(no_extra_row=True)


@wrong(q1, "selectinload(Post.comments), then len()", says="loaded to be counted")
class _CommentsLoadedToCount(FeedRepository):
    """Whole posts with their comments loaded, counted with len(): right numbers, every comment fetched."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        stmt = _newest_first(
            select(Post).options(selectinload(Post.author), selectinload(Post.tags), selectinload(Post.comments)),
            limit, tag, cursor,
        )
        rows = (await session.scalars(stmt)).all()
        page = rows[:limit]
        items = [_item(p.id, p.title, p.author.username, p.published_at, [t.name for t in p.tags], len(p.comments))
                 for p in page]
        return items, ((page[-1].published_at, page[-1].id) if len(rows) > limit else None)


@wrong(q1, "forgot return", says="did you forget return items, next_cursor")
class _ForgotReturn(FeedRepository):
    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        await FeedRepository.feed(session, limit=limit, cursor=cursor, tag=tag)


# ---------------------------------------------------------------- create_post: pieces of the reference


def _new_post(session, author_id, title, body, published_at, tags=None):
    """A published post added to the session (with ``tags``, set after the add)."""
    post = Post(author_id=author_id, title=title, body=body, status="published",
                created_at=published_at, published_at=published_at)
    session.add(post)
    if tags is not None:
        post.tags = tags
    return post


async def _known_or_new(session, names):
    """Tag objects for ``names``: the known ones from one IN lookup, the others built."""
    known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))} if names else {}
    return [known.get(n) or Tag(name=n) for n in names]


async def _in_savepoint(session, tags, *, blanket=False, author_id, title, body, published_at, **_):
    """The post and its tags in a savepoint; a unique violation (any IntegrityError if ``blanket``)
    becomes AlreadyExists."""
    try:
        async with session.begin_nested():
            post = _new_post(session, author_id, title, body, published_at, tags)
    except IntegrityError as exc:
        if not blanket and constraint_kind(exc) != "unique":
            raise
        raise AlreadyExists(title) from exc
    return post.id


@wrong(q3, "commit in the middle", says="commit")
class _CommitInTheMiddle(FeedRepository):
    """The post committed first, 'to get its id', then the tags."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at, [])
        await session.commit()
        post.tags = await _known_or_new(session, tag_names)
        await session.flush()
        return post.id


@wrong(q3, "commit, then the tags assigned", says="create_post committed (1 COMMIT)")
class _CommitThenTags(FeedRepository):
    """The post committed 'to get its id', then its tags assigned: the headline is the commit, which made
    the assignment a lazy load."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at)
        await session.commit()
        post.tags = await _known_or_new(session, tag_names)
        await session.flush()
        return post.id


@wrong(q3, "its own session.begin() inside create_post", says="create_post opened its own transaction")
class _OwnTransaction(FeedRepository):
    """async with session.begin(): in a session whose transaction the caller has begun."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        async with session.begin():
            tags = await _known_or_new(session, tag_names)
            post = _new_post(session, author_id, title, body, published_at, tags)
            await session.flush()
        return post.id


@wrong(q3, "created_at left to now()", says="the contract sets created_at and published_at both")
class _CreatedNow(FeedRepository):
    """created_at=datetime.now(): the contract says created_at and published_at are both published_at."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        tags = await _known_or_new(session, tag_names)
        post = Post(author_id=author_id, title=title, body=body, status="published",
                    created_at=datetime.now(), published_at=published_at)
        async with session.begin_nested():
            session.add(post)
            post.tags = tags
        return post.id


@wrong(q3, "one tag lookup per name in a helper", says="n+1")
class _TagLookupPerName(FeedRepository):
    """A get-or-create helper called once per tag name: an N+1 of lookups."""

    @staticmethod
    async def _tag(session, name):
        return await session.scalar(select(Tag).where(Tag.name == name)) or Tag(name=name)

    @staticmethod
    async def create_post(session, **call):
        tags = [await _TagLookupPerName._tag(session, name) for name in call["tag_names"]]
        return await _in_savepoint(session, tags, **call)


@wrong(q3, "every tag created, known or not", says="reuse the tags")
class _CreateEveryTag(FeedRepository):
    """Every tag name inserted as a new tag, existing or not."""

    @staticmethod
    async def create_post(session, **call):
        return await _in_savepoint(session, [Tag(name=n) for n in call["tag_names"]], **call)


@wrong(q3, "every tag inserted anew, one flush", says="inserted tags that already exist")
class _InsertEveryTagFlush(FeedRepository):
    """Every tag name added as a new Tag and flushed with the post: the unique index on tags.name refuses
    the known ones, and the raw IntegrityError goes out."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at, [Tag(name=n) for n in tag_names])
        await session.flush()
        return post.id


@wrong(q3, "the failure swallowed", says="returned normally")
class _SwallowsFailure(FeedRepository):
    """Any error logged away, and the function returns as if all went well."""

    @staticmethod
    async def create_post(session, **call):
        try:
            return await FeedRepository.create_post(session, **call)
        except Exception:
            return None


@wrong(q3, "IntegrityError swallowed", says="returned normally")
class _SwallowsIntegrityError(FeedRepository):
    """except IntegrityError: return None, the most common swallow: the refused tags go unreported."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        tags = await _known_or_new(session, tag_names)
        try:
            async with session.begin_nested():
                post = _new_post(session, author_id, title, body, published_at, tags)
        except IntegrityError:
            return None
        return post.id


@wrong(q3, "every error reported as a duplicate", says="catch only the duplicate")
class _EveryErrorIsADuplicate(FeedRepository):
    """except Exception: raise AlreadyExists: a refused write reported as a duplicate."""

    @staticmethod
    async def create_post(session, **call):
        try:
            return await FeedRepository.create_post(session, **call)
        except Exception as exc:
            raise AlreadyExists(call["title"]) from exc


@wrong(q3, "tags assigned after an autoflush", says="Post.tags was loaded lazily")
class _TagsSetAfterAutoflush(FeedRepository):
    """The post added first, the tags looked up next: that SELECT autoflushes the post, and assigning
    post.tags then loads its (empty) collection lazily."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        async with session.begin_nested():
            post = _new_post(session, author_id, title, body, published_at)
            post.tags = await _known_or_new(session, tag_names)
        return post.id


@wrong(q4, "no savepoint: IntegrityError escapes", says="raw IntegrityError")
class _NoSavepoint(FeedRepository):
    """A plain flush: the IntegrityError escapes and breaks the caller's transaction."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at, await _known_or_new(session, tag_names))
        await session.flush()
        return post.id


@wrong(q4, "session.rollback() on the duplicate", says="threw away")
class _RollbackOnDuplicate(FeedRepository):
    """The common pattern: except IntegrityError: await session.rollback(); raise a 409."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        post = _new_post(session, author_id, title, body, published_at, await _known_or_new(session, tag_names))
        try:
            await session.flush()
        except IntegrityError as exc:
            await session.rollback()
            raise AlreadyExists(title) from exc
        return post.id


@wrong(q4, "check first, then insert", says="races")
class _CheckThenInsert(FeedRepository):
    """SELECT first, INSERT if nothing was found: no savepoint, and a race between the two."""

    @staticmethod
    async def create_post(session, **call):
        taken = await session.scalar(
            select(func.count()).select_from(Post).where(Post.author_id == call["author_id"], Post.title == call["title"])
        )
        if taken:
            raise AlreadyExists(call["title"])
        return await _NoSavepoint.create_post(session, **call)


@wrong(q4, "duplicate check ignores the author", says="another author")
class _TitleTakenByAnyone(FeedRepository):
    """The duplicate check forgets the author: one title per site."""

    @staticmethod
    async def create_post(session, **call):
        if await session.scalar(select(func.count()).select_from(Post).where(Post.title == call["title"])):
            raise AlreadyExists(call["title"])
        return await FeedRepository.create_post(session, **call)


@wrong(q4, "every IntegrityError mapped to AlreadyExists", says="every IntegrityError became 'already exists'")
class _EveryIntegrityErrorIsADuplicate(FeedRepository):
    """The blanket mapping: except IntegrityError: raise AlreadyExists, a foreign-key violation included."""

    @staticmethod
    async def create_post(session, **call):
        return await _in_savepoint(session, await _known_or_new(session, call["tag_names"]), blanket=True, **call)


@wrong(q4, "IntegrityError caught without a savepoint", says="outside a SAVEPOINT")
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


@wrong(q4, "insert(post_tags) with an empty list", says="ran with no values at all")
class _LinksInsertedFromAnEmptyList(FeedRepository):
    """Core inserts in a savepoint, but the links inserted even when there are none: an empty list of
    parameters runs the INSERT once, with no values."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        known = dict((await session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names)))).all()) if names else {}
        try:
            async with session.begin_nested():
                post_id = await session.scalar(
                    insert(Post).values(author_id=author_id, title=title, body=body, status="published",
                                        created_at=published_at, published_at=published_at).returning(Post.id)
                )
                for name in names:
                    if name not in known:
                        known[name] = await session.scalar(insert(Tag).values(name=name).returning(Tag.id))
                await session.execute(insert(post_tags), [{"post_id": post_id, "tag_id": known[n]} for n in names])
        except IntegrityError as exc:
            if constraint_kind(exc) == "unique":
                raise AlreadyExists(title) from exc
            raise
        return post_id


@wrong(q4, "check first, then a savepoint that converts nothing", says="a raw IntegrityError reached the caller")
class _CheckFirstSavepointNoConversion(FeedRepository):
    """SELECT the title first, then insert inside a savepoint with no except: a unique violation the SELECT
    could not see (a title committed in between) goes out raw. SQLite's locking hides it in the race."""

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        if await session.scalar(select(Post.id).where(Post.author_id == author_id, Post.title == title)):
            raise AlreadyExists(title)
        tags = await _known_or_new(session, tag_names)
        async with session.begin_nested():
            post = _new_post(session, author_id, title, body, published_at, tags)
        return post.id


@wrong(q3, "no flush: post.id returned before the INSERT", says="no id until it is flushed")
class _NoFlush(FeedRepository):
    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))} if names else {}
        post = _new_post(session, author_id, title, body, published_at)
        post.tags = [known.get(name) or Tag(name=name) for name in names]
        return post.id
