"""Lesson 06 exercises: relationship loader strategies.

Every answer is ``async def answer(session, **call)`` returning ORM objects. The
checker's ``observe`` then reads the relationships (and columns) the task asks
for, inside the lazy-load detector: a relationship the answer did not load counts
as a lazy load, and the statement budget catches an N+1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import (
    aliased,
    contains_eager,
    defer,
    joinedload,
    load_only,
    selectinload,
    with_loader_criteria,
)

from ..schema import Comment, Post, User
from .core import SESSION_FN, Counterexample, Exercise
from .rules import Attempt, NoLazyLoads, Probe, SameResult, StatementBudget, compared_values
from .userfacts import order_by_keys
from .verdict import RuleResult

# ---------------------------------------------------------------- helpers


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


def _grouped(rows: list[tuple[Any, ...]]) -> list[tuple[int, tuple[int, ...]]]:
    """(parent id, child id or NULL) rows of an outer join, ordered: [(parent, (children...)), ...]."""
    children: dict[int, list[int]] = {}
    for parent_id, child_id in rows:
        children.setdefault(parent_id, [])
        if child_id is not None:
            children[parent_id].append(child_id)
    return [(parent, tuple(ids)) for parent, ids in children.items()]


def _objects_of(returned: Any, cls: type) -> list[Any] | None:
    """The answer's objects as a list, or None when they are not ``cls`` instances."""
    if isinstance(returned, cls):
        items = [returned]
    elif isinstance(returned, (list, tuple)):
        items = list(returned)
    else:
        return None
    return items if all(isinstance(i, cls) for i in items) else None


def _kind_of(returned: Any) -> str:
    if isinstance(returned, (list, tuple)):
        return f"yours holds {type(returned[0]).__name__} items" if returned else "yours is empty"
    return f"you returned a {type(returned).__name__}; end with list((await session.scalars(stmt)).all())"


def _collection_not_loaded(objects: list[Any], key: str) -> dict[str, Any] | None:
    """A collection the answer did not load, named before anything touches it.

    Reading it would be a lazy load that needs SQL (MissingGreenlet in async code); naming the
    relationship says what to load. Many-to-ones are left to the lazy-load counter: one whose
    target is already in the session is answered from memory and is no mistake.
    """
    missing = [o for o in objects if key in sa_inspect(o).unloaded]
    if not missing:
        return None
    return {"not_loaded": f"{type(missing[0]).__name__}.{key}", "n": len(missing), "of": len(objects)}


def _not_loaded(attempt: Attempt) -> str | None:
    """A collection the answer left unloaded (the observer's marker), said with its loader option."""
    value = attempt.value
    if isinstance(value, dict) and "not_loaded" in value:
        name = value["not_loaded"]
        return (
            f"{name} was not loaded ({value['n']} of {value['of']} objects): reading it in async "
            "code needs SQL, so it raises MissingGreenlet (awaited one by one, it is an N+1). "
            f"Load it up front with a loader option, e.g. selectinload({name})"
        )
    return None


def _not_loaded_probe() -> Probe:
    return Probe(test=_not_loaded, name="the collections the task reads are loaded")


class _NoLazyLoadsOfUnloaded(NoLazyLoads):
    """No lazy loads, and none still to come: a collection left unloaded was not read yet (the
    observer stops before it), but the caller's first read of it is a lazy load. That is no pass:
    it fails with the cause its own rule names."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        unloaded = _not_loaded(attempt)
        if result.passed and unloaded:
            return RuleResult(self.name, False, unloaded)
        return result


def _users_without_posts_kept(attempt: Attempt) -> str | None:
    """Users 1 to 10 all come back, those without posts too: a users query that filters on posts
    (an inner join, most often one made for contains_eager) drops them."""
    queries = attempt.log.queries
    sql = queries[0].sql if queries else ""
    inner = re.search(r"(?<!OUTER )\bJOIN posts\b", sql) is not None
    fix = (
        "select the users alone and load the collection with `selectinload(User.posts)`, or keep the join "
        "for contains_eager as an outer one: `.outerjoin(User.posts)`"
    )
    if isinstance(attempt.value, dict):  # no rows to compare (a collection not loaded): no pass either
        return _not_loaded(attempt)
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list)):
        return None
    returned = set(_ids(got))
    dropped = [user_id for user_id, posts in want if not posts and user_id not in returned]
    if not dropped:
        return None
    ids = ", ".join(map(str, dropped))
    how = "your inner `.join(User.posts)` keeps only users who have a post" if inner else (
        "your users query filters on their posts, so it keeps only users who have one"
    )
    return f"{_number(len(dropped), 'users')} missing (ids {ids}), each one without posts: {how}. To keep them, {fix}"


def _objects_probe(cls: type, how: str) -> Probe:
    def test(attempt: Attempt) -> str | None:
        value = attempt.value
        if isinstance(value, dict) and "kind" in value:
            return f"return a list of {cls.__name__} objects ({value['kind']}): {how}"
        return None

    return Probe(test=test, name=f"{cls.__name__} objects")


def _ids(items: list[Any]) -> list[Any]:
    return [i[0] if isinstance(i, tuple) and i else i for i in items]


def _number(n: int, plural: str) -> str:
    """``1 user``, ``2 users``."""
    return f"{n} {plural[:-1] if n == 1 and plural.endswith('s') else plural}"


def _ids_word(items: list[Any]) -> str:
    return "id" if len(items) == 1 else "ids"


def _short(items: list[Any], n: int = 5) -> str:
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


class _SameObjects(SameResult):
    """The objects compared by id, in a sentence: no dict the observer used as a marker, no screen
    of tuples. A marker (wrong kind, a collection not loaded) is named by its own rule above."""

    def __init__(self, what: str, children: str = "", order_fix: str = "") -> None:
        super().__init__(ordered=True, what=what)
        self.children = children  # "posts" when each row is (id, (child ids...))
        self.order_fix = order_fix

    def judge(self, attempt: Attempt) -> RuleResult:
        if isinstance(attempt.value, dict):
            if attempt.error is not None and attempt.lazy_loads:
                return super().judge(attempt)
            return RuleResult(self.name, False, "not judged: see the first problem above")
        result = super().judge(attempt)
        got, want = attempt.value, attempt.expected
        if result.passed or not (isinstance(got, list) and isinstance(want, list)) or "ORDER BY" in result.message:
            return result
        got_ids, want_ids = _ids(got), _ids(want)
        if got_ids == want_ids:
            for g, w in zip(got, want, strict=False):
                if g == w:
                    continue
                if (self.children and isinstance(g[-1], tuple) and isinstance(w[-1], tuple)
                        and sorted(map(repr, g[-1])) == sorted(map(repr, w[-1]))):
                    mine, theirs = list(g[-1]), list(w[-1])
                    at = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
                    agree = f" (the first {at} agree)" if at > 1 else " (the first agrees)" if at == 1 else ""
                    result.message = (
                        f"the right {self.what}, but the {self.children} of {self.what[:-1]} {g[0]} are in "
                        f"another order: at position {at + 1} yours has {self.children[:-1]} {mine[at]} where "
                        f"id order has {theirs[at]}{agree}. Order them by id, ascending"
                    )
                else:
                    result.message = f"{self.what[:-1]} {g[0]} is not as expected: {g!r:.120} instead of {w!r:.120}"
                return result
        if sorted(map(repr, got_ids)) == sorted(map(repr, want_ids)):
            result.message = (
                f"the right {self.what}, in another order: yours start {_short(got_ids)}, expected "
                f"{_short(want_ids)}{self.order_fix}"
            )
            return result
        missing = [i for i in want_ids if i not in got_ids]
        extra = [i for i in got_ids if i not in want_ids]
        parts = []
        if missing:
            parts.append(f"{_number(len(missing), self.what)} missing ({_ids_word(missing)} {_short(missing)})")
        if extra:
            parts.append(
                f"{_number(len(extra), self.what)} that should not be there ({_ids_word(extra)} {_short(extra)})"
            )
        if len(set(map(repr, got_ids))) < len(got_ids):
            parts.append("some come back more than once")
        result.message = "; ".join(parts) or result.message
        return result


def _posts_query(attempt: Attempt) -> str:
    reads = [q.sql for q in attempt.log.queries if q.verb in ("SELECT", "WITH") and re.search(r"\bFROM posts\b", q.sql)]
    return reads[0] if reads else ""


def _tie_breaker_probe(first: str, fix: str) -> Probe:
    """The ORDER BY of the posts query ends with the id: the seed may have no tie where it matters."""

    def test(attempt: Attempt) -> str | None:
        keys = order_by_keys(_posts_query(attempt))
        # a joined eager load of a collection with LIMIT wraps the query: the outer keys read anon_1.id
        if not keys or any(re.search(r"\b(?:posts|anon_\d+)[._]id\b", k) for k in keys):
            return None
        return (
            f"your ORDER BY has no tie-breaker: posts with the same {first} come back in any order, so "
            f"which ones make the page, and in what order, is luck. Add the id as the last key: {fix}"
        )

    return Probe(test=test, name="ties broken by id")


def _sort_column_probe(column: str, instead: str, meaning: str, task: str, fix: str) -> Probe:
    """The posts sorted by ``instead`` (another timestamp) where the task sorts by ``column``."""

    def test(attempt: Attempt) -> str | None:
        keys = order_by_keys(_posts_query(attempt))
        if keys and instead in keys[0] and not any(column in k for k in keys):
            return (
                f"your ORDER BY uses {instead} ({meaning}); {task} is by {column}: {fix}"
            )
        return None

    return Probe(test=test, name=f"{instead} not taken for {column}")


def _newest_first_probe(column: str, fix: str) -> Probe:
    def test(attempt: Attempt) -> str | None:
        keys = order_by_keys(_posts_query(attempt))
        if keys and column in keys[0] and "desc" not in keys[0]:
            return f"your ORDER BY sorts {column} ascending, oldest first: newest first is {fix}"
        return None

    return Probe(test=test, name="newest first")


def _published_probe(how: str) -> Probe:
    def test(attempt: Attempt) -> str | None:
        statements = [q for q in attempt.log.queries if re.search(r"\bFROM posts\b", q.sql)]
        if not statements:
            return None
        for q in statements:
            params = q.params
            values = list(params.values()) if isinstance(params, dict) else list(params or ())
            if "published" in values or "'published'" in q.sql:
                return None
        return (
            f"your posts query never filters on the status, so drafts and archived posts are among yours: {how}"
        )

    return Probe(test=test, name="published posts only")


# ---------------------------------------------------------------- q1


async def _q1_solution(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.id <= 10).options(selectinload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).all())


async def _q1_expected(conn: AsyncConnection) -> list[tuple[int, tuple[int, ...]]]:
    rows = await _rows(
        conn,
        "SELECT u.id, p.id FROM users u LEFT JOIN posts p ON p.author_id = u.id "
        "WHERE u.id BETWEEN 1 AND 10 ORDER BY u.id, p.id",
    )
    return _grouped(rows)


async def _q1_observe(session: AsyncSession, returned: Any) -> Any:
    users = _objects_of(returned, User)
    if users is None:
        return {"kind": _kind_of(returned)}
    if (not_loaded := _collection_not_loaded(users, "posts")) is not None:
        return not_loaded
    return [(u.id, tuple(p.id for p in u.posts)) for u in users]


async def _q1_n_plus_1(session: AsyncSession) -> list[User]:
    users = list((await session.scalars(select(User).where(User.id <= 10).order_by(User.id))).all())
    for user in users:
        await user.awaitable_attrs.posts  # one SELECT per user
    return users


async def _q1_no_loader(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).where(User.id <= 10).order_by(User.id))).all())


async def _q1_joined_no_unique(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.id <= 10).options(joinedload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).all())


async def _q1_off_by_one(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.id < 10).options(selectinload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).all())


async def _q1_from_two(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.id.between(2, 10)).options(selectinload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).all())


async def _q1_joined_unique(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.id.between(1, 10)).options(joinedload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).unique().all())


async def _q1_inner_contains_eager(session: AsyncSession) -> list[User]:
    stmt = (
        select(User).join(User.posts).where(User.id <= 10).options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


def _q1_boundary(attempt: Attempt) -> str | None:
    """'Ids 1 to 10' with a comparison that leaves an end out (or takes one more): named from the SQL."""
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list)) or got == want:
        return None
    got_ids, want_ids = _ids(got), _ids(want)
    missing = [i for i in want_ids if i not in got_ids]
    extra = [i for i in got_ids if i not in want_ids]
    compared = set(compared_values(attempt, "id"))
    if missing == [10] and not extra and ("<", 10) in compared:
        return (
            "user 10 is missing: 'ids 1 to 10' includes 10, and `User.id < 10` stops at 9. Use "
            "`User.id <= 10` (or `User.id.between(1, 10)`, which includes both ends)"
        )
    if missing == [1] and not extra and (">", 1) in compared:
        return (
            "user 1 is missing: 'ids 1 to 10' includes 1, and `User.id > 1` starts at 2. Use "
            "`User.id >= 1` (or `User.id.between(1, 10)`, which includes both ends)"
        )
    if extra == [11] and not missing and ("<=", 11) in compared:
        return "user 11 should not be there: 'ids 1 to 10' ends at 10. Use `User.id <= 10`"
    return None


q1 = Exercise(
    id="06.q1",
    title="Users 1 to 10 with their posts",
    kind=SESSION_FN,
    solution_answer=_q1_solution,
    expected=_q1_expected,
    observe=_q1_observe,
    rules=[_objects_probe(User, "select(User)..."), _NoLazyLoadsOfUnloaded(), _not_loaded_probe(),
           Probe(test=_q1_boundary, name="no off-by-one comparison at the ends of ids 1 to 10 (< 10, > 1, <= 11)"),
           Probe(test=_users_without_posts_kept, name="users without posts kept"),
           _SameObjects("users", "posts"), StatementBudget(2)],
    hints=[
        "Select the User objects with ids 1 to 10, ordered by id, and load their posts in the same "
        "call: a loader option on the statement, .options(...).",
        "A collection with many rows per parent: selectinload(User.posts) costs one extra SELECT ... "
        "WHERE posts.author_id IN (...), whatever the number of users.",
        "select(User).where(User.id <= 10).options(selectinload(User.posts)).order_by(User.id), then "
        "return list((await session.scalars(stmt)).all()).",
    ],
    why="One loader option turns 1 + N round trips (or a MissingGreenlet) into a fixed number of statements: "
    "two with selectinload(), one with joinedload() (plus unique()).",
    counterexamples=[
        Counterexample("N+1 with awaitable_attrs", _q1_n_plus_1, "N+1"),
        Counterexample("no loader option", _q1_no_loader, "User.posts was not loaded"),
        Counterexample("joinedload without unique()", _q1_joined_no_unique, "unique()"),
        Counterexample("users 1 to 9", _q1_off_by_one, "user 10 is missing: 'ids 1 to 10' includes 10"),
        Counterexample("users 2 to 10 (no id 0 to leave out)", _q1_from_two, "1 user missing (id 1)"),
        Counterexample(
            "an inner join for contains_eager", _q1_inner_contains_eager,
            "each one without posts: your inner .join(User.posts) keeps only users who have a post",
        ),
    ],
)


# ---------------------------------------------------------------- q2


async def _q2_solution(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.status == "published")
        .options(joinedload(Post.author, innerjoin=True), selectinload(Post.tags))
        .order_by(Post.published_at.desc(), Post.id.desc())
        .limit(20)
    )
    return list((await session.scalars(stmt)).all())


async def _q2_expected(conn: AsyncConnection) -> list[tuple[int, str, tuple[str, ...]]]:
    posts = await _rows(
        conn,
        "SELECT p.id, u.username FROM posts p JOIN users u ON u.id = p.author_id "
        "WHERE p.status = 'published' ORDER BY p.published_at DESC, p.id DESC LIMIT 20",
    )
    tags: dict[int, list[str]] = defaultdict(list)
    ids = ", ".join(str(p[0]) for p in posts)
    for post_id, name in await _rows(
        conn,
        f"SELECT pt.post_id, t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id "
        f"WHERE pt.post_id IN ({ids}) ORDER BY t.id",
    ):
        tags[post_id].append(name)
    return [(post_id, username, tuple(tags[post_id])) for post_id, username in posts]


async def _q2_observe(session: AsyncSession, returned: Any) -> Any:
    posts = _objects_of(returned, Post)
    if posts is None:
        return {"kind": _kind_of(returned)}
    if (not_loaded := _collection_not_loaded(posts, "tags")) is not None:
        return not_loaded
    return [(p.id, p.author.username, tuple(t.name for t in p.tags)) for p in posts]


def _q2_newest() -> Any:
    return select(Post).where(Post.status == "published").order_by(Post.published_at.desc(), Post.id.desc()).limit(20)


async def _q2_joined_tags(session: AsyncSession) -> list[Post]:
    stmt = _q2_newest().options(joinedload(Post.author), joinedload(Post.tags))
    return list((await session.scalars(stmt)).all())


async def _q2_no_tags_loader(session: AsyncSession) -> list[Post]:
    stmt = _q2_newest().options(joinedload(Post.author))
    return list((await session.scalars(stmt)).all())


async def _q2_tags_in_a_loop(session: AsyncSession) -> list[Post]:
    posts = list((await session.scalars(_q2_newest().options(joinedload(Post.author)))).all())
    for post in posts:
        await post.awaitable_attrs.tags
    return posts


async def _q2_drafts_too(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .options(joinedload(Post.author), selectinload(Post.tags))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(20)
    )
    return list((await session.scalars(stmt)).all())


async def _q2_no_tie_breaker(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).where(Post.status == "published")
        .options(joinedload(Post.author), selectinload(Post.tags))
        .order_by(Post.published_at.desc()).limit(20)
    )
    return list((await session.scalars(stmt)).all())


async def _q2_by_created_at(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).where(Post.status == "published")
        .options(joinedload(Post.author), selectinload(Post.tags))
        .order_by(Post.created_at.desc(), Post.id.desc()).limit(20)
    )
    return list((await session.scalars(stmt)).all())


async def _q2_joined_both(session: AsyncSession) -> list[Post]:
    """joinedload of the tags collection too: SQLAlchemy wraps the limited query in a subquery."""
    stmt = _q2_newest().options(joinedload(Post.author), joinedload(Post.tags))
    return list((await session.scalars(stmt)).unique().all())


async def _q2_selectin_both(session: AsyncSession) -> list[Post]:
    stmt = _q2_newest().options(selectinload(Post.author), selectinload(Post.tags))
    return list((await session.scalars(stmt)).all())


q2 = Exercise(
    id="06.q2",
    title="The 20 newest published posts with author and tags",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    observe=_q2_observe,
    rules=[_objects_probe(Post, "select(Post)..."), _NoLazyLoadsOfUnloaded(), _not_loaded_probe(),
           _published_probe(".where(Post.status == \"published\")"),
           _sort_column_probe(
               "published_at", "created_at", "when a post was written", "the front page",
               "`.order_by(Post.published_at.desc(), Post.id.desc())`",
           ),
           _tie_breaker_probe("published_at", ".order_by(Post.published_at.desc(), Post.id.desc())"),
           _SameObjects("posts"), StatementBudget(3)],
    hints=[
        "Two relationships to load: Post.author (one user per post) and Post.tags (a collection, "
        "many-to-many). Each can have its own loader option inside one .options(...).",
        "joinedload suits the many-to-one author (one JOIN, no extra rows); selectinload suits the "
        "tags collection (no row multiplication, no unique() needed). Many posts share the same "
        "published_at: order by Post.published_at.desc(), then Post.id.desc().",
        "select(Post).where(Post.status == 'published').options(joinedload(Post.author), "
        "selectinload(Post.tags)).order_by(Post.published_at.desc(), Post.id.desc()).limit(20)",
    ],
    why="A loader option per relationship (a JOIN suits a to-one, an IN query a collection) keeps the number "
    "of statements fixed, however many posts the page shows.",
    counterexamples=[
        Counterexample("joinedload on the tags, no unique()", _q2_joined_tags, "unique()"),
        Counterexample("no loader for the tags", _q2_no_tags_loader, "Post.tags was not loaded"),
        Counterexample("tags awaited in a loop", _q2_tags_in_a_loop, "N+1"),
        Counterexample("drafts included, newest by created_at", _q2_drafts_too, "drafts and archived posts"),
        Counterexample("no id tie-breaker", _q2_no_tie_breaker, "no tie-breaker"),
        Counterexample(
            "newest by created_at", _q2_by_created_at,
            "your ORDER BY uses created_at (when a post was written); the front page is by published_at",
        ),
    ],
)


# ---------------------------------------------------------------- q3

Q3_POSTS = ({"post_id": 144}, {"post_id": 55})


async def _q3_solution(session: AsyncSession, post_id: int) -> Post:
    stmt = (
        select(Post)
        .where(Post.id == post_id)
        .options(selectinload(Post.comments).joinedload(Comment.author))
    )
    return (await session.scalars(stmt)).one()


async def _q3_expected(conn: AsyncConnection, post_id: int) -> Any:
    rows = await _rows(
        conn,
        "SELECT c.id, u.username FROM comments c JOIN users u ON u.id = c.author_id "
        "WHERE c.post_id = :post_id ORDER BY c.id",
        post_id=post_id,
    )
    return (post_id, tuple(rows))


async def _q3_observe(session: AsyncSession, returned: Any, post_id: int) -> Any:
    if not isinstance(returned, Post):
        kind = "a list" if isinstance(returned, (list, tuple)) else f"a {type(returned).__name__}"
        return {"kind": f"{kind}, not one Post"}
    return (returned.id, tuple((c.id, c.author.username) for c in returned.comments))


def _q3_probe_test(attempt: Attempt) -> str | None:
    value = attempt.value
    if isinstance(value, dict) and "kind" in value:
        return f"return the one Post object ({value['kind']}), e.g. (await session.scalars(stmt)).one()"
    return None


async def _q3_comments_only(session: AsyncSession, post_id: int) -> Post:
    stmt = select(Post).where(Post.id == post_id).options(selectinload(Post.comments))
    return (await session.scalars(stmt)).one()


async def _q3_list(session: AsyncSession, post_id: int) -> list[Post]:
    stmt = select(Post).where(Post.id == post_id).options(selectinload(Post.comments).joinedload(Comment.author))
    return list((await session.scalars(stmt)).all())


async def _q3_two_options(session: AsyncSession, post_id: int) -> Post:
    stmt = select(Post).where(Post.id == post_id).options(selectinload(Post.comments), selectinload(Comment.author))
    return (await session.scalars(stmt)).one()


async def _q3_authors_in_a_loop(session: AsyncSession, post_id: int) -> Post:
    stmt = select(Post).where(Post.id == post_id).options(selectinload(Post.comments))
    post = (await session.scalars(stmt)).one()
    for comment in post.comments:
        await comment.awaitable_attrs.author
    return post


async def _q3_get(session: AsyncSession, post_id: int) -> Post:
    post = await session.get(Post, post_id)
    assert post is not None
    await post.awaitable_attrs.comments
    return post


async def _q3_all_joined(session: AsyncSession, post_id: int) -> Post:
    stmt = select(Post).where(Post.id == post_id).options(joinedload(Post.comments).joinedload(Comment.author))
    return (await session.scalars(stmt)).unique().one()


async def _q3_get_with_options(session: AsyncSession, post_id: int) -> Post | None:
    return await session.get(Post, post_id, options=[selectinload(Post.comments).joinedload(Comment.author)])


class _NoLazyLoadsAlongThePath(NoLazyLoads):
    """Name the relationship: the comments (nothing loaded them) or each comment's author."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if result.passed:
            return result
        if any(re.search(r"\bFROM comments\b", q.sql) for q in attempt.log.queries):
            result.message = (
                "the comments were loaded, but each comment's author (Comment.author) was loaded lazily, one "
                "query per comment: chain a loader along the path, "
                "selectinload(Post.comments).joinedload(Comment.author)"
            )
        else:
            result.message = (
                "post.comments was loaded lazily (and then each Comment.author): load the whole path up "
                "front, selectinload(Post.comments).joinedload(Comment.author)"
            )
        return result


q3 = Exercise(
    id="06.q3",
    title="A post, its comments and each comment's author",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    observe=_q3_observe,
    calls=Q3_POSTS,
    rules=[Probe(test=_q3_probe_test, name="one Post object"), _NoLazyLoadsAlongThePath(),
           _SameObjects("comments"), StatementBudget(3)],
    hints=[
        "Load the post by id, its comments, and for every comment its author: a path of two "
        "relationships, Post.comments then Comment.author.",
        "Loader options chain along a path: selectinload(Post.comments).<loader>(Comment.author). "
        "A separate selectinload(Comment.author) does not start from Post, the query's entity.",
        "select(Post).where(Post.id == post_id).options(selectinload(Post.comments)"
        ".joinedload(Comment.author)), then (await session.scalars(stmt)).one().",
    ],
    why="A chained option follows the path: the comments' authors arrive with the comments, not one by one.",
    counterexamples=[
        Counterexample("comments loaded, authors not", _q3_comments_only, "each comment's author (Comment.author)"),
        Counterexample("a list, not the Post", _q3_list, "a list, not one post"),
        Counterexample("two separate options", _q3_two_options, "does not apply"),
        Counterexample("authors awaited in a loop", _q3_authors_in_a_loop, "N+1"),
        Counterexample("session.get, comments awaited", _q3_get, "loaded lazily"),
    ],
)


# ---------------------------------------------------------------- q4

_BODY = re.compile(r"\bbody\b")


def _q4_probe_test(attempt: Attempt) -> str | None:
    fetched = [s for s in attempt.log.queries if _BODY.search(s.sql)]
    if fetched:
        return (
            f"{_number(len(fetched), 'statements')} fetched the body column: keep it out with "
            "load_only(Post.title, Post.published_at) or defer(Post.body)"
        )
    return None


async def _q4_solution(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.status == "published")
        .options(load_only(Post.title, Post.published_at))
        .order_by(Post.published_at.desc(), Post.id.desc())
        .limit(100)
    )
    return list((await session.scalars(stmt)).all())


async def _q4_expected(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    return await _rows(
        conn,
        "SELECT id, title FROM posts WHERE status = 'published' "
        "ORDER BY published_at DESC, id DESC LIMIT 100",
    )


async def _q4_observe(session: AsyncSession, returned: Any) -> Any:
    posts = _objects_of(returned, Post)
    if posts is None:
        return {"kind": _kind_of(returned)}
    # the page shows title and date: one not loaded would be one more query per post
    unloaded = sorted({key for p in posts for key in sa_inspect(p).unloaded} & {"title", "published_at"})
    if unloaded:
        return {"unloaded": unloaded}
    return [(p.id, p.title) for p in posts]


def _q4_loaded_test(attempt: Attempt) -> str | None:
    value = attempt.value
    if isinstance(value, dict) and "unloaded" in value:
        names = " and ".join(f"post.{name}" for name in value["unloaded"])
        return (
            f"{names} not loaded: the page reads it, so each post would take one more query "
            "(defer only the body, or name what you need in load_only)"
        )
    return None


def _q4_newest() -> Any:
    return select(Post).where(Post.status == "published").order_by(Post.published_at.desc(), Post.id.desc()).limit(100)


async def _q4_whole_posts(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q4_newest())).all())


async def _q4_columns(session: AsyncSession) -> Any:
    stmt = (
        select(Post.id, Post.title, Post.published_at)
        .where(Post.status == "published")
        .order_by(Post.published_at.desc(), Post.id.desc())
        .limit(100)
    )
    return (await session.execute(stmt)).all()


async def _q4_wrong_column(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q4_newest().options(defer(Post.title)))).all())


async def _q4_title_only(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q4_newest().options(load_only(Post.title)))).all())


async def _q4_no_tie_breaker(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).where(Post.status == "published").options(load_only(Post.title, Post.published_at))
        .order_by(Post.published_at.desc()).limit(100)
    )
    return list((await session.scalars(stmt)).all())


async def _q4_oldest_first(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).where(Post.status == "published").options(load_only(Post.title, Post.published_at))
        .order_by(Post.published_at, Post.id).limit(100)
    )
    return list((await session.scalars(stmt)).all())


async def _q4_by_created_at(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).where(Post.status == "published").options(load_only(Post.title, Post.published_at))
        .order_by(Post.created_at.desc(), Post.id.desc()).limit(100)
    )
    return list((await session.scalars(stmt)).all())


async def _q4_defer_body(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q4_newest().options(defer(Post.body)))).all())


q4 = Exercise(
    id="06.q4",
    title="Post titles without their bodies",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    observe=_q4_observe,
    rules=[
        _objects_probe(Post, "select(Post) with a column loader option"),
        NoLazyLoads(),
        Probe(test=_q4_probe_test, name="body not fetched"),
        Probe(test=_q4_loaded_test, name="title and date loaded"),
        _published_probe(".where(Post.status == \"published\")"),
        _sort_column_probe(
            "published_at", "created_at", "when a post was written", "the list of the newest published posts",
            "`.order_by(Post.published_at.desc(), Post.id.desc())`",
        ),
        _newest_first_probe("published_at", ".order_by(Post.published_at.desc(), Post.id.desc())"),
        _tie_breaker_probe("published_at", ".order_by(Post.published_at.desc(), Post.id.desc())"),
        _SameObjects("posts", order_fix=": newest published first, .order_by(Post.published_at.desc(), Post.id.desc())"),
        StatementBudget(1),
    ],
    hints=[
        "You need Post objects (a page template wants post.title, post.published_at), but not the "
        "0.5-2.5 KB body of each. Column loader options decide which columns a select(Post) fetches.",
        "load_only(Post.title, Post.published_at) fetches those (plus the primary key); "
        "defer(Post.body) fetches everything but the body. Order by published_at, newest first, "
        "then id, highest first.",
        "select(Post).where(Post.status == 'published').options(load_only(Post.title, "
        "Post.published_at)).order_by(Post.published_at.desc(), Post.id.desc()).limit(100)",
    ],
    why="A list page needs titles, not bodies: load_only/defer keep kilobytes per row off the wire.",
    counterexamples=[
        Counterexample("whole Post objects", _q4_whole_posts, "fetched the body"),
        Counterexample("columns instead of objects", _q4_columns, "Post objects"),
        Counterexample("deferred the title instead", _q4_wrong_column, "post.title not loaded"),
        Counterexample("load_only without the date", _q4_title_only, "post.published_at not loaded"),
        Counterexample("no id tie-breaker", _q4_no_tie_breaker, "no tie-breaker"),
        Counterexample("oldest first", _q4_oldest_first, "oldest first: newest first is"),
        Counterexample(
            "newest by created_at", _q4_by_created_at,
            "your ORDER BY uses created_at (when a post was written); the list of the newest published posts",
        ),
    ],
)


# ---------------------------------------------------------------- q5

_USERS_IN_FROM = re.compile(r"\b(?:FROM|JOIN)\s+users\b", re.I)
_USERS_IN_EXISTS = re.compile(r"\bEXISTS\s*\(\s*SELECT\b[^()]*?\bFROM users\b", re.I | re.S)
_USERS_IN_IN = re.compile(r"\bIN\s*\(\s*SELECT\b[^()]*?\bFROM users\b", re.I | re.S)
_OWN_USERS_JOIN = re.compile(r"\bJOIN users\b(?!\s+AS\s+users_\d)", re.I)  # not joinedload's users_1
_LOADER_USERS_JOIN = re.compile(r"\bJOIN users AS users_\d", re.I)
_USERS_BY_KEYS = re.compile(r"\bFROM users\b.*\bIN\s*\(", re.I | re.S)  # selectinload's second statement


def _q5_filter(sql: str) -> str:
    """How the posts query reaches users to filter on the country: "join", "exists", "in" or ""."""
    if _USERS_IN_EXISTS.search(sql):
        return "exists"
    if _USERS_IN_IN.search(sql):
        return "in"
    return "join" if _OWN_USERS_JOIN.search(sql) else ""


_Q5_FILTERS = {
    "exists": "`.has()` adds a correlated EXISTS subquery over `users`",
    "in": "`in_(select(User.id)...)` adds an IN subquery over `users`",
}
_Q5_ONE_JOIN = (
    "join the author (`.join(Post.author)`), filter on `User.country` there, and fill `.author` from that "
    "same join with `.options(contains_eager(Post.author))`"
)


def _q5_probe_test(attempt: Attempt) -> str | None:
    """One statement in which users appears once: name what brought it in a second time."""
    queries = attempt.log.queries
    if not queries:
        return None
    sql = queries[0].sql
    how = _q5_filter(sql)
    if len(_USERS_IN_FROM.findall(sql)) > 1 and _LOADER_USERS_JOIN.search(sql):
        yours = (
            "an EXISTS subquery (.has())" if how == "exists"
            else "an IN subquery" if how == "in"
            else "the join"
        )
        return (
            f"the users table appears twice in your statement: joinedload() adds its own join "
            f"(users_1) next to {yours} you wrote; join once, filter on that join, and let "
            "contains_eager(Post.author) fill .author from it"
        )
    selectin = any(_USERS_BY_KEYS.search(q.sql) for q in queries[1:])
    if selectin and how in _Q5_FILTERS:
        return (
            f"two statements, and `users` in both: {_Q5_FILTERS[how]}, and `selectinload()` reads the "
            "authors again in a second statement. The task wants one statement in which `users` appears "
            f"exactly once: {_Q5_ONE_JOIN}"
        )
    if selectin and how == "join":
        return (
            "your join already brings the author's columns, but `selectinload()` reads `users` again in a "
            "second statement: the task wants one statement in which `users` appears exactly once. Fill "
            "`.author` from your join instead: `.options(contains_eager(Post.author))`"
        )
    return None


async def _q5_solution(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .join(Post.author)
        .where(User.country == "JP")
        .options(contains_eager(Post.author))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


async def _q5_expected(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    return await _rows(
        conn,
        "SELECT p.id, u.username, u.country FROM posts p JOIN users u ON u.id = p.author_id "
        "WHERE u.country = 'JP' ORDER BY p.created_at DESC, p.id DESC LIMIT 30",
    )


async def _q5_observe(session: AsyncSession, returned: Any) -> Any:
    posts = _objects_of(returned, Post)
    if posts is None:
        return {"kind": _kind_of(returned)}
    return [(p.id, p.author.username, p.author.country) for p in posts]


def _q5_japan() -> Any:
    return select(Post).join(Post.author).where(User.country == "JP").order_by(Post.created_at.desc(), Post.id.desc()).limit(30)


async def _q5_join_and_joinedload(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q5_japan().options(joinedload(Post.author)))).all())


async def _q5_join_no_loader(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q5_japan())).all())


async def _q5_has_and_joinedload(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.author.has(User.country == "JP"))
        .options(joinedload(Post.author))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


async def _q5_in_and_joinedload(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.author_id.in_(select(User.id).where(User.country == "JP")))
        .options(joinedload(Post.author))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


async def _q5_explicit_on(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .join(User, User.id == Post.author_id)
        .where(User.country == "JP")
        .options(contains_eager(Post.author))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


async def _q5_has_and_selectin(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.author.has(User.country == "JP"))
        .options(selectinload(Post.author))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


async def _q5_join_and_selectin(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q5_japan().options(selectinload(Post.author)))).all())


async def _q5_has_no_loader(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .where(Post.author.has(User.country == "JP"))
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(30)
    )
    return list((await session.scalars(stmt)).all())


class _NoLazyAuthor(NoLazyLoads):
    """Your join already brings the author: the fix is contains_eager, not another loader."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        sql = _posts_query(attempt)
        if result.passed:
            return result
        how = _q5_filter(sql)
        if how == "join" and len(_USERS_IN_FROM.findall(sql)) == 1:
            result.message = (
                "post.author was loaded lazily, one query per post, although your join already brings the "
                "author's columns: tell the ORM to fill .author from that join, "
                ".options(contains_eager(Post.author))"
            )
        elif how in _Q5_FILTERS and not _LOADER_USERS_JOIN.search(sql):
            result.message = (
                "post.author was loaded lazily (a query per author; in async code, a MissingGreenlet error): "
                f"{_Q5_FILTERS[how]}, which filters but fills "
                "nothing, and a loader beside it (`joinedload()`, `selectinload()`) would bring `users` in a "
                f"second time. In one statement that names `users` once: {_Q5_ONE_JOIN}"
            )
        return result


async def _q5_no_tie_breaker(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post).join(Post.author).where(User.country == "JP")
        .options(contains_eager(Post.author)).order_by(Post.created_at.desc()).limit(30)
    )
    return list((await session.scalars(stmt)).all())


q5 = Exercise(
    id="06.q5",
    title="Posts by authors from Japan, author from the same join",
    kind=SESSION_FN,
    solution_answer=_q5_solution,
    expected=_q5_expected,
    observe=_q5_observe,
    rules=[
        _objects_probe(Post, "select(Post).join(Post.author)..."),
        _NoLazyAuthor(),
        _tie_breaker_probe("created_at", ".order_by(Post.created_at.desc(), Post.id.desc())"),
        _SameObjects("posts"),
        Probe(test=_q5_probe_test, name="one statement, users named in it once"),
        StatementBudget(1),
    ],
    hints=[
        "You must join users anyway, to filter on User.country. The question is who fills post.author: "
        "a loader that adds its own join, or the join you already wrote.",
        "contains_eager(Post.author) tells the ORM: the author's columns are already in this "
        "statement's join, read them from there.",
        "select(Post).join(Post.author).where(User.country == 'JP').options(contains_eager(Post.author))"
        ".order_by(Post.created_at.desc(), Post.id.desc()).limit(30)",
    ],
    why="contains_eager reuses the join you filter on: one join, one statement, author filled.",
    counterexamples=[
        Counterexample("join plus joinedload", _q5_join_and_joinedload, "appears twice"),
        Counterexample("join, no loader", _q5_join_no_loader, "contains_eager(Post.author))"),
        Counterexample("contains_eager, no id tie-breaker", _q5_no_tie_breaker, "no tie-breaker"),
        Counterexample(
            "has() plus selectinload", _q5_has_and_selectin,
            "`.has()` adds a correlated EXISTS subquery over `users`, and `selectinload()` reads the authors again",
        ),
        Counterexample("join plus selectinload", _q5_join_and_selectin, "reads `users` again in a second statement"),
        Counterexample("has(), no loader", _q5_has_no_loader, "which filters but fills nothing"),
        Counterexample("has() plus joinedload", _q5_has_and_joinedload, "EXISTS subquery (.has())"),
        Counterexample("in_() plus joinedload", _q5_in_and_joinedload, "an IN subquery"),
    ],
)


# ---------------------------------------------------------------- q6


async def _q6_solution(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_expected(conn: AsyncConnection) -> list[tuple[int, tuple[int, ...]]]:
    rows = await _rows(
        conn,
        "SELECT u.id, p.id FROM users u "
        "LEFT JOIN posts p ON p.author_id = u.id AND p.status = 'published' "
        "WHERE u.country = 'NL' ORDER BY u.id, p.id",
    )
    return _grouped(rows)


async def _q6_observe(session: AsyncSession, returned: Any) -> Any:
    users = _objects_of(returned, User)
    if users is None:
        return {"kind": _kind_of(returned)}
    return [(u.id, tuple(p.id for p in u.posts)) for u in users]


async def _q6_inner_join(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .join(User.posts)
        .where(User.country == "NL", Post.status == "published")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_filter_in_where(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts)
        .where(User.country == "NL", Post.status == "published")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_every_post(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts)
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_no_unique(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).all())


async def _q6_selectin_criteria(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .where(User.country == "NL")
        .options(selectinload(User.posts.and_(Post.status == "published")))
        .order_by(User.id)
    )
    return list((await session.scalars(stmt)).all())


async def _q6_posts_desc(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id.desc())
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_posts_unordered(session: AsyncSession) -> list[User]:
    """The learner trial's answer: SQLite returns each user's posts in id order by luck."""
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_posts_by_published_at(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.published_at, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


def _published_collections(*, dropped_why: Any, extra_why: str, check_repeats: bool = False) -> Any:
    """Judge [(user id, (post ids...))]: every user kept, .posts holding only published posts.

    ``dropped_why`` is the explanation for users gone missing, or a function of the attempt that
    returns it (said for the form the answer wrote)."""

    def test(attempt: Attempt) -> str | None:
        got, want = attempt.value, attempt.expected
        if not isinstance(got, list) or not isinstance(want, list):
            return _not_loaded(attempt)  # .posts never loaded: nothing to judge, and no pass
        wanted = dict(want)
        returned = [user_id for user_id, _ in got]
        dropped = [user_id for user_id, posts in want if not posts and user_id not in returned]
        twice = check_repeats and len(set(returned)) < len(returned)
        if dropped:
            repeats = (
                " (and the join repeats each remaining user once per published post)" if twice else ""
            )
            return (
                f"{_number(len(dropped), 'users')} without a published post {'is' if len(dropped) == 1 else 'are'} "
                f"missing (e.g. user {dropped[0]}){repeats}: "
                + (dropped_why(attempt) if callable(dropped_why) else dropped_why)
            )
        if check_repeats and len(set(returned)) < len(returned):
            return "some users come back more than once: a join to posts repeats each user once per post"
        extra = [user_id for user_id, posts in got if user_id in wanted and set(posts) - set(wanted[user_id])]
        if extra:
            return (
                f"{_number(len(extra), 'users')} {'has' if len(extra) == 1 else 'have'} posts in .posts that are not "
                f"published (e.g. user {extra[0]}): "
                + extra_why
            )
        return None

    return test


_Q6_DROPPED = "an inner join, or a WHERE condition on Post, drops them; outer join with the condition in ON"
_Q6_ONE_STATEMENT = (
    "outer-join the published posts, the condition in the ON clause "
    "(`.outerjoin(User.posts.and_(Post.status == \"published\"))`), and fill `.posts` from that join with "
    "`.options(contains_eager(User.posts))`, then `.unique()` on the result"
)
_q6_joined_collections = _published_collections(
    dropped_why=_Q6_DROPPED,
    extra_why="contains_eager fills the collection with whatever rows the join brought, so the join "
    "itself must keep only published posts",
)
_q6_loaded_collections = _published_collections(
    dropped_why=_Q6_DROPPED,
    extra_why="your loader fills .posts with every post of the user. Put the status condition in the ON "
    "clause of an outer join and fill .posts from that join with `contains_eager(User.posts)`",
)


def _q6_joins_posts(attempt: Attempt) -> bool:
    queries = attempt.log.queries
    return bool(queries) and re.search(r"\bJOIN posts\b", queries[0].sql) is not None


def _q6_collections_test(attempt: Attempt) -> str | None:
    """Every user, only published posts: the fix named for the way .posts was filled."""
    test = _q6_joined_collections if _q6_joins_posts(attempt) else _q6_loaded_collections
    return test(attempt)


def _q6_one_statement(attempt: Attempt) -> str | None:
    """The posts in a second statement (selectinload): the task asks for one, filled from a join."""
    if any(re.search(r"\bFROM posts\b.*\bIN\s*\(", q.sql, re.S) for q in attempt.log.queries[1:]):
        return (
            "`selectinload()` loads the posts in a second statement, and the task asks for one: " + _Q6_ONE_STATEMENT
        )
    return None


_POSTS_JOIN = re.compile(r"\bJOIN\s+posts(?:\s+AS\s+(\w+))?\b", re.I)


def _q6_posts_order(attempt: Attempt) -> str | None:
    """contains_eager fills .posts in the order the joined rows arrive: the ORDER BY must sort them.

    Judged from the SQL, so that it fails on both backends: with the users' id alone, SQLite
    happens to return each user's posts in id order, PostgreSQL does not. Only when .posts came
    from this statement (no second statement loaded it) and the ORDER BY sorts no column of the
    joined posts (a sort by another column of theirs is judged by the rows). A loader's own join
    (``joinedload``, ``posts AS posts_1``) orders by the relationship's order_by itself.
    """
    queries = attempt.log.queries
    if not queries or any(re.search(r"\bFROM posts\b", q.sql) for q in queries[1:]):
        return None
    sql = queries[0].sql
    joins = list(_POSTS_JOIN.finditer(sql))
    if not joins:
        return None
    names = {(j.group(1) or "posts").lower() for j in joins}
    keys = order_by_keys(sql)
    if any(re.match(rf"^(?:{'|'.join(map(re.escape, names))})\.", k) for k in keys):
        return None
    why = (
        "contains_eager fills `.posts` in the order the joined rows arrive, so without a key for the posts "
        "their order within each user is luck: whatever order the database's plan reads them in (SQLite "
        "happens to read them in id order here; another backend or plan need not)"
    )
    if not keys:
        return (
            f"your statement has no ORDER BY, so neither the users nor their posts have an order: {why}. "
            "Sort both: `.order_by(User.id, Post.id)`"
        )
    return (
        f"your ORDER BY sorts only the users ({', '.join(keys)}); add `Post.id`: {why}. Sort them as "
        "the second key: `.order_by(User.id, Post.id)`"
    )


class _NoLazyPosts(NoLazyLoads):
    """A join that brings the posts, but no contains_eager: the fix is not another loader."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if not result.passed and _q6_joins_posts(attempt) and "User.posts" in attempt.lazy_attributes:
            result.message = (
                "User.posts was loaded lazily (in async code, a MissingGreenlet error), although your join "
                "already brings each user's published posts: tell the ORM to fill .posts from that join, "
                "`.options(contains_eager(User.posts))`, and call `.unique()` on the result (the join repeats "
                "each user once per post). A plain `selectinload(User.posts)` would load every post, not only "
                "the published ones, in a second statement"
            )
        return result


async def _q6_joined_criteria(session: AsyncSession) -> list[User]:
    """One statement too: the loader's own LEFT OUTER JOIN, the condition in its ON clause."""
    stmt = (
        select(User)
        .where(User.country == "NL")
        .options(joinedload(User.posts.and_(Post.status == "published")))
        .order_by(User.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_aliased_posts(session: AsyncSession) -> list[User]:
    """An alias of Post: the ORDER BY sorts the posts by the alias's id (posts_1.id)."""
    published = aliased(Post)
    stmt = (
        select(User)
        .outerjoin(User.posts.of_type(published).and_(published.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts.of_type(published)))
        .order_by(User.id, published.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_join_no_loader(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(User.posts.and_(Post.status == "published"))
        .where(User.country == "NL")
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def _q6_selectin_every_post(session: AsyncSession) -> list[User]:
    stmt = select(User).where(User.country == "NL").options(selectinload(User.posts)).order_by(User.id)
    return list((await session.scalars(stmt)).all())


async def _q6_explicit_on(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .outerjoin(Post, and_(Post.author_id == User.id, Post.status == "published"))
        .where(User.country == "NL")
        .options(contains_eager(User.posts))
        .order_by(User.id, Post.id)
    )
    return list((await session.scalars(stmt)).unique().all())


q6 = Exercise(
    id="06.q6",
    title="Users from the Netherlands with only their published posts",
    kind=SESSION_FN,
    solution_answer=_q6_solution,
    expected=_q6_expected,
    observe=_q6_observe,
    rules=[
        _objects_probe(User, "select(User)..."),
        _NoLazyPosts(),
        Probe(test=_q6_collections_test, name="every user, only published posts"),
        Probe(test=_q6_posts_order, name="posts filled from your join sorted by its ORDER BY"),
        _SameObjects("users", "posts"),
        Probe(test=_q6_one_statement, name="the posts in the same statement"),
        StatementBudget(1),
    ],
    hints=[
        "Every NL user must come back, also those with no published post (their .posts is empty), and "
        ".posts must hold only published posts. In one statement: a join that contains_eager() reads.",
        "An inner join, or a filter on Post in WHERE, drops the users without a published post. Put the "
        "condition in the ON clause of an outer join: .outerjoin(User.posts.and_(Post.status == 'published')).",
        "select(User).outerjoin(User.posts.and_(Post.status == 'published')).where(User.country == 'NL')"
        ".options(contains_eager(User.posts)).order_by(User.id, Post.id); the rows repeat each user, so "
        "call .unique() on the result.",
    ],
    why="A collection filled from a join (contains_eager, or a joinedload with criteria) holds exactly the rows "
    "that join kept: with the condition in ON, a filtered collection, on purpose, in one statement.",
    counterexamples=[
        Counterexample("inner join", _q6_inner_join, "without a published post are missing"),
        Counterexample("outer join, filter in WHERE", _q6_filter_in_where, "without a published post are missing"),
        Counterexample("drafts and archived posts too", _q6_every_post, "not published"),
        Counterexample("contains_eager without unique()", _q6_no_unique, "unique()"),
        Counterexample(
            "selectinload with criteria", _q6_selectin_criteria,
            "`selectinload()` loads the posts in a second statement, and the task asks for one",
        ),
        Counterexample("selectinload of every post", _q6_selectin_every_post, "your loader fills .posts with every post"),
        Counterexample("the join, but no contains_eager", _q6_join_no_loader, "already brings each user's published posts"),
        Counterexample("posts ordered by id descending", _q6_posts_desc, "are in another order"),
        Counterexample(
            "contains_eager, only the users ordered (right on SQLite by chance)", _q6_posts_unordered,
            "your ORDER BY sorts only the users (users.id); add Post.id",
        ),
        Counterexample(
            "each user's posts by published_at", _q6_posts_by_published_at,
            "another order: at position",
        ),
    ],
)


# ---------------------------------------------------------------- q7


async def _q7_solution(session: AsyncSession) -> list[User]:
    stmt = (
        select(User)
        .where(User.id <= 10)
        .options(selectinload(User.posts.and_(Post.status == "published")))
        .order_by(User.id)
    )
    return list((await session.scalars(stmt)).all())


async def _q7_expected(conn: AsyncConnection) -> list[tuple[int, tuple[int, ...]]]:
    rows = await _rows(
        conn,
        "SELECT u.id, p.id FROM users u "
        "LEFT JOIN posts p ON p.author_id = u.id AND p.status = 'published' "
        "WHERE u.id BETWEEN 1 AND 10 ORDER BY u.id, p.id",
    )
    return _grouped(rows)


_Q7_ON_THE_LOADER = "Put it on the loader instead: selectinload(User.posts.and_(Post.status == 'published'))"


def _q7_dropped_why(attempt: Attempt) -> str:
    """The status condition filtered the users: said for the form it took in the users query."""
    queries = attempt.log.queries
    sql = queries[0].sql if queries else ""
    exists = re.search(r"\bEXISTS\s*\(\s*SELECT 1\s+FROM posts\b", sql, re.I)
    if exists and not _POSTS_JOIN.search(sql):
        return (
            "the status condition went into the users query, as an EXISTS subquery (your `User.posts.any(...)`), "
            "so it filtered the users: it keeps those who have a published post, and has no say in what "
            "`.posts` holds. "
            + _Q7_ON_THE_LOADER
        )
    if re.search(r"\bIN\s*\(\s*SELECT\b[^()]*\bFROM posts\b", sql, re.I | re.S) and not _POSTS_JOIN.search(sql):
        return (
            "the status condition went into the users query, as an IN subquery over posts, so it filtered "
            "the users. " + _Q7_ON_THE_LOADER
        )
    return "the status condition went into the users query (a join plus WHERE), so it filtered the users. " + _Q7_ON_THE_LOADER


_q7_collections_test = _published_collections(
    dropped_why=_q7_dropped_why,
    extra_why="a plain loader fills the whole collection. Loader criteria filter it: "
    "selectinload(User.posts.and_(Post.status == 'published')), or with_loader_criteria(Post, ...)",
    check_repeats=True,
)


async def _q7_observe(session: AsyncSession, returned: Any) -> Any:
    users = _objects_of(returned, User)
    if users is not None:
        changed = [u.id for u in users if "posts" not in sa_inspect(u).unloaded
                   and sa_inspect(u).attrs.posts.history.has_changes()]
        if changed:
            return {"changed": changed}
    return await _q1_observe(session, returned)


def _q7_python_filter(attempt: Attempt) -> str | None:
    value = attempt.value
    if isinstance(value, dict) and "changed" in value:
        return (
            f"you filtered .posts in Python (user.posts = [...]) for {_number(len(value['changed']), 'users')}: that "
            "changes the relationship itself, and the next flush would write it (setting author_id to NULL "
            "on every post you dropped). Load only the published posts instead: "
            "selectinload(User.posts.and_(Post.status == 'published'))"
        )
    return None


async def _q7_filtered_in_python(session: AsyncSession) -> list[User]:
    users = list((await session.scalars(_q7_users().options(selectinload(User.posts)))).all())
    for user in users:
        user.posts = [p for p in user.posts if p.status == "published"]
    return users


async def _q7_join_where_and_criteria(session: AsyncSession) -> list[User]:
    stmt = (
        _q7_users().join(User.posts).where(Post.status == "published")
        .options(selectinload(User.posts.and_(Post.status == "published")))
    )
    return list((await session.scalars(stmt)).all())


def _q7_users() -> Any:
    return select(User).where(User.id <= 10).order_by(User.id)


async def _q7_unfiltered(session: AsyncSession) -> list[User]:
    return list((await session.scalars(_q7_users().options(selectinload(User.posts)))).all())


async def _q7_filter_in_where(session: AsyncSession) -> list[User]:
    stmt = _q7_users().join(User.posts).where(Post.status == "published").options(selectinload(User.posts))
    return list((await session.scalars(stmt)).all())


async def _q7_any_and_every_post(session: AsyncSession) -> list[User]:
    stmt = _q7_users().where(User.posts.any(Post.status == "published")).options(selectinload(User.posts))
    return list((await session.scalars(stmt)).all())


async def _q7_criteria_alone(session: AsyncSession) -> list[User]:
    stmt = _q7_users().options(with_loader_criteria(Post, Post.status == "published"))
    return list((await session.scalars(stmt)).all())


async def _q7_joined_no_unique(session: AsyncSession) -> list[User]:
    stmt = _q7_users().options(joinedload(User.posts.and_(Post.status == "published")))
    return list((await session.scalars(stmt)).all())


async def _q7_global_criteria(session: AsyncSession) -> list[User]:
    stmt = _q7_users().options(
        selectinload(User.posts), with_loader_criteria(Post, Post.status == "published")
    )
    return list((await session.scalars(stmt)).all())


async def _q7_joined_unique(session: AsyncSession) -> list[User]:
    stmt = _q7_users().options(joinedload(User.posts.and_(Post.status == "published")))
    return list((await session.scalars(stmt)).unique().all())


q7 = Exercise(
    id="06.q7",
    title="Users with only their published posts, by loader criteria",
    kind=SESSION_FN,
    solution_answer=_q7_solution,
    expected=_q7_expected,
    observe=_q7_observe,
    rules=[
        _objects_probe(User, "select(User)..."),
        Probe(test=_q7_python_filter, name=".posts not reassigned in Python"),
        _NoLazyLoadsOfUnloaded(),
        _not_loaded_probe(),
        Probe(test=_q7_collections_test, name="every user, only published posts"),
        _SameObjects("users", "posts"),
        StatementBudget(2),
    ],
    hints=[
        "All ten users must come back (users 4 and 5 have no posts at all): the users query itself "
        "must not filter on posts. The filter belongs to the loader that fills .posts.",
        "A relationship attribute takes extra criteria: User.posts.and_(Post.status == 'published'), "
        "and a loader option accepts it.",
        "select(User).where(User.id <= 10).options(selectinload(User.posts.and_(Post.status == "
        "'published'))).order_by(User.id)",
    ],
    why="Loader criteria filter what a relationship loader brings, without touching the parent query.",
    counterexamples=[
        Counterexample("plain selectinload", _q7_unfiltered, "not published"),
        Counterexample("status filtered in the users query", _q7_filter_in_where, "(a join plus WHERE), so it filtered the users"),
        Counterexample(
            "users filtered with any(), every post loaded", _q7_any_and_every_post,
            "as an EXISTS subquery (your `User.posts.any(...)`), so it filtered the users",
        ),
        Counterexample("with_loader_criteria, but no loader", _q7_criteria_alone, "User.posts was not loaded"),
        Counterexample("joinedload with criteria, no unique()", _q7_joined_no_unique, "unique()"),
        Counterexample("the collection filtered in Python", _q7_filtered_in_python, "you filtered .posts in python"),
        Counterexample(
            "a join and WHERE, plus loader criteria", _q7_join_where_and_criteria, "repeats each remaining user"
        ),
    ],
)


# correct answers of another form: tests/test_exercises.py requires each one accepted
ALTERNATIVES = {
    "06.q1": [
        ("joinedload and unique()", _q1_joined_unique),
    ],
    "06.q2": [
        ("selectinload for both", _q2_selectin_both),
        ("joinedload for both, limit wrapped in a subquery", _q2_joined_both),
    ],
    "06.q3": [
        ("joinedload along the path and unique()", _q3_all_joined),
        ("session.get() with the chained option", _q3_get_with_options),
    ],
    "06.q4": [
        ("defer(Post.body)", _q4_defer_body),
    ],
    "06.q5": [
        ("an explicit ON clause and contains_eager", _q5_explicit_on),
    ],
    "06.q6": [
        ("an explicit ON clause and contains_eager", _q6_explicit_on),
        ("joinedload with criteria and unique()", _q6_joined_criteria),
        ("an alias of Post, ordered by its id", _q6_aliased_posts),
    ],
    "06.q7": [
        ("selectinload and with_loader_criteria", _q7_global_criteria),
        ("joinedload with criteria and unique()", _q7_joined_unique),
    ],
}
