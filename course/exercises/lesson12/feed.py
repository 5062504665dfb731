"""12.q1 (one page) and 12.q2 (the cursor walk): scenarios and the rules that judge them."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from ...recorder import SqlLog, record
from ...schema import Post
from ..core import (
    Requirement,
    _AnswerRaised,
    _is_lazy_load,
)
from ..lesson03 import _offset_skipped
from ..rules import Attempt, BoundParameters, Probe, StatementBudget
from ..userfacts import mixed_keyset_directions
from .dataset import _feed_order, reference_feed
from .harness import SHAPE, NoLazyLoadsNamed, _feed, _read_page, _session, capstone
from .reference import FIELDS, PAGE_BUDGET, QUOTED_TAG, TAG


def _page_scenario(*, limit: int | None, tag: str | None = None):
    """``limit=None``: one page exactly as long as the feed, so only limit + 1 rows tell it is the last."""
    size = limit

    async def scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
        async with scratch.engine.connect() as conn:
            whole = await reference_feed(conn, tag)
            attempt.extra["archived"] = set(
                (await conn.execute(text("SELECT id FROM posts WHERE status <> 'published'"))).scalars()
            )
        limit = size or len(whole)
        attempt.expected = whole[:limit]
        attempt.extra["more"] = len(whole) > limit
        attempt.extra["limit"], attempt.extra["tag"] = limit, tag
        async with _session(scratch, attempt) as session:
            with record(show=False) as log:
                attempt.log = log
                returned = await _feed(answer, session, attempt, limit=limit, tag=tag)
            page = _read_page(attempt, returned)
            if page is not None:
                attempt.value, attempt.extra["next"] = page

    return scenario


def _items_rule(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if got is None:  # the agreed-shape rule names what came back instead
        return "not compared" if attempt.extra.get("shape") else "not compared: feed stopped before returning its items"
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


def _comments_counted_in_sql(attempt: Attempt) -> str | None:
    """The count comes from SQL, not from loading every comment of the page (right numbers, but
    each comment's row travels to Python only to be counted)."""
    for statement in attempt.log or ():
        sql = " ".join(statement.sql.lower().split())
        if statement.verb == "SELECT" and "from comments" in sql and "count(" not in sql:
            return (
                "the comments were loaded to be counted: `selectinload(Post.comments)` then `len()` fetches "
                "every comment row of the page only to count them. Count in SQL: a correlated scalar "
                "subquery, `select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()`"
            )
    return None


ITEMS = Probe(_items_rule, name="the items")
COUNTED_IN_SQL = Probe(_comments_counted_in_sql, name="comments counted in SQL")
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
            page = _read_page(attempt, returned)
            if page is not None:
                attempt.value, attempt.extra["next"] = page

    return scenario


def _quoted_tag_rule(attempt: Attempt) -> str | None:
    if "raised" in attempt.extra:
        # the error's own explanation says why (a syntax error: a quote that ended the string early)
        raised = attempt.extra["raised"]
        return f"with tag={QUOTED_TAG!r} {raised[0].lower()}{raised[1:]}"
    if attempt.value is None:
        return None
    if attempt.value or attempt.extra.get("next") is not None:
        return f"no post has the tag {QUOTED_TAG!r}: expected ([], None), got {len(attempt.value)} item(s)"
    return None


q1 = capstone(
    "12.q1",
    "The feed, one page",
    ("feed",),
    [
        Requirement(
            "first page",
            _page_scenario(limit=5),
            [SHAPE, ITEMS, NEXT, COUNTED_IN_SQL, StatementBudget(PAGE_BUDGET), NoLazyLoadsNamed()],
        ),
        Requirement(
            f"a tag's first page ({TAG!r})",
            _page_scenario(limit=4, tag=TAG),
            [SHAPE, ITEMS, NEXT, StatementBudget(PAGE_BUDGET), BoundParameters([TAG]), NoLazyLoadsNamed()],
        ),
        Requirement(
            f"a tag's posts in one full page ({TAG!r}, limit = its number of posts)",
            _page_scenario(limit=None, tag=TAG),
            [SHAPE, ITEMS, NEXT, NoLazyLoadsNamed()],
        ),
        Requirement(
            "a page of 200",
            _page_scenario(limit=200),
            [SHAPE, ITEMS, StatementBudget(PAGE_BUDGET), NoLazyLoadsNamed()],
        ),
        Requirement(
            "a tag with a quote in its name",
            _quoted_tag_scenario(),
            [SHAPE, Probe(_quoted_tag_rule, name="an empty page, the quote taken as text")],
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


def _walk_scenario(*, limit: int | None, tag: str | None = None, newcomer: bool = False):
    """``limit=None``: one page exactly as long as the feed, so only limit + 1 rows tell it is the last."""
    size = limit

    async def scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
        async with scratch.engine.connect() as conn:
            order = await _feed_order(conn, tag)
            everyone = len(await _feed_order(conn)) if tag is not None else len(order)
        limit = size or len(order)
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
                    page = _read_page(attempt, returned)
                    if page is None:
                        return
                    items, cursor = page
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


def _mixed_directions(attempt: Attempt) -> str | None:
    """A row-value cursor under an ORDER BY whose two keys go opposite ways."""
    return mixed_keyset_directions(attempt.extra.get("all_sql", ()), "published_at", "cursor")


def _twice_rule(attempt: Attempt) -> str | None:
    seen: dict[Any, int] = {}
    mixed = _mixed_directions(attempt)
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
                if mixed:
                    return f"post {pk} came back on page {number} after page {first}: {mixed}"
                if pk in attempt.extra.get("tied", set()):
                    return (
                        f"post {pk} came back on page {number} after page {first}: it shares its "
                        "published_at with other posts, and the cursor compared published_at alone (or <=). "
                        "Compare the pair strictly: tuple_(Post.published_at, Post.id) < tuple_(*cursor)"
                    )
                return f"post {pk} came back on page {number} after page {first}"
            seen[pk] = number
    return None


_PUBLISHED_BEFORE = re.compile(r"(?<![\w.])(?:\w+\.)?published_at\s*(<=?)", re.I)
_ID_BEFORE = re.compile(r"(?<![\w.])(?:\w+\.)?id\s*(<=?)", re.I)


def _and_keyset(attempt: Attempt) -> str | None:
    """The cursor as two comparisons joined by AND (``published_at <= :at AND id < :id``), read from the
    SQL: no pair comparison (a row value or the OR form), so an older post with a larger id is dropped."""
    for statement in attempt.extra.get("all_sql", ()):
        sql = statement.sql
        at, pk = _PUBLISHED_BEFORE.search(sql), _ID_BEFORE.search(sql)
        if at and pk and not re.search(r"\bOR\b", sql, re.I):
            return f"published_at {at.group(1)} at AND id {pk.group(1)} id"
    return None


def _and_keyset_message(written: str, skipped: list[int]) -> str:
    some = f" (post(s) {skipped[:3]} were skipped)" if skipped else ""
    return (
        f"your cursor condition is `{written}`: two comparisons joined by AND are not a keyset. It drops "
        "every older post whose id is larger than the cursor's id, though such a post comes after the cursor "
        f"in the feed's order{some}. Compare the pair: `tuple_(Post.published_at, Post.id) < tuple_(*cursor)`, or "
        "`or_(Post.published_at < at, and_(Post.published_at == at, Post.id < id))`"
    )


def _skipped_rule(attempt: Attempt) -> str | None:
    if "pages" not in attempt.extra or attempt.extra.get("endless"):
        return None
    got = set(attempt.value or [])
    missing = [pk for pk in attempt.expected if pk not in got]
    if not missing:
        return None
    written = _and_keyset(attempt)
    if written:
        return _and_keyset_message(written, missing)
    mixed = _mixed_directions(attempt)
    if mixed:
        return f"post(s) {missing[:3]} were skipped: {mixed}"
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
        mixed = _mixed_directions(attempt)
        if mixed:
            return f"the pages together are not newest first: {mixed}"
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
    Probe(_twice_rule, name="each post on one page only"),
    Probe(_skipped_rule, name="every post on some page"),
    Probe(_order_rule, name="newest first"),
    Probe(_full_pages_rule, name="full pages"),
    Probe(_ends_rule, name="the walk ends"),
    StatementBudget(PAGE_BUDGET),
    NoLazyLoadsNamed(),
]

q2 = capstone(
    "12.q2",
    "The feed, page after page",
    ("feed",),
    [
        Requirement("every post once, while new posts arrive (50 a page)", _walk_scenario(limit=50, newcomer=True),
                    WALK_RULES),
        Requirement(f"a tag's feed, 10 a page ({TAG!r})", _walk_scenario(limit=10, tag=TAG), WALK_RULES),
        Requirement(f"a tag's feed in one full page ({TAG!r}, limit = its number of posts)",
                    _walk_scenario(limit=None, tag=TAG), WALK_RULES),
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
