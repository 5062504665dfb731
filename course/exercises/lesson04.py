"""Lesson 04 exercises: joins that return the right rows, and counts that stay honest.

Besides comparing rows, each exercise names the join mistake it sees in the
numbers: a user who vanished (inner join), a 1 where 0 belongs (``count(*)``
over an outer join), a None where 0 belongs (an outer-joined subquery), a
count that is too high (a join that multiplied rows), a join run the wrong way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import aliased

from ..schema import Comment, Order, Post, Tag, User, post_tags
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import Attempt, BoundParameters, Columns, Probe, SameResult, StatementBudget
from .userfacts import has_scalar_subquery


def _rows(attempt: Attempt) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
    """(got, want) when both are lists of rows of the same width, else None (other rules judge)."""
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list) and got and want):
        return None
    width = len(want[0])
    if not all(isinstance(r, tuple) and len(r) == width for r in got + want):
        return None
    return got, want


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _per_user_counts(
    columns: Sequence[str], *, what: str, too_high: str, missing: str, too_low: str = "",
    entity: str = "user", links: dict[str, str] | None = None,
) -> Probe:
    """Compare per-user aggregates row by row (first column = id) and name the join mistake.

    ``columns`` names the value columns after the id; ``what`` is what the zero rows have none
    of; ``missing``, ``too_high`` and ``too_low`` explain the likely cause for this exercise.
    ``links`` gives, per column, the condition a scalar subquery needs to refer to the outer row.
    """

    def test(attempt: Attempt) -> str | None:
        pair = _rows(attempt)
        if pair is None:
            return None
        got, want = pair
        want_by = {r[0]: r for r in want}
        got_by: dict[Any, tuple[Any, ...]] = {}
        for r in got:
            got_by.setdefault(r[0], r)
        gone = [k for k in want_by if k not in got_by]
        if gone and all(want_by[k][1] == 0 for k in gone):
            return (
                f"{_n(len(gone), entity)} missing, every one of them with 0 {what} "
                f"(e.g. {entity} {gone[0]}): {missing}"
            )
        common = [k for k in want_by if k in got_by]
        reads = [q.sql for q in attempt.log.queries if q.verb in ("SELECT", "WITH")]
        subquery = bool(reads) and has_scalar_subquery(reads[0])  # a derived table in FROM is no column
        for i, name in enumerate(columns, start=1):
            pairs = [(k, got_by[k][i], want_by[k][i]) for k in common]
            if subquery and len(pairs) >= 3 and len({repr(g) for _, g, _ in pairs}) == 1 \
                    and len({repr(w) for _, _, w in pairs}) > 1:
                link = (links or {}).get(name)
                return (
                    f"{name} is the same on every row ({pairs[0][1]}), where each {entity} has their own: your "
                    f"scalar subquery is uncorrelated. It never refers to the {entity} on the outer row, so it "
                    "computes one value over the whole table, once for all rows. Link it to that row inside "
                    "the subquery" + (f": `.where({link})`" if link else "")
                )
            zeros = [(k, g) for k, g, w in pairs if w == 0]
            if zeros and all(g is None for _, g in zeros):
                return (
                    f"{name} is None (NULL) instead of 0 for {entity}s who have none (e.g. {entity} "
                    f"{zeros[0][0]}): an outer join to an aggregate subquery gives NULL where nothing "
                    "matched; wrap the column in func.coalesce(..., 0)"
                )
            if zeros and all(g == 1 for _, g in zeros):
                return (
                    f"{name} is 1 instead of 0 for {entity}s who have none (e.g. {entity} {zeros[0][0]}): "
                    "count(*) counts the one row of NULLs the outer join adds for them; count a column "
                    "of the joined table instead, e.g. func.count(Post.id)"
                )
            numeric = [(k, g, w) for k, g, w in pairs if isinstance(g, (int, float)) and isinstance(w, (int, float))]
            high = [(k, g, w) for k, g, w in numeric if g > w]
            if high:
                k, g, w = high[0]
                return (
                    f"{name} is too high for {_n(len(high), entity)} (e.g. {entity} {k}: {g} instead of "
                    f"{w}): {too_high}"
                )
            low = [(k, g, w) for k, g, w in numeric if g < w]
            if low:
                k, g, w = low[0]
                return (
                    f"{name} is too low for {_n(len(low), entity)} (e.g. {entity} {k}: {g} instead of "
                    f"{w})" + (f": {too_low}" if too_low else "")
                )
        return None

    return Probe(test=test, name="per-user numbers")


# ---------------------------------------------------------------------------- q1
# SQLAlchemy's linter names the FROM elements it could not reach from one of them, then that one:
# 'FROM element(s) "users" and FROM element "tags"', or '"posts", "users" and FROM element "tags"'
# (which element it starts from varies from run to run)
_CARTESIAN = re.compile(r'cartesian product between FROM element\(s\) (.+?) and FROM element "([^"]+)"')

# the join each table of this exercise needs, and what leaving it out does to the rows
_Q1_JOIN = {
    "users": ("`.join(Post.author)`", "each post is paired with every user, not only its author"),
    "tags": (
        "`.join(Post.tags)`",
        "every post comes back, tagged \"joins\" or not: the filter on `Tag.name` picks the tag, and "
        "nothing ties that tag to the post",
    ),
    "post_tags": ("`.join(Post.tags)`", "each post is paired with every row of post_tags"),
}


def _q1_effect(loose: list[str]) -> str:
    return next((_Q1_JOIN[t][1] for t in loose if t in _Q1_JOIN), "every row is paired with every row of the other table")


def _q1_fix(loose: list[str]) -> str:
    joins = [_Q1_JOIN[t][0] for t in loose if t in _Q1_JOIN]
    return " and ".join(dict.fromkeys(joins)) or "a join along the relationship that leads to it"


def _cartesian(attempt: Attempt) -> str | None:
    """A table in FROM that nothing joins: named once.

    When SQLAlchemy warned, the checker's headline already opens with the cartesian product
    (core.py puts the warning, explained, first): this rule then says only what it did to these
    rows and which join to add. Without the warning (SQLAlchemy warns once per compiled
    statement, and the compiled cache hides a re-run) it reads the FROM list itself and says it all.
    """
    for warning in attempt.warnings:
        found = _CARTESIAN.search(warning)
        if found:
            # the linter lists what it could not reach from one FROM element: when posts is among
            # them, that one element is the loose table (posts anchors every join of this query)
            listed = re.findall(r'"([^"]+)"', found.group(1))
            loose = [re.sub(r"_\d+$", "", t) for t in ([found.group(2)] if "posts" in listed else listed)]
            pair = _rows(attempt)
            size = f"{len(pair[0])} rows instead of {len(pair[1])}" if pair else "your rows"
            return f"{size}: {_q1_effect(loose)}. Add {_q1_fix(loose)}"
    reads = [q.sql for q in attempt.log.queries if q.verb == "SELECT"]
    found_loose = _loose_table(reads[0]) if reads else None
    if found_loose:
        loose_table, first = found_loose
        return (
            f'a cartesian product: "{loose_table}" sits in FROM joined to nothing, next to "{first}": '
            f"{_q1_effect([loose_table])}. A table you filter or select on must be joined, here along a "
            f"relationship: {_q1_fix([loose_table])}"
        )
    return None


def _loose_table(sql: str) -> tuple[str, str] | None:
    """(a table listed after a comma in the outer FROM that no WHERE equality links, the first table)."""
    match = re.search(r"\bFROM\b(.*?)(\bWHERE\b|\bGROUP BY\b|\bORDER BY\b|\bLIMIT\b|$)", sql, re.I | re.S)
    if not match or "(" in match.group(1):
        return None
    where = sql[match.end(1):]
    items = [i.strip() for i in match.group(1).split(",")]
    if len(items) < 2:
        return None
    first = items[0].split()[0]
    for item in items[1:]:
        table = item.split()[-1] if item else ""
        linked = re.search(rf"\b{re.escape(table)}\.\w+\s*=\s*\w+\.\w+|\w+\.\w+\s*=\s*{re.escape(table)}\.\w+", where)
        if table and not linked:
            return table, first
    return None


def _q1_which_user(attempt: Attempt) -> str | None:
    """The join to users that leads somewhere else than the post's author."""
    reads = [q.sql for q in attempt.log.queries if q.verb == "SELECT"]
    if not reads or _rows(attempt) is None or attempt.value == attempt.expected:
        return None
    sql = reads[0]
    if re.search(r"\bJOIN comments\b", sql):
        return (
            "your users come through comments: those are the commenters, not the author. A post's author "
            "is posts.author_id; join along Post.author"
        )
    if re.search(r"users\.id = posts\.id|posts\.id = users\.id", sql):
        return (
            "your ON clause matches users.id to posts.id, two unrelated numbers. A post's author is "
            "posts.author_id: .join(Post.author) writes the right condition for you"
        )
    return None


def _q1_solution():
    return (
        select(Post.id, User.username)
        .join(Post.author)
        .join(Post.tags)
        .where(Tag.name == "joins")
        .order_by(Post.id)
    )


q1 = Exercise(
    id="04.q1",
    title="Posts tagged 'joins', with their author",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference(
        "SELECT p.id, u.username FROM posts p JOIN users u ON u.id = p.author_id "
        "WHERE EXISTS (SELECT 1 FROM post_tags pt JOIN tags t ON t.id = pt.tag_id "
        "WHERE pt.post_id = p.id AND t.name = 'joins') ORDER BY p.id"
    ),
    rules=[
        Columns(["id", "username"]),
        Probe(test=_cartesian, name="every table joined"),
        Probe(test=_q1_which_user, name="the post's author"),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["joins"]),
    ],
    hints=[
        "You need two joins from Post: one to its author (a User), one to its tags.",
        "Post.author and Post.tags are relationships: .join(Post.author) and .join(Post.tags) write the "
        "ON clauses for you (Post.tags goes through the post_tags table on its own).",
        "select(Post.id, User.username).join(Post.author).join(Post.tags)"
        ".where(Tag.name == \"joins\").order_by(Post.id)",
    ],
    why="Joining along relationships lets the mapping write the ON clauses, even through an association table.",
    counterexamples=[
        Counterexample(
            "filters on Tag without joining it",
            lambda: select(Post.id, User.username).join(Post.author).where(Tag.name == "joins").order_by(Post.id),
            'tagged "joins" or not',
        ),
        Counterexample(
            # run a second time, the statement comes from the compiled cache: SQLAlchemy warns no more
            "filters on Tag without joining it (compiled before: no warning)",
            lambda: select(Post.id, User.username).join(Post.author).where(Tag.name == "joins").order_by(Post.id),
            '"tags" sits in FROM joined to nothing',
        ),
        Counterexample(
            "the commenters, not the author",
            lambda: select(Post.id, User.username)
            .join(Post.comments)
            .join(User, User.id == Comment.author_id)
            .join(Post.tags)
            .where(Tag.name == "joins")
            .order_by(Post.id),
            "the commenters, not the author",
        ),
        Counterexample(
            "joins users on the wrong column",
            lambda: select(Post.id, User.username)
            .join(User, User.id == Post.id)
            .join(Post.tags)
            .where(Tag.name == "joins")
            .order_by(Post.id),
            "users.id to posts.id",
        ),
        Counterexample(
            "tags joined, author forgotten",
            lambda: select(Post.id, User.username).join(Post.tags).where(Tag.name == "joins").order_by(Post.id),
            "each post is paired with every user, not only its author",
        ),
    ],
)


# ---------------------------------------------------------------------------- q2
def _q2_solution():
    return (
        select(User.id, func.count(Post.id).label("drafts"))
        .outerjoin(User.posts.and_(Post.status == "draft"))
        .group_by(User.id)
        .order_by(User.id)
    )


_Q2_MISSING = (
    "an inner join drops users without a matching post, and so does a WHERE condition on the "
    "outer-joined table (it is not true for any of their rows: their other posts fail it, and on the "
    "NULL row of a user without posts it is unknown). Use outerjoin() and put the status condition "
    "in the ON clause: User.posts.and_(...)"
)

_Q2_COUNTS = _per_user_counts(
    ["drafts"],
    what="drafts",
    links={"drafts": 'Post.author_id == User.id, Post.status == "draft"'},
    missing=_Q2_MISSING,
    too_high="were all posts counted, not only drafts? The status condition belongs in the ON clause",
)


def _q2_undone(attempt: Attempt) -> str | None:
    reads = [q.sql for q in attempt.log.queries if q.verb == "SELECT"]
    if not reads or attempt.value == attempt.expected:
        return None
    sql = reads[0]
    where = sql.split("WHERE", 1)[1] if "WHERE" in sql else ""
    if "LEFT OUTER JOIN posts" in sql and "posts.status" in where:
        return (
            "your outer join is undone by WHERE: posts.status = 'draft' is not true for any row of a user "
            "without drafts (their other posts fail it; the NULL row of a user without posts makes it "
            "unknown), so WHERE drops that user again. Move the condition into the ON clause: "
            ".outerjoin(User.posts.and_(Post.status == 'draft'))"
        )
    if re.search(r"(?<!OUTER )\bJOIN posts\b", sql) and "LEFT OUTER JOIN posts" not in sql:
        # no outer join to keep: said as the per-user numbers say it (which users the inner join lost)
        return _Q2_COUNTS.test(attempt) or "your join to posts is an inner join: " + _Q2_MISSING
    return None


q2 = Exercise(
    id="04.q2",
    title="Every user's number of drafts, zero included",
    kind=STATEMENT,
    solution_answer=_q2_solution,
    expected=sql_reference(
        "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.status = 'draft') "
        "FROM users u ORDER BY u.id"
    ),
    rules=[
        Columns(["id", "drafts"]),
        Probe(test=_q2_undone, name="users without drafts kept (with 0)"),
        _Q2_COUNTS,
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["draft"]),
    ],
    hints=[
        "Every user must appear, also those with no drafts: which kind of join keeps the left side's rows?",
        "outerjoin() keeps every user. A WHERE on Post.status would throw the users without drafts away "
        "again: the condition has to be part of the join itself. And count(*) would count 1 for them.",
        "select(User.id, func.count(Post.id).label(\"drafts\")).outerjoin(User.posts.and_(Post.status == "
        "\"draft\")).group_by(User.id).order_by(User.id)",
    ],
    why="An outer join keeps the rows without a match only if nothing later filters its NULLs away.",
    counterexamples=[
        Counterexample(
            "the count not labelled",
            lambda: select(User.id, func.count(Post.id))
            .outerjoin(User.posts.and_(Post.status == "draft"))
            .group_by(User.id)
            .order_by(User.id),
            "should be named 'drafts'",
        ),
        Counterexample(
            "inner join",
            lambda: select(User.id, func.count(Post.id).label("drafts"))
            .join(User.posts)
            .where(Post.status == "draft")
            .group_by(User.id)
            .order_by(User.id),
            "missing",
        ),
        Counterexample(
            "outer join undone by WHERE",
            lambda: select(User.id, func.count(Post.id).label("drafts"))
            .outerjoin(User.posts)
            .where(Post.status == "draft")
            .group_by(User.id)
            .order_by(User.id),
            "outer join is undone by WHERE",
        ),
        Counterexample(
            "count(*)",
            lambda: select(User.id, func.count().label("drafts"))
            .outerjoin(User.posts.and_(Post.status == "draft"))
            .group_by(User.id)
            .order_by(User.id),
            "1 instead of 0",
        ),
        Counterexample(
            "every post counted",
            lambda: select(User.id, func.count(Post.id).label("drafts"))
            .outerjoin(User.posts)
            .group_by(User.id)
            .order_by(User.id),
            "too high",
        ),
        Counterexample(
            "a count subquery that never names the user",
            lambda: select(
                User.id,
                select(func.count(Post.id)).where(Post.status == "draft").scalar_subquery().label("drafts"),
            ).order_by(User.id),
            "your scalar subquery is uncorrelated",
        ),
    ],
)


# ---------------------------------------------------------------------------- q3
def _q3_solution():
    inviter = aliased(User, name="inviter")
    return (
        select(User.id, User.username, inviter.username.label("invited_by"))
        .join(inviter, User.invited_by_id == inviter.id)
        .order_by(User.id)
    )


def _unlabelled_inviter():
    inviter = aliased(User)
    return select(User.id, User.username, inviter.username).join(inviter, User.invited_by_id == inviter.id).order_by(User.id)


def _q3_pair(attempt: Attempt) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
    """(got, want) when they are 3-column rows that differ, else None (other rules judge)."""
    pair = _rows(attempt)
    if pair is None or len(pair[1][0]) != 3 or pair[0] == pair[1]:
        return None
    return pair


def _q3_outer(attempt: Attempt) -> str | None:
    """An outer join keeps the users nobody invited, with invited_by None."""
    pair = _q3_pair(attempt)
    if pair is None:
        return None
    got, want = pair
    if any(r[2] is None for r in got) and len(got) > len(want):
        n = sum(1 for r in got if r[2] is None)
        return (
            f"{n} rows have invited_by None: users nobody invited, kept by an outer join. The task "
            "leaves them out: an inner .join() keeps only the users who have an inviter"
        )
    return None


async def _q3_probe(conn: Any, attempt: Attempt, **_: Any) -> None:
    """Every user's username by id: an invited_by holding ids is read back as the names they stand for."""
    if _q3_pair(attempt) is not None:
        rows = await conn.execute(text("SELECT id, username FROM users"))
        attempt.extra["usernames"] = dict(rows.all())


def _q3_own_name(attempt: Attempt) -> str | None:
    """The alias joined, but User.username selected twice; or the inviter's id instead of their name."""
    pair = _q3_pair(attempt)
    if pair is None:
        return None
    got, want = pair
    if all(r[1] == r[2] for r in got):
        return (
            "invited_by is each user's own username: select the alias's column "
            "(inviter.username), not User.username"
        )
    names = attempt.extra.get("usernames") or {}
    if len(got) == len(want) and all(
        isinstance(g[2], int) and not isinstance(g[2], bool) and g[0] == w[0] and names.get(g[2]) == w[2]
        for g, w in zip(got, want, strict=True)
    ):
        return (
            "invited_by holds the inviter's id, not their username: select "
            "`inviter.username.label(\"invited_by\")`"
        )
    return None


def _q3_swapped(attempt: Attempt) -> str | None:
    """The right join, the two usernames in each other's place: every row is an expected row with
    its second and third columns swapped (a reversed join gives other ids, the inviters')."""
    pair = _q3_pair(attempt)
    if pair is None:
        return None
    got, want = pair
    if len(got) == len(want) and sorted((r[0], r[2], r[1]) for r in got) == sorted(want):
        return (
            "id and the join are right; username and invited_by are swapped: username is the invited "
            "user's own name (`User.username`), invited_by the inviter's "
            "(`inviter.username.label(\"invited_by\")`). Select them in that order"
        )
    return None


def _q3_backwards(attempt: Attempt) -> str | None:
    """The ON clause reversed: each user paired with the users they invited."""
    pair = _q3_pair(attempt)
    if pair is None or _q3_swapped(attempt):  # the invited users' own ids: the join runs the right way
        return None
    got, want = pair
    expected_pairs = {(r[1], r[2]) for r in want}
    if all((r[2], r[1]) in expected_pairs for r in got):
        return (
            "the join runs the wrong way: your rows list whom each user invited. The invited user's "
            "invited_by_id points at the inviter: ON users.invited_by_id = inviter.id"
        )
    return None


def _q3_variant(*, backwards: bool = False, own_name: bool = False, outer: bool = False, swapped: bool = False):
    """The solution with one slip: the ON clause reversed, User.username selected twice, outerjoin,
    or the two usernames in each other's place."""
    inviter = aliased(User, name="inviter")
    name = User.username if own_name else inviter.username
    on = inviter.invited_by_id == User.id if backwards else User.invited_by_id == inviter.id
    if swapped:  # the inviter's name first (labelled username by default), the user's own as invited_by
        stmt = select(User.id, inviter.username, User.username.label("invited_by"))
    else:
        stmt = select(User.id, User.username, name.label("invited_by"))
    stmt = stmt.outerjoin(inviter, on) if outer else stmt.join(inviter, on)
    return stmt.order_by(User.id)


def _q3_inviter_id():
    inviter = aliased(User, name="inviter")
    return (
        select(User.id, User.username, inviter.id.label("invited_by"))
        .join(inviter, User.invited_by_id == inviter.id)
        .order_by(User.id)
    )


def _q3_of_type():
    inviter = aliased(User, name="inviter")
    return (
        select(User.id, User.username, inviter.username.label("invited_by"))
        .join(User.invited_by.of_type(inviter))
        .order_by(User.id)
    )


q3 = Exercise(
    id="04.q3",
    title="Invited users and who invited them",
    kind=STATEMENT,
    solution_answer=_q3_solution,
    expected=sql_reference(
        "SELECT u.id, u.username, i.username FROM users u JOIN users i ON i.id = u.invited_by_id ORDER BY u.id"
    ),
    probe=_q3_probe,
    rules=[
        Columns(["id", "username", "invited_by"]),
        Probe(test=_q3_outer, name="only users somebody invited"),
        Probe(test=_q3_own_name, name="invited_by: the inviter's username, read from the alias"),
        Probe(test=_q3_swapped, name="username and invited_by not swapped"),
        Probe(test=_q3_backwards, name="the self-join's direction"),
        SameResult(ordered=True),
        StatementBudget(1),
    ],
    hints=[
        "users appears twice in this query: once as the invited user, once as the inviter. "
        "Give the second one its own name with aliased(User).",
        "inviter = aliased(User, name=\"inviter\"), then .join(inviter, User.invited_by_id == inviter.id) "
        "and select inviter.username.label(\"invited_by\"). Which users does an inner join keep?",
        "inviter = aliased(User, name=\"inviter\"); select(User.id, User.username, "
        "inviter.username.label(\"invited_by\")).join(inviter, User.invited_by_id == inviter.id)"
        ".order_by(User.id)",
    ],
    why="aliased() gives one table a second name, so a query can hold two different rows of it at once.",
    counterexamples=[
        Counterexample(
            "aliased(User) written out three times",
            lambda: select(User.id, User.username, aliased(User).username.label("invited_by"))
            .join(aliased(User), User.invited_by_id == aliased(User).id)
            .order_by(User.id),
            "each `aliased(User)` call makes a new, separate alias",
        ),
        Counterexample(
            "the inviter's name not labelled",
            lambda: _unlabelled_inviter(),
            "should be named 'invited_by'",
        ),
        Counterexample(
            "no alias",
            lambda: select(User.id, User.username, User.username.label("invited_by"))
            .join(User.invited_by)
            .order_by(User.id),
            "same entity",
        ),
        Counterexample("the join runs backwards", lambda: _q3_variant(backwards=True), "wrong way"),
        Counterexample("alias joined but not selected", lambda: _q3_variant(own_name=True), "own username"),
        Counterexample(
            "the inviter's id, not their username", _q3_inviter_id,
            'invited_by holds the inviter\'s id, not their username: select inviter.username.label("invited_by")',
        ),
        Counterexample("outer join keeps everyone", lambda: _q3_variant(outer=True), "users nobody invited"),
        Counterexample(
            "the two usernames swapped", lambda: _q3_variant(swapped=True),
            "id and the join are right; username and invited_by are swapped",
        ),
    ],
)


# ---------------------------------------------------------------------------- q4
def _q4_solution():
    posts = select(Post.author_id, func.count(Post.id).label("n")).group_by(Post.author_id).subquery()
    spent = (
        select(Order.user_id, func.sum(Order.total_cents).label("cents")).group_by(Order.user_id).subquery()
    )
    return (
        select(
            User.id,
            func.coalesce(posts.c.n, 0).label("posts"),
            func.coalesce(spent.c.cents, 0).label("spent_cents"),
        )
        .outerjoin(posts, posts.c.author_id == User.id)
        .outerjoin(spent, spent.c.user_id == User.id)
        .order_by(User.id)
    )


_Q4_TOO_HIGH = (
    "joining posts and orders in one query pairs every post of a user with every order, so each "
    "count and sum is multiplied by the other side's rows. Aggregate each relation on its own "
    "(one grouped subquery per table), then join the results to users"
)


def _q4_joined(count: Callable[[Any], Any], total: Callable[[Any], Any]) -> Callable[[], Any]:
    """Both relations outer-joined in one query: the shape every inflated answer shares."""
    return lambda: (
        select(User.id, count(Post.id).label("posts"), total(Order.total_cents).label("spent_cents"))
        .outerjoin(User.posts)
        .outerjoin(User.orders)
        .group_by(User.id)
        .order_by(User.id)
    )


def _q4_no_coalesce():
    posts = select(Post.author_id, func.count(Post.id).label("n")).group_by(Post.author_id).subquery()
    spent = select(Order.user_id, func.sum(Order.total_cents).label("cents")).group_by(Order.user_id).subquery()
    return (
        select(User.id, posts.c.n.label("posts"), spent.c.cents.label("spent_cents"))
        .outerjoin(posts, posts.c.author_id == User.id)
        .outerjoin(spent, spent.c.user_id == User.id)
        .order_by(User.id)
    )


def _q4_inner_posts():
    posts = select(Post.author_id, func.count(Post.id).label("n")).group_by(Post.author_id).subquery()
    spent = select(Order.user_id, func.sum(Order.total_cents).label("cents")).group_by(Order.user_id).subquery()
    return (
        select(User.id, posts.c.n.label("posts"), spent.c.cents.label("spent_cents"))
        .join(posts, posts.c.author_id == User.id)
        .join(spent, spent.c.user_id == User.id)
        .order_by(User.id)
    )


def _q4_spent_uncorrelated():
    posts = select(func.count(Post.id)).where(Post.author_id == User.id).scalar_subquery()
    spent = select(func.coalesce(func.sum(Order.total_cents), 0)).scalar_subquery()  # no link to the user
    return select(User.id, posts.label("posts"), spent.label("spent_cents")).order_by(User.id)


def _q4_scalar_subqueries():
    posts = select(func.count(Post.id)).where(Post.author_id == User.id).scalar_subquery()
    spent = select(func.coalesce(func.sum(Order.total_cents), 0)).where(Order.user_id == User.id).scalar_subquery()
    return select(User.id, posts.label("posts"), spent.label("spent_cents")).order_by(User.id)


q4 = Exercise(
    id="04.q4",
    title="Posts and money spent, per user, without inflation",
    kind=STATEMENT,
    solution_answer=_q4_solution,
    expected=sql_reference(
        "SELECT u.id, "
        "(SELECT count(*) FROM posts p WHERE p.author_id = u.id), "
        "(SELECT coalesce(sum(o.total_cents), 0) FROM orders o WHERE o.user_id = u.id) "
        "FROM users u ORDER BY u.id"
    ),
    rules=[
        Columns(["id", "posts", "spent_cents"]),
        _per_user_counts(
            ["posts", "spent_cents"],
            what="posts",
            links={"posts": "Post.author_id == User.id", "spent_cents": "Order.user_id == User.id"},
            missing="an inner join drops them; keep every user with outer joins",
            too_high=_Q4_TOO_HIGH,
            too_low="sum(distinct ...) adds equal amounts only once, even when they belong to different orders",
        ),
        SameResult(ordered=True),
        StatementBudget(1),
    ],
    hints=[
        "Join users to posts and to orders in one query and each user's rows become posts x orders: "
        "both numbers come out multiplied. Aggregate each table on its own first.",
        "Build one grouped subquery per table (posts per author_id, sum of total_cents per user_id) with "
        ".subquery(), then outerjoin both to User. Users without posts get NULL from an outer join: "
        "func.coalesce(..., 0).",
        "posts = select(Post.author_id, func.count(Post.id).label(\"n\")).group_by(Post.author_id).subquery(); "
        "same for orders; select(User.id, func.coalesce(posts.c.n, 0).label(\"posts\"), ...)"
        ".outerjoin(posts, posts.c.author_id == User.id).outerjoin(...).order_by(User.id)",
    ],
    why="Aggregate each one-to-many relation separately: joined together, they multiply each other.",
    counterexamples=[
        Counterexample("both joined, plain count and sum", _q4_joined(func.count, func.sum), "too high"),
        Counterexample(
            "count(distinct) fixes the count, not the sum",
            _q4_joined(lambda c: func.count(c.distinct()), func.sum),
            "spent_cents is too high",
        ),
        Counterexample(
            "sum(distinct) drops equal amounts",
            _q4_joined(lambda c: func.count(c.distinct()), lambda c: func.sum(c.distinct())),
            "too low",
        ),
        Counterexample("subqueries without coalesce", _q4_no_coalesce, "None (NULL) instead of 0"),
        Counterexample("inner join to the posts subquery", _q4_inner_posts, "missing"),
        Counterexample(
            "the spent subquery never names the user", _q4_spent_uncorrelated,
            "spent_cents is the same on every row",
        ),
    ],
)


# correct answers of another form: tests/test_exercises.py requires each one accepted
ALTERNATIVES = {
    "04.q1": [
        ("explicit ON clauses, through post_tags by hand", lambda: select(Post.id, User.username)
        .join(User, User.id == Post.author_id)
        .join(post_tags, post_tags.c.post_id == Post.id)
        .join(Tag, Tag.id == post_tags.c.tag_id)
        .where(Tag.name == "joins")
        .order_by(Post.id)),
        ("the tag as an EXISTS (Post.tags.any())", lambda: select(Post.id, User.username)
        .join(Post.author)
        .where(Post.tags.any(Tag.name == "joins"))
        .order_by(Post.id)),
    ],
    "04.q2": [
        ("a correlated count per user", lambda: select(
            User.id,
            select(func.count(Post.id))
            .where(Post.author_id == User.id, Post.status == "draft")
            .scalar_subquery()
            .label("drafts"),
        ).order_by(User.id)),
        ("an explicit ON clause holding the status condition", lambda: select(User.id, func.count(Post.id).label("drafts"))
        .outerjoin(Post, (Post.author_id == User.id) & (Post.status == "draft"))
        .group_by(User.id)
        .order_by(User.id)),
        ("count(case(...)) over a plain outer join: the case is NULL for other posts", lambda: select(
            User.id, func.count(case((Post.status == "draft", Post.id))).label("drafts")
        ).outerjoin(User.posts).group_by(User.id).order_by(User.id)),
    ],
    "04.q3": [
        ("a join along User.invited_by.of_type(inviter)", _q3_of_type),
    ],
    "04.q4": [
        ("one correlated scalar subquery per number", _q4_scalar_subqueries),
    ],
}
