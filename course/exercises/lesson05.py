"""Lesson 05 exercises: derived tables, correlated subqueries, NOT EXISTS, recursive CTEs, windows.

Every reference is raw SQL written in a different shape from the solution (a
correlated subquery where the solution uses a derived table, NOT IN where it
uses NOT EXISTS, NOT EXISTS where it uses a window function), so a reference
and a solution agreeing is evidence, not a tautology.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, exists, func, literal, not_, select, text
from sqlalchemy.orm import aliased

from ..schema import Comment, Order, Post, User
from .core import SESSION_FN, STATEMENT, Counterexample, Exercise, sql_reference
from .rules import Attempt, BoundParameters, Columns, Probe, SameResult, StatementBudget, normal
from .userfacts import has_scalar_subquery, order_by_keys, orders_by, select_list


def _parenthesized_after(sql: str, keyword: str) -> str:
    """The balanced (...) that follows ``keyword`` (an EXISTS subquery, an OVER clause), or ""."""
    at = sql.upper().find(keyword.upper())
    start = sql.find("(", at) if at >= 0 else -1
    if start < 0:
        return ""
    depth = 0
    for i in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[start + 1 : i]
    return sql[start + 1 :]


def _outside_parentheses(sql: str) -> str:
    """``sql`` with every parenthesized part (a subquery, a function's arguments) left out."""
    out, depth = [], 0
    for char in sql:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _first_sql(attempt: Attempt) -> str:
    reads = [s.sql for s in attempt.log.queries if s.verb in ("SELECT", "WITH")]
    return reads[0] if reads else ""

# ----------------------------------------------------------------------------- shared probes

_NOT_IN_SUBQUERY = re.compile(r"\bNOT\s+IN\s*\(\s*SELECT\b", re.I)
_ONE_COLUMN = re.compile(r"^\s*SELECT\s+(?:DISTINCT\s+)?(?:\w+\.)?(\w+)(?:\s+AS\s+(\w+))?\s+FROM\b", re.I)


async def not_in_returns_null(conn: Any, attempt: Attempt) -> None:
    """Run the answer's ``NOT IN (SELECT ...)`` subquery again and note whether it returns a NULL.

    Stored as ``attempt.extra["not_in_null"]`` for the rows' analysis in :mod:`.rules`, which blames
    a NULL in NOT IN only when there is one. Left unset when the subquery cannot run on its own (it
    refers to the outer query) or selects an expression: the analysis then reads the schema.
    """
    reads = [q for q in attempt.log.queries if q.verb in ("SELECT", "WITH")]
    found = _NOT_IN_SUBQUERY.search(reads[0].sql) if reads else None
    if found is None:
        return
    statement, sql = reads[0], reads[0].sql
    open_at = sql.index("(", found.start())
    subquery = _parenthesized_after(sql[found.start():], "NOT")
    column = _ONE_COLUMN.match(subquery)
    params = statement.params
    if column is None or not isinstance(params, (list, tuple)):
        return
    if "?" in subquery:  # SQLite: positional, counted from the start of the statement
        first = sql[:open_at].count("?")
        values = list(params[first : first + subquery.count("?")])
    else:  # asyncpg: $n, renumbered from $1 for the subquery alone
        numbers = list(dict.fromkeys(int(n) for n in re.findall(r"\$(\d+)", subquery)))
        if any(n > len(params) for n in numbers):
            return
        subquery = re.sub(r"\$(\d+)", lambda m: f"${numbers.index(int(m.group(1))) + 1}", subquery)
        values = [params[n - 1] for n in numbers]
    name = column.group(2) or column.group(1)
    try:
        async with conn.begin_nested():  # a subquery that cannot run alone must not abort the check
            nulls = await conn.exec_driver_sql(
                f"SELECT count(*) FROM ({subquery}) AS not_in_subquery WHERE not_in_subquery.{name} IS NULL",
                tuple(values),
            )
            attempt.extra["not_in_null"] = bool(nulls.scalar())
    except Exception:  # unknown: the analysis falls back to the schema
        return


def _rows(value: Any) -> list[tuple[Any, ...]] | None:
    if not isinstance(value, list) or not all(isinstance(r, tuple) for r in value):
        return None
    return value


def _no_null_counts(attempt: Attempt) -> str | None:
    rows = _rows(attempt.value)
    if not rows:
        return None
    nulls = [r for r in rows if r and r[-1] is None]
    if nulls:
        return (
            f"{len(nulls)} {'row has' if len(nulls) == 1 else 'rows have'} None (NULL) instead of a count, e.g. {nulls[0]!r}: the outer "
            "join finds no row in the derived table for them; wrap the column in "
            "func.coalesce(..., 0)"
        )
    return None


def _zero_rows_kept(what: str, fix: str) -> Any:
    """The rows whose expected count is 0 are all there (an inner join drops them)."""

    def test(attempt: Attempt) -> str | None:
        got, want = _rows(attempt.value), _rows(attempt.expected)
        if got is None or want is None:
            return None
        have = {r[0] for r in got}
        dropped = [r for r in want if r[0] not in have]
        if dropped and all(r[-1] == 0 for r in dropped):
            return (
                f"{len(dropped)} {what} with a count of 0 are missing (e.g. id {dropped[0][0]}): an inner "
                f"join, or a WHERE on the joined table, keeps only rows that found a match; {fix}"
            )
        return None

    return test


def _ones_for_zeros(attempt: Attempt) -> str | None:
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if got is None or want is None:
        return None
    zero_ids = {r[0] for r in want if r[-1] == 0}
    ones = [r for r in got if r[0] in zero_ids and r[-1] == 1]
    if zero_ids and ones:
        return (
            f"post {ones[0][0]} has no comments but your count says 1: count(*) counts the row an "
            "outer join makes up for a post without comments; count a column of the comments "
            "table (func.count(Comment.id)), which is NULL there. Better, as this exercise asks: count in "
            "a correlated scalar subquery, which sees only that post's real comments"
        )
    return None


# ----------------------------------------------------------------------------- q1 derived table


def _q1_solution():
    published = (
        select(Post.author_id, func.count(Post.id).label("published_posts"))
        .where(Post.status == "published")
        .group_by(Post.author_id)
        .subquery()
    )
    return (
        select(User.id, func.coalesce(published.c.published_posts, 0).label("published_posts"))
        .outerjoin(published, User.id == published.c.author_id)
        .where(User.country == "NL")
        .order_by(User.id)
    )


def _q1_published():
    return (
        select(Post.author_id, func.count(Post.id).label("published_posts"))
        .where(Post.status == "published")
        .group_by(Post.author_id)
        .subquery()
    )


def _q1_no_coalesce():
    published = _q1_published()
    return (
        select(User.id, published.c.published_posts)
        .outerjoin(published, User.id == published.c.author_id)
        .where(User.country == "NL")
        .order_by(User.id)
    )


def _q1_inner_join():
    published = _q1_published()
    return (
        select(User.id, published.c.published_posts)
        .join(published, User.id == published.c.author_id)
        .where(User.country == "NL")
        .order_by(User.id)
    )


def _q1_where_on_outer_join():
    return (
        select(User.id, func.count(Post.id).label("published_posts"))
        .outerjoin(Post, Post.author_id == User.id)
        .where(User.country == "NL", Post.status == "published")
        .group_by(User.id)
        .order_by(User.id)
    )


def _q1_every_status():
    every = select(Post.author_id, func.count(Post.id).label("n")).group_by(Post.author_id).subquery()
    return (
        select(User.id, func.coalesce(every.c.n, 0).label("published_posts"))
        .outerjoin(every, User.id == every.c.author_id)
        .where(User.country == "NL")
        .order_by(User.id)
    )


def _q1_counts_too_high(attempt: Attempt) -> str | None:
    if _q1_count_star(attempt):  # 1 where 0 belongs: not a status filter forgotten, see that rule
        return None
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if got is None or want is None or [r[0] for r in got] != [r[0] for r in want]:
        return None
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if isinstance(g[-1], int) and g[-1] != w[-1]]
    if pairs and all(g[-1] > w[-1] for g, w in pairs):
        g, w = pairs[0]
        return (
            f"some counts are too high (user {g[0]}: {g[-1]}, expected {w[-1]}): count only the posts "
            "with status 'published', with a WHERE inside the derived table"
        )
    return None


def _numbers_lead(attempt: Attempt) -> str:
    """How a form rule opens: it also fails when the rows are wrong, and must not call them right."""
    right = normal(attempt.value) == normal(attempt.expected)
    return "the right numbers, but" if right else "your numbers come"


def _q1_count_star(attempt: Attempt) -> str | None:
    """count(*) over an outer join: 1 exactly where 0 belongs, every other count right."""
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if not got or not want or [r[0] for r in got] != [r[0] for r in want] or any(len(r) < 2 for r in got):
        return None
    pairs = list(zip(got, want, strict=True))
    zeros = [g for g, w in pairs if w[-1] == 0]
    if zeros and all(g[-1] == 1 for g in zeros) and all(g == w for g, w in pairs if w[-1] != 0):
        others = f" (and so do the other {len(zeros) - 1} users without one)" if len(zeros) > 1 else ""
        return (
            f"user {zeros[0][0]} has no published post, but your count says 1{others}: "
            "count(*) over an outer join counts the row of NULLs the "
            "join makes up for them. Count inside a derived table, as this exercise asks (its rows are real "
            "posts), or count a column of posts, `func.count(Post.id)`, which is NULL on that row"
        )
    return None


_FROM_SUBQUERY = re.compile(r"\b(?:FROM|JOIN)\s*\(\s*SELECT\b", re.I)


def _q1_derived_table(attempt: Attempt) -> str | None:
    """The task practises a derived table: a subquery in FROM/JOIN (``.subquery()``) or a CTE."""
    reads = [q for q in attempt.log.queries if q.verb in ("SELECT", "WITH")]
    if not reads:
        return None
    sql = reads[0].sql
    if _FROM_SUBQUERY.search(sql) or reads[0].verb == "WITH":
        return None
    how = (
        "a correlated scalar subquery in the SELECT list"
        if re.search(r"\(\s*SELECT\b", sql, re.I)
        else "a GROUP BY over the join" if re.search(r"\bGROUP BY\b", sql, re.I) else "a query"
    )
    return (
        f"{_numbers_lead(attempt)} from {how}, not a derived table: this exercise practises "
        "counting in a subquery in FROM. Build select(Post.author_id, func.count(Post.id)...)"
        ".group_by(Post.author_id).subquery() (or .cte()) and outer-join it to User"
    )


def _q1_scalar_subquery():
    n = (
        select(func.count(Post.id))
        .where(Post.author_id == User.id, Post.status == "published")
        .scalar_subquery()
        .label("published_posts")
    )
    return select(User.id, n).where(User.country == "NL").order_by(User.id)


def _q1_join_on_condition():
    return (
        select(User.id, func.count(Post.id).label("published_posts"))
        .outerjoin(Post, and_(Post.author_id == User.id, Post.status == "published"))
        .where(User.country == "NL")
        .group_by(User.id)
        .order_by(User.id)
    )


def _q1_count_star_join():
    return (
        select(User.id, func.count().label("published_posts"))
        .outerjoin(Post, and_(Post.author_id == User.id, Post.status == "published"))
        .where(User.country == "NL")
        .group_by(User.id)
        .order_by(User.id)
    )


def _q1_cte():
    published = (
        select(Post.author_id, func.count(Post.id).label("n"))
        .where(Post.status == "published")
        .group_by(Post.author_id)
        .cte("published")
    )
    return (
        select(User.id, func.coalesce(published.c.n, 0).label("published_posts"))
        .join_from(User, published, User.id == published.c.author_id, isouter=True)
        .where(User.country == "NL")
        .order_by(User.id)
    )


q1 = Exercise(
    id="05.q1",
    title="Published posts per Dutch user, zeros included",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference(
        "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.status = 'published') "
        "FROM users u WHERE u.country = 'NL' ORDER BY u.id"
    ),
    rules=[
        Probe(_no_null_counts, name="counts, not NULLs"),
        Probe(
            _zero_rows_kept("users", "join the derived table with outerjoin() and filter inside it"),
            name="users without published posts kept",
        ),
        Probe(_q1_count_star, name="users without published posts count 0"),
        Probe(_q1_counts_too_high, name="published posts only"),
        Columns(["id", "published_posts"]),
        SameResult(ordered=True),
        Probe(_q1_derived_table, name="a derived table (a subquery in FROM)"),
        StatementBudget(1),
        BoundParameters(["NL", "published"]),
    ],
    hints=[
        "Count first, join second: a subquery of (author_id, published_posts) over published posts, "
        "grouped by author_id, then .subquery().",
        "Join users to it with .outerjoin(published, User.id == published.c.author_id), so users "
        "without published posts stay; filter User.country in the outer query.",
        "Users the subquery has no row for get NULL: select "
        "func.coalesce(published.c.published_posts, 0).label(\"published_posts\").",
    ],
    why="Aggregating in a derived table first, then outer-joining it, keeps every user and never "
    "multiplies rows; coalesce turns 'no row' into the 0 you mean.",
    counterexamples=[
        Counterexample("no coalesce", _q1_no_coalesce, "coalesce"),
        Counterexample("inner join to the derived table", _q1_inner_join, "inner join"),
        Counterexample("WHERE on the outer-joined table", _q1_where_on_outer_join, "a where on the joined table"),
        Counterexample("every status counted", _q1_every_status, "too high"),
        Counterexample("right rows from a scalar subquery", _q1_scalar_subquery, "not a derived table"),
        Counterexample("right rows from GROUP BY over the join", _q1_join_on_condition, "GROUP BY over the join"),
        Counterexample("count(*) over the outer join", _q1_count_star_join, "count(*) over an outer join counts"),
    ],
)


# ----------------------------------------------------------------------------- q2 correlated scalar subquery

Q2_AUTHOR = 346


def _q2_solution():
    comment_count = (
        select(func.count(Comment.id))
        .where(Comment.post_id == Post.id)
        .correlate(Post)
        .scalar_subquery()
        .label("comment_count")
    )
    return (
        select(Post.id, comment_count)
        .where(Post.author_id == 346)
        .order_by(comment_count.desc(), Post.id)
    )


def _q2_join_group():
    n = func.count(Comment.id).label("comment_count")
    return (
        select(Post.id, n)
        .join(Comment, Comment.post_id == Post.id)
        .where(Post.author_id == 346)
        .group_by(Post.id)
        .order_by(n.desc(), Post.id)
    )


def _q2_count_star():
    n = func.count().label("comment_count")
    return (
        select(Post.id, n)
        .outerjoin(Comment, Comment.post_id == Post.id)
        .where(Post.author_id == 346)
        .group_by(Post.id)
        .order_by(n.desc(), Post.id)
    )


def _q2_ties_reversed():
    comment_count = (
        select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery().label("comment_count")
    )
    return (
        select(Post.id, comment_count)
        .where(Post.author_id == 346)
        .order_by(comment_count.desc(), Post.id.desc())
    )


def _q2_by_id():
    comment_count = (
        select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery().label("comment_count")
    )
    return select(Post.id, comment_count).where(Post.author_id == 346).order_by(Post.id)


def _q2_uncorrelated(attempt: Attempt) -> str | None:
    """The same count on every row: a subquery that does not refer to the outer post."""
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if not got or not want or len(got) < 2 or any(len(r) < 2 for r in got):
        return None
    values = {r[-1] for r in got}
    if len(values) == 1 and len({r[-1] for r in want}) > 1:
        return (
            f"every post has the same count ({values.pop()}): your subquery is uncorrelated, it counts "
            "comments of all posts instead of the post on this row. It must refer to the outer query's "
            "posts (Comment.post_id == Post.id, with the same Post as the outer select, not an alias), "
            "and keep only comments in its own FROM: .correlate(Post) makes that explicit"
        )
    return None


def _q2_no_link():
    n = select(func.count(Comment.id)).scalar_subquery().label("comment_count")
    return select(Post.id, n).where(Post.author_id == 346).order_by(n.desc(), Post.id)


def _q2_aliased_inside():
    other = aliased(Post)
    n = select(func.count(Comment.id)).where(Comment.post_id == other.id).scalar_subquery().label("comment_count")
    return select(Post.id, n).where(Post.author_id == 346).order_by(n.desc(), Post.id)


def _q2_outer_join_group():
    n = func.count(Comment.id).label("comment_count")
    return (
        select(Post.id, n)
        .outerjoin(Post.comments)
        .where(Post.author_id == 346)
        .group_by(Post.id)
        .order_by(n.desc(), Post.id)
    )


def _q2_order(attempt: Attempt) -> str | None:
    """Right rows, wrong order: which sort key is missing."""
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if not got or not want or got == want or sorted(got) != sorted(want):
        return None
    if [r[-1] for r in got] == [r[-1] for r in want]:
        return (
            "sorted by comment_count, but posts with equal counts are in another order: break the tie "
            "with Post.id, ascending, as the second ORDER BY key: .order_by(comment_count.desc(), Post.id)"
        )
    return (
        "the right rows, not sorted by comment_count: most-commented first is "
        ".order_by(comment_count.desc(), Post.id)"
    )


def _q2_tie_breaker(attempt: Attempt) -> str | None:
    """Whether the rows tie here depends on the backend's luck: read the ORDER BY itself."""
    sql = _first_sql(attempt)
    keys = order_by_keys(sql)
    if len(keys) != 1 or "comment_count" not in keys[0] or orders_by(sql, "posts.id"):
        return None
    return (
        "your ORDER BY has only comment_count: posts with the same count come back in whatever order the "
        "database meets them (here it may look right by chance). Add Post.id as the tie-breaker: "
        ".order_by(comment_count.desc(), Post.id)"
    )


def _q2_author_inside(attempt: Attempt) -> str | None:
    """The author filter written inside the count subquery: the outer query keeps every post."""
    got, want = _rows(attempt.value), _rows(attempt.expected)
    sql = _first_sql(attempt)
    if got is None or want is None or len(got) <= len(want) or not has_scalar_subquery(sql):
        return None
    inside = re.search(r"\bauthor_id\b", select_list(sql), re.I)
    outside = re.search(r"\bauthor_id\b", _outside_parentheses(sql), re.I)
    if not inside or outside:
        return None
    return (
        f"your outer query has no author filter, so it lists {len(got)} posts, every author's: "
        f"`Post.author_id == {Q2_AUTHOR}` is inside the comment-count subquery, where it only zeroes the "
        f"other posts' counts. Move it to the outer query: `select(Post.id, comment_count)"
        f".where(Post.author_id == {Q2_AUTHOR})`"
    )


def _q2_author_in_subquery():
    comment_count = (
        select(func.count(Comment.id))
        .where(Comment.post_id == Post.id, Post.author_id == 346)
        .scalar_subquery()
        .label("comment_count")
    )
    return select(Post.id, comment_count).order_by(comment_count.desc(), Post.id)


def _q2_correlated_form(attempt: Attempt) -> str | None:
    """The task practises a correlated scalar subquery: a ``(SELECT ...)`` in the SELECT list."""
    sql = _first_sql(attempt)
    if not sql or has_scalar_subquery(sql):
        return None
    how = (
        "a CTE" if sql.lstrip().upper().startswith("WITH")
        else "a derived table (a subquery in FROM)" if _FROM_SUBQUERY.search(sql)
        else "a join and GROUP BY" if re.search(r"\bGROUP BY\b", sql, re.I)
        else "a query without a subquery"
    )
    return (
        f"{_numbers_lead(attempt)} from {how}, not a correlated scalar subquery: this exercise practises "
        "a subquery in the SELECT list that refers to the outer post, so it counts that post's comments, "
        "one value per row. Build `comment_count = select(func.count(Comment.id)).where(Comment.post_id == "
        "Post.id).scalar_subquery().label(\"comment_count\")`, then `select(Post.id, comment_count)`"
    )


def _q2_derived_table():
    counts = select(Comment.post_id, func.count(Comment.id).label("n")).group_by(Comment.post_id).subquery()
    n = func.coalesce(counts.c.n, 0).label("comment_count")
    return (
        select(Post.id, n)
        .outerjoin(counts, counts.c.post_id == Post.id)
        .where(Post.author_id == 346)
        .order_by(n.desc(), Post.id)
    )


def _q2_auto_correlated():
    comment_count = (
        select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery().label("comment_count")
    )
    return select(Post.id, comment_count).where(Post.author_id == 346).order_by(comment_count.desc(), Post.id)


def _q2_correlate_except():
    comment_count = (
        select(func.count())
        .select_from(Comment)
        .where(Comment.post_id == Post.id)
        .correlate_except(Comment)
        .scalar_subquery()
        .label("comment_count")
    )
    return select(Post.id, comment_count).where(Post.author_id == 346).order_by(comment_count.desc(), Post.id)


def _q2_no_tie_breaker():
    comment_count = (
        select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery().label("comment_count")
    )
    return select(Post.id, comment_count).where(Post.author_id == 346).order_by(comment_count.desc())


q2 = Exercise(
    id="05.q2",
    title="An author's posts by comment count",
    kind=STATEMENT,
    solution_answer=_q2_solution,
    expected=sql_reference(
        "SELECT p.id, count(c.id) FROM posts p LEFT OUTER JOIN comments c ON c.post_id = p.id "
        "WHERE p.author_id = 346 GROUP BY p.id ORDER BY count(c.id) DESC, p.id"
    ),
    rules=[
        Probe(_q2_uncorrelated, name="one count per post (correlated)"),
        Probe(_ones_for_zeros, name="posts without comments count 0"),
        Probe(
            _zero_rows_kept("posts", "a correlated count subquery in the SELECT list keeps every post"),
            name="posts without comments kept",
        ),
        Probe(_q2_author_inside, name="the author filter not hidden in the count subquery"),
        Columns(["id", "comment_count"]),
        Probe(_q2_order, name="most-commented first, ties by id"),
        Probe(_q2_tie_breaker, name="a tie-breaker"),
        SameResult(ordered=True),
        Probe(_q2_correlated_form, name="a correlated scalar subquery (in the SELECT list)"),
        StatementBudget(1),
        BoundParameters([Q2_AUTHOR]),
    ],
    hints=[
        "Build the count as its own select: select(func.count(Comment.id)).where(Comment.post_id == Post.id).",
        "Turn it into a column with .scalar_subquery().label(\"comment_count\") (add .correlate(Post) to "
        "say which table comes from outside), then select(Post.id, comment_count).",
        "Filter Post.author_id == 346 and sort with .order_by(comment_count.desc(), Post.id): the id breaks ties.",
    ],
    why="A correlated scalar subquery is a per-row calculation that can never drop or multiply the "
    "outer rows, which makes it the safest way to add one aggregate to a list.",
    counterexamples=[
        Counterexample("join and group by", _q2_join_group, "posts with a count of 0 are missing"),
        Counterexample("outer join with count(*)", _q2_count_star, "count(*)"),
        Counterexample("ties broken the wrong way", _q2_ties_reversed, "break the tie"),
        Counterexample("no tie-breaker (right on SQLite by chance)", _q2_no_tie_breaker, "add post.id as the tie-breaker"),
        Counterexample("ordered by id only", _q2_by_id, "not sorted by comment_count"),
        Counterexample("subquery with no link to the post", _q2_no_link, "uncorrelated"),
        Counterexample(
            "the author filter inside the subquery", _q2_author_in_subquery,
            "is inside the comment-count subquery, where it only zeroes the other posts' counts",
        ),
        Counterexample("an alias of Post inside the subquery", _q2_aliased_inside, "uncorrelated"),
        Counterexample(
            "right rows from an outer join and GROUP BY", _q2_outer_join_group,
            "from a join and GROUP BY, not a correlated scalar subquery",
        ),
        Counterexample(
            "right rows from a derived table", _q2_derived_table, "from a derived table (a subquery in FROM), not a correlated",
        ),
    ],
)


# ----------------------------------------------------------------------------- q3 NOT EXISTS


def _q3_solution():
    cancelled = exists().where(Order.user_id == User.id, Order.status == "cancelled")
    return select(User.id).where(~cancelled).order_by(User.id)


async def _q3_probe(conn: Any, attempt: Attempt, **_: Any) -> None:
    rows = await conn.execute(text("SELECT DISTINCT user_id FROM orders WHERE status = 'cancelled'"))
    attempt.extra["cancelled_users"] = {r[0] for r in rows}
    await not_in_returns_null(conn, attempt)


def _q3_no_cancelled_user(attempt: Attempt) -> str | None:
    got = attempt.value
    if not isinstance(got, list):
        return None
    sql = _first_sql(attempt)
    if re.search(r"count\s*\(\s*orders\.status\s*(=|!=|<>)", sql, re.I):
        return (
            "count(Order.status == \"cancelled\") counts every order whose comparison is not NULL, true or "
            "false alike: it is each user's number of orders, never 0 here. Ask for the absence of a "
            "cancelled order instead: ~exists().where(Order.user_id == User.id, Order.status == \"cancelled\")"
        )
    subquery = _parenthesized_after(sql, "EXISTS")
    if not got and attempt.expected and subquery and "users.id" not in subquery.lower():
        return (
            "your EXISTS never refers to the user on the row (it is uncorrelated): it asks whether any "
            "cancelled order exists at all, which is true, so NOT EXISTS drops every user. Link it to the "
            "outer user: exists().where(Order.user_id == User.id, Order.status == \"cancelled\")"
        )
    not_in = _parenthesized_after(sql, "NOT IN")
    if not got and attempt.expected and re.match(r"\s*SELECT\b", not_in) and "status" not in not_in.lower():
        return (
            "your query returned no users: your NOT IN subquery lists the user of every order, cancelled or "
            "not, and every user has placed orders, so NOT IN excludes them all. Keep only the cancelled "
            "orders in the subquery: `select(Order.user_id).where(Order.status == \"cancelled\")`"
        )
    if not got and attempt.expected:
        return (
            "your query returned no users. Every user has placed orders, so a test for 'no orders at "
            "all' (or an inner join looking for a row that is not there) finds nobody; test for the "
            "absence of a *cancelled* order with ~exists().where(...)"
        )
    cancelled = attempt.extra.get("cancelled_users", set())
    bad = [u for u in got if u in cancelled]
    if bad:
        return (
            f"{len(set(bad))} of your users do have a cancelled order (e.g. user {bad[0]}): "
            f"{_q3_some_other_order(sql)}. Ask for the absence of a cancelled order instead: "
            "~exists().where(Order.user_id == User.id, Order.status == \"cancelled\"), or "
            "~User.orders.any(Order.status == \"cancelled\")"
        )
    return None


_NOT_EQUAL_STATUS = re.compile(r"\bstatus\s*(?:!=|<>)", re.I)


def _q3_some_other_order(sql: str) -> str:
    """What the answer's test for a non-cancelled order asks, said for the form it wrote."""
    if not _NOT_EQUAL_STATUS.search(sql):
        return "your test finds users with *some* order that passes it, and most of them also have a cancelled one"
    # ~exists() renders NOT (EXISTS (...)); a NOT EXISTS keeps the users with no such order
    found = re.search(r"(\bNOT\s*\(?\s*)?\bEXISTS\s*\(", sql, re.I)
    subquery = _parenthesized_after(sql, "EXISTS")
    if found and _NOT_EQUAL_STATUS.search(subquery):
        # Relationship.any() renders EXISTS (SELECT 1 FROM orders WHERE users.id = orders.user_id AND ...)
        any_ = re.match(r"\s*SELECT 1\b", subquery) and re.search(r"\busers\.id = orders\.user_id\b", subquery)
        wrote = "`User.orders.any(Order.status != \"cancelled\")`" if any_ else "EXISTS subquery on status != 'cancelled'"
        if found.group(1):
            return (
                f"your negated {wrote} (a NOT EXISTS) keeps only the users who have no order other than a "
                "cancelled one: negate a test for the cancelled order itself"
            )
        if any_:
            return (
                f"your {wrote} is an EXISTS subquery: it finds users with *some* order that is not "
                "cancelled, and says nothing about their other orders"
            )
        return f"your {wrote} finds users with *some* order that is not cancelled, and says nothing about their other orders"
    if re.search(r"\bIN\s*\(\s*SELECT\b", sql, re.I):
        return "your IN subquery on status != 'cancelled' finds users with *some* other order"
    return "a join on status != 'cancelled' finds users with *some* other order"


def _q3_not_equal_join():
    return (
        select(User.id)
        .join(Order, Order.user_id == User.id)
        .where(Order.status != "cancelled")
        .distinct()
        .order_by(User.id)
    )


def _q3_no_orders_at_all():
    return select(User.id).where(~User.orders.any()).order_by(User.id)


def _q3_inner_anti_join():
    return (
        select(User.id)
        .join(Order, and_(Order.user_id == User.id, Order.status == "cancelled"))
        .where(Order.id.is_(None))
        .order_by(User.id)
    )


q3 = Exercise(
    id="05.q3",
    title="Users who never cancelled an order",
    kind=STATEMENT,
    solution_answer=_q3_solution,
    expected=sql_reference(
        "SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM orders WHERE status = 'cancelled') "
        "ORDER BY id",
        flat=True,
    ),
    probe=_q3_probe,
    rules=[
        Probe(_q3_no_cancelled_user, name="nobody with a cancelled order"),
        Columns(["id"]),
        SameResult(ordered=True, what="users"),
        StatementBudget(1),
        BoundParameters(["cancelled"]),
    ],
    hints=[
        "A join can only find rows that are there. You are asking about an order that is *not* there.",
        "exists().where(Order.user_id == User.id, Order.status == \"cancelled\") is true for users "
        "with a cancelled order; ~ negates it (NOT EXISTS).",
        "select(User.id).where(~exists().where(...)).order_by(User.id), or the relationship shortcut "
        "~User.orders.any(Order.status == \"cancelled\").",
    ],
    why="NOT EXISTS states 'no such row' directly, cannot multiply rows, and (unlike NOT IN) is not "
    "fooled by a NULL in the subquery.",
    counterexamples=[
        Counterexample(
            "no ORDER BY",
            lambda: select(User.id).where(~exists().where(Order.user_id == User.id, Order.status == "cancelled")),
            "no ORDER BY",
        ),
        Counterexample("join on status != 'cancelled'", _q3_not_equal_join, "a join on status != 'cancelled'"),
        Counterexample(
            "any() with status != 'cancelled'",
            lambda: select(User.id).where(User.orders.any(Order.status != "cancelled")).order_by(User.id),
            "your `User.orders.any(Order.status != \"cancelled\")` is an EXISTS subquery",
        ),
        Counterexample("users with no orders at all", _q3_no_orders_at_all, "no users"),
        Counterexample(
            "NOT IN over every order's user (no NULL there to blame)",
            lambda: select(User.id).where(User.id.not_in(select(Order.user_id))).order_by(User.id),
            "your NOT IN subquery lists the user of every order, cancelled or not",
        ),
        Counterexample("inner join looking for NULL", _q3_inner_anti_join, "no users"),
        Counterexample(
            "an uncorrelated NOT EXISTS",
            lambda: select(User.id).where(~exists().where(Order.status == "cancelled")).order_by(User.id),
            "uncorrelated",
        ),
        Counterexample(
            "count of a comparison equals 0",
            lambda: select(User.id).join(Order, Order.user_id == User.id).group_by(User.id)
            .having(func.count(Order.status == "cancelled") == 0).order_by(User.id),
            "true or false alike",
        ),
    ],
)


# ----------------------------------------------------------------------------- q4 recursive CTE


async def _q4_solution(session, user_id):
    invited = (
        select(User.id, literal(1).label("depth"))
        .where(User.invited_by_id == user_id)
        .cte("invited", recursive=True)
    )
    invited = invited.union_all(
        select(User.id, invited.c.depth + 1).join(invited, User.invited_by_id == invited.c.id)
    )
    result = await session.execute(select(invited.c.id, invited.c.depth).order_by(invited.c.id))
    return result.all()


_Q4_REFERENCE = sql_reference(
    """
    WITH RECURSIVE tree(id, depth) AS (
        SELECT id, 1 FROM users WHERE invited_by_id = :user_id
        UNION ALL
        SELECT u.id, tree.depth + 1 FROM users u JOIN tree ON u.invited_by_id = tree.id
    )
    SELECT id, depth FROM tree ORDER BY id
    """
)


async def _q4_probe(conn: Any, attempt: Attempt, user_id: int) -> None:
    """The user's inviters, up to the root: what a CTE walking the wrong way finds."""
    chain, current = set(), user_id
    while current is not None and current not in chain:
        chain.add(current)
        current = (
            await conn.execute(text("SELECT invited_by_id FROM users WHERE id = :id"), {"id": current})
        ).scalar()
    attempt.extra["up_the_tree"] = chain


def _q4_walks_up(sql: str) -> tuple[str, str] | None:
    """The recursive part's join, when it reaches the inviters of the rows found so far.

    ``X.id = tree.invited_by_id``: the new row X is the one a found row names as its inviter (up);
    going down, the new row names a found one: ``X.invited_by_id = tree.id``. Read from the SQL
    after the CTE's UNION, so a start that looks up the user's own inviter does not count.
    """
    name = re.search(r"\bWITH\s+RECURSIVE\s+(\w+)", sql, re.I)
    union = re.search(r"\bUNION(?:\s+ALL)?\b", sql, re.I)
    if not name or not union:
        return None
    cte, recursive = name.group(1), sql[union.end():]
    for pattern in (rf"\b(\w+)\.id\s*=\s*{cte}\.invited_by_id\b", rf"\b{cte}\.invited_by_id\s*=\s*(\w+)\.id\b"):
        found = re.search(pattern, recursive, re.I)
        if found and found.group(1).lower() != cte.lower():
            return found.group(0), cte
    return None


def _q4_direction(attempt: Attempt) -> str | None:
    got, want = attempt.value, _rows(attempt.expected)
    if isinstance(got, list) and got and want and all(isinstance(i, int) for i in got):
        return (
            "your function returns bare ids: each row should be (id, depth). Select both columns "
            "and return result.all() (scalars() keeps only the first column)"
        )
    walks_up = _q4_walks_up(_first_sql(attempt))
    if walks_up and normal(got) != normal(attempt.expected):
        up, cte = walks_up
        return (
            f"your CTE walks up the tree: its recursive part joins on `{up}`, so each round adds the "
            "inviters of the users found so far, not the users they invited. To go down to the invitees, "
            f"join the next users by their own invited_by_id: `User.invited_by_id == {cte}.c.id`"
        )
    got = _rows(got)
    if got is None or want is None:
        return None
    wanted = {r[0] for r in want}
    extra = {r[0] for r in got if r} - wanted
    up = attempt.extra.get("up_the_tree") or set()
    if extra and extra <= up and wanted - {r[0] for r in got if r}:
        return (
            f"your CTE walks up the tree: it found user {min(extra)}, who is the user or one of their "
            "inviters, not the users they invited. In the recursive part, join the next users to the "
            "CTE by their own invited_by_id: User.invited_by_id == invited.c.id"
        )
    return None


async def _q4_walking_up(session, user_id):
    up = select(User.id, User.invited_by_id, literal(1).label("depth")).where(User.invited_by_id == user_id)
    up = up.cte("up", recursive=True)
    up = up.union_all(select(User.id, User.invited_by_id, up.c.depth + 1).join(up, User.id == up.c.invited_by_id))
    return (await session.execute(select(up.c.id, up.c.depth).order_by(up.c.id))).all()


async def _q4_up_from_the_inviter(session, user_id):
    """The learner trial's answer: it starts at the user's inviter and climbs (no rows for user 1)."""
    inviter = select(User.invited_by_id).where(User.id == user_id).scalar_subquery()
    tree = select(User.id, User.invited_by_id, literal(1).label("depth")).where(User.id == inviter)
    tree = tree.cte("tree", recursive=True)
    tree = tree.union_all(
        select(User.id, User.invited_by_id, tree.c.depth + 1).join(tree, User.id == tree.c.invited_by_id)
    )
    return (await session.execute(select(tree.c.id, tree.c.depth).order_by(tree.c.id))).all()


async def _q4_ids_only(session, user_id):
    invited = select(User.id, literal(1).label("depth")).where(User.invited_by_id == user_id)
    invited = invited.cte("invited", recursive=True)
    invited = invited.union_all(select(User.id, invited.c.depth + 1).join(invited, User.invited_by_id == invited.c.id))
    return (await session.scalars(select(invited.c.id, invited.c.depth).order_by(invited.c.id))).all()


def _q4_shape(attempt: Attempt) -> str | None:
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if got is None or want is None or not want:
        return None
    want_depth = dict(want)
    got_ids = [r[0] for r in got]
    if set(got_ids) - set(want_depth) and len(set(got_ids) - set(want_depth)) == 1 and len(got) == len(want) + 1:
        extra = (set(got_ids) - set(want_depth)).pop()
        return (
            f"your result includes user {extra}, the one whose invitees you were asked for: start the "
            "CTE from the users they invited (invited_by_id == user_id), at depth 1"
        )
    if set(got_ids) == set(want_depth) and len(got) == len(want):
        shifts = {r[1] - want_depth[r[0]] for r in got if isinstance(r[1], int)}
        if len(shifts) == 1 and shifts != {0}:
            return (
                f"the right users, but every depth is off by {shifts.pop():+d}: the users invited directly "
                "have depth 1, their invitees 2, ..."
            )
    if got and set(got_ids) < set(want_depth) and all(want_depth.get(i) == 1 for i in got_ids):
        return (
            "only the direct invitees: the recursive part must join users to the CTE itself "
            "(User.invited_by_id == invited.c.id), so each round finds the next generation"
        )
    return None


async def _q4_direct_only(session, user_id):
    result = await session.execute(
        select(User.id, literal(1).label("depth")).where(User.invited_by_id == user_id).order_by(User.id)
    )
    return result.all()


async def _q4_includes_self(session, user_id):
    tree = select(User.id, literal(0).label("depth")).where(User.id == user_id).cte("tree", recursive=True)
    tree = tree.union_all(select(User.id, tree.c.depth + 1).join(tree, User.invited_by_id == tree.c.id))
    result = await session.execute(select(tree.c.id, tree.c.depth).order_by(tree.c.id))
    return result.all()


async def _q4_depth_from_zero(session, user_id):
    tree = select(User.id, literal(0).label("depth")).where(User.invited_by_id == user_id).cte("tree", recursive=True)
    tree = tree.union_all(select(User.id, tree.c.depth + 1).join(tree, User.invited_by_id == tree.c.id))
    result = await session.execute(select(tree.c.id, tree.c.depth).order_by(tree.c.id))
    return result.all()


async def _q4_aliased_child(session, user_id):
    """The next generation as an alias joined to the CTE (users_1.invited_by_id = tree.id)."""
    tree = select(User.id.label("id"), literal(0).label("depth")).where(User.id == user_id).cte("tree", recursive=True)
    child = aliased(User)
    tree = tree.union_all(
        select(child.id, tree.c.depth + 1).select_from(tree).join(child, child.invited_by_id == tree.c.id)
    )
    result = await session.execute(select(tree.c.id, tree.c.depth).where(tree.c.depth > 0).order_by(tree.c.id))
    return result.all()


async def _q4_from_the_user(session, user_id):
    """Start at the user (depth 0) and leave them out at the end: the same rows."""
    tree = select(User.id, literal(0).label("depth")).where(User.id == user_id).cte("tree", recursive=True)
    tree = tree.union_all(select(User.id, tree.c.depth + 1).join(tree, User.invited_by_id == tree.c.id))
    result = await session.execute(select(tree.c.id, tree.c.depth).where(tree.c.depth > 0).order_by(tree.c.id))
    return result.all()


async def _q4_python_loop(session, user_id):
    found, level, depth = [], [user_id], 1
    while level:
        rows = await session.execute(select(User.id).where(User.invited_by_id.in_(level)))
        level = rows.scalars().all()
        found += [(i, depth) for i in level]
        depth += 1
    return sorted(found)


def _q4_one_statement(attempt: Attempt) -> str | None:
    n = len(attempt.log.queries)
    if n > 1:
        return (
            f"your answer took {n} statements, one per generation of invitees: a recursive CTE lets "
            "the database do that loop, in one statement however deep the tree"
        )
    return None


q4 = Exercise(
    id="05.q4",
    title="Everyone a user invited, directly or not",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_Q4_REFERENCE,
    calls=({"user_id": 1}, {"user_id": 17}, {"user_id": 500}),
    probe=_q4_probe,
    rules=[
        Probe(_q4_direction, name="down the tree, as (id, depth) rows"),
        Probe(_q4_shape, name="the whole invitation tree, depth from 1"),
        SameResult(ordered=True),
        Probe(_q4_one_statement, name="one statement"),
        StatementBudget(1),
        BoundParameters([17]),
    ],
    hints=[
        "A recursive CTE has two parts: a starting SELECT (the users invited directly by user_id, depth 1) "
        "and a SELECT that joins users to the CTE itself, depth + 1, glued with union_all().",
        "invited = select(User.id, literal(1).label(\"depth\")).where(User.invited_by_id == user_id)"
        ".cte(\"invited\", recursive=True); then invited = invited.union_all(select(...).join(invited, ...)).",
        "The recursive part: select(User.id, invited.c.depth + 1).join(invited, User.invited_by_id == "
        "invited.c.id). Finish with select(invited.c.id, invited.c.depth).order_by(invited.c.id) and "
        "return result.all().",
    ],
    why="A recursive CTE walks a tree of any depth in one statement: the database loops, not your "
    "code, so there is one round trip however deep the tree goes.",
    counterexamples=[
        Counterexample("direct invitees only", _q4_direct_only, "only the direct invitees"),
        Counterexample("the user is included", _q4_includes_self, "includes user"),
        Counterexample("depth counted from 0", _q4_depth_from_zero, "off by -1"),
        Counterexample("one query per generation", _q4_python_loop, "one per generation"),
        Counterexample("walks up to the inviters", _q4_walking_up, "walks up the tree"),
        Counterexample(
            "walks up, starting from the user's own inviter", _q4_up_from_the_inviter,
            "its recursive part joins on users.id = tree.invited_by_id",
        ),
        Counterexample("ids only (scalars())", _q4_ids_only, "each row should be (id, depth)"),
    ],
)


# ----------------------------------------------------------------------------- q5 window function


def _q5_solution():
    ranked = (
        select(
            Post.author_id,
            Post.id.label("post_id"),
            func.row_number()
            .over(partition_by=Post.author_id, order_by=(Post.published_at.desc(), Post.id.desc()))
            .label("rn"),
            func.count().over(partition_by=Post.author_id).label("published_posts"),
        )
        .where(Post.status == "published")
        .subquery()
    )
    return (
        select(ranked.c.author_id, ranked.c.post_id, ranked.c.published_posts)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.author_id)
    )


_Q5_REFERENCE = sql_reference(
    """
    SELECT p.author_id, p.id,
           (SELECT count(*) FROM posts x WHERE x.author_id = p.author_id AND x.status = 'published')
    FROM posts p
    WHERE p.status = 'published' AND NOT EXISTS (
        SELECT 1 FROM posts q
        WHERE q.author_id = p.author_id AND q.status = 'published'
          AND (q.published_at > p.published_at OR (q.published_at = p.published_at AND q.id > p.id))
    )
    ORDER BY p.author_id
    """
)


async def _q5_probe(conn: Any, attempt: Attempt, **_: Any) -> None:
    highest = await conn.execute(
        text("SELECT author_id, max(id) FROM posts WHERE status = 'published' GROUP BY author_id")
    )
    attempt.extra["highest_id"] = dict(highest.all())
    oldest = await conn.execute(text(
        "SELECT author_id, id FROM posts p WHERE status = 'published' AND NOT EXISTS (SELECT 1 FROM posts q "
        "WHERE q.author_id = p.author_id AND q.status = 'published' AND (q.published_at < p.published_at "
        "OR (q.published_at = p.published_at AND q.id < p.id)))"
    ))
    attempt.extra["oldest_id"] = dict(oldest.all())


def _window_orders(sql: str) -> list[str]:
    """The ORDER BY of every window (``OVER (... ORDER BY ...)``) in ``sql``, lower case."""
    found = []
    for match in re.finditer(r"\bOVER\s*\(", sql, re.I):
        over = _parenthesized_after(sql[match.start():], "OVER").lower()
        if "order by" in over:
            found.append(over.split("order by", 1)[1])
    return found


def _q5_window_order(attempt: Attempt) -> str | None:
    """What the window is ordered by, read from the SQL (ties make the rows depend on luck)."""
    orders = _window_orders(_first_sql(attempt))
    if not orders:
        return None
    order = orders[0]
    keys = [k.strip() for k in order.split(",")]
    latest = [k for k in keys if "published_at" in k]
    ids = [k for k in keys if re.match(r"^(?:\w+\.)?(?:id|post_id)\b", k)]
    if (latest and ids and re.search(r"\bdesc\b", latest[0]) and not re.search(r"\bdesc\b", ids[0])
            and normal(attempt.value) != normal(attempt.expected)):
        return (
            "on a tie you keep the lower id; the task wants the higher: `Post.id.desc()`. Your window "
            "orders by published_at, newest first, then by the id ascending, so of two posts published "
            "in the same second, row 1 is the one with the lower id. Use order_by=(Post.published_at.desc(), "
            "Post.id.desc())"
        )
    if "published_at" not in order and "created_at" in order:
        return (
            "your window ranks posts by created_at, when they were written; 'latest published' is by "
            "published_at: order_by=(Post.published_at.desc(), Post.id.desc())"
        )
    if "published_at" in order and "posts.id" not in order:
        if "row_number" in _first_sql(attempt).lower():
            return (
                "your window orders by published_at alone: seven authors have two posts published in the same "
                "second, and row_number() then picks either one. Add a tie-breaker: "
                "order_by=(Post.published_at.desc(), Post.id.desc())"
            )
        if re.search(r"\b(?:dense_)?rank\s*\(", _first_sql(attempt), re.I):
            return (
                "your window orders by published_at alone: seven authors have two posts published in the same "
                "second, and rank() gives both of them 1, so both are kept. Add the id as a tie-breaker: "
                "order_by=(Post.published_at.desc(), Post.id.desc())"
            )
    return None


def _q5_counts(attempt: Attempt) -> str | None:
    """published_posts, author by author: a running count (a count() window with ORDER BY) named."""
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if got is None or want is None or any(len(r) < 3 for r in got + want):
        return None
    expected = {r[0]: r[2] for r in want}
    differ = [(r[0], r[2], expected[r[0]]) for r in got if r[0] in expected and normal(r[2]) != normal(expected[r[0]])]
    if not differ:
        return None
    if _count_window_ordered(_first_sql(attempt)):
        ones = all(normal(g) == 1 for _, g, _ in differ) and len(differ) == len(got)
        head = "published_posts is 1 for every author" if ones else "published_posts is a running count"
        return (
            f"{head}: the ORDER BY in your count() window makes it a running count; use "
            "`func.count().over(partition_by=Post.author_id)` without order_by"
        )
    author, mine, theirs = differ[0]
    if all(normal(g) > normal(w) for _, g, w in differ):
        return (
            f"published_posts is too high for {len(differ)} authors (e.g. author {author}: {mine} instead of "
            f"{theirs}): count only the published posts, with the status filter inside the subquery, where "
            "the window counts"
        )
    return f"published_posts differs for {len(differ)} authors (e.g. author {author}: {mine} instead of {theirs})"


def _count_window_ordered(sql: str) -> bool:
    """Whether a ``count(...) OVER (... ORDER BY ...)`` window is in ``sql``."""
    for match in re.finditer(r"\bcount\s*\([^()]*\)\s*OVER\s*\(", sql, re.I):
        if "order by" in _parenthesized_after(sql[match.start():], "OVER").lower():
            return True
    return False


def _q5_which_post(attempt: Attempt) -> str | None:
    got, want = _rows(attempt.value), _rows(attempt.expected)
    if got is None or want is None or any(len(r) < 2 for r in got):
        return None
    if len(got) == 1 and len(want) > 1:
        return (
            "one row for the whole table: without partition_by the window numbers all posts as one "
            "group; partition it by Post.author_id"
        )
    seen: dict[Any, int] = {}
    for r in got:
        seen[r[0]] = seen.get(r[0], 0) + 1
    twice = sorted(a for a, n in seen.items() if n > 1)
    if twice:
        return (
            f"{len(twice)} authors appear more than once (e.g. author {twice[0]}, {seen[twice[0]]} times): "
            "several of their posts share the latest published_at, and both rank() and 'equals the "
            "max' keep every tied row. Use row_number() with a tie-breaker: order_by=(Post.published_at"
            ".desc(), Post.id.desc())"
        )
    got_authors, want_authors = {r[0] for r in got}, {r[0] for r in want}
    if got and got_authors < want_authors:
        missing = sorted(want_authors - got_authors)
        return (
            f"{len(missing)} authors are missing (e.g. author {missing[0]}): you ranked every post and kept "
            "status == 'published' afterwards, so an author whose row 1 is an archived post, or a draft "
            "(PostgreSQL sorts its NULL published_at first in a DESC order), has no row left. Filter "
            "status inside the subquery, before row_number() numbers the rows"
        )
    if len(got) != len(want):
        return None
    picked = {r[0]: r[1] for r in got}
    if picked == {r[0]: r[1] for r in want}:
        return None
    if picked == attempt.extra.get("highest_id"):
        return (
            "you picked each author's highest post id, but ids do not follow publication order here "
            "(a draft can be published long after it was written): rank by published_at instead"
        )
    if picked == attempt.extra.get("oldest_id"):
        return "you picked each author's first published post: order the window by Post.published_at.desc()"
    return None


def _q5_ranked(
    order_by: Any, *, partition: bool = True, published_first: bool = True, ranking: Any = func.row_number
) -> Any:
    ranked = select(
        Post.author_id,
        Post.id.label("post_id"),
        Post.status,
        (
            ranking().over(partition_by=Post.author_id, order_by=order_by)
            if partition
            else ranking().over(order_by=order_by)
        ).label("rn"),
        func.count().over(partition_by=Post.author_id).label("published_posts"),
    )
    if published_first:
        ranked = ranked.where(Post.status == "published")
    ranked = ranked.subquery()
    stmt = select(ranked.c.author_id, ranked.c.post_id, ranked.c.published_posts).where(ranked.c.rn == 1)
    if not published_first:
        stmt = stmt.where(ranked.c.status == "published")
    return stmt.order_by(ranked.c.author_id)


def _q5_filter_after_ranking():
    return _q5_ranked((Post.published_at.desc(), Post.id.desc()), published_first=False)


def _q5_highest_id():
    return (
        select(
            Post.author_id,
            func.max(Post.id).label("post_id"),
            func.count().label("published_posts"),
        )
        .where(Post.status == "published")
        .group_by(Post.author_id)
        .order_by(Post.author_id)
    )


def _q5_rank_ties():
    return _q5_ranked(Post.published_at.desc(), ranking=func.rank)


def _q5_last_of_ascending():
    """The learner trial's form: numbered oldest first in a CTE, the last one kept (rn == count)."""
    ranked = (
        select(
            Post.author_id,
            Post.id.label("post_id"),
            func.row_number().over(partition_by=Post.author_id, order_by=(Post.published_at, Post.id)).label("rn"),
            func.count(Post.id).over(partition_by=Post.author_id).label("published_posts"),
        )
        .where(Post.status == "published")
        .cte("ranked")
    )
    return (
        select(ranked.c.author_id, ranked.c.post_id, ranked.c.published_posts)
        .where(ranked.c.rn == ranked.c.published_posts)
        .order_by(ranked.c.author_id)
    )


def _q5_max_joined_back():
    newest = (
        select(Post.author_id, func.max(Post.published_at).label("newest"), func.count().label("n"))
        .where(Post.status == "published")
        .group_by(Post.author_id)
        .subquery()
    )
    return (
        select(Post.author_id, Post.id.label("post_id"), newest.c.n.label("published_posts"))
        .join(newest, and_(newest.c.author_id == Post.author_id, newest.c.newest == Post.published_at))
        .where(Post.status == "published")
        .order_by(Post.author_id)
    )


def _q5_running_count():
    """The learner trial's form: one window spec for both, so count() got the ORDER BY too."""
    window = {"partition_by": Post.author_id, "order_by": (Post.published_at.desc(), Post.id.desc())}
    ranked = (
        select(
            Post.author_id,
            Post.id.label("post_id"),
            func.row_number().over(**window).label("rn"),
            func.count().over(**window).label("published_posts"),
        )
        .where(Post.status == "published")
        .subquery()
    )
    return (
        select(ranked.c.author_id, ranked.c.post_id, ranked.c.published_posts)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.author_id)
    )


def _q5_oldest():
    return _q5_ranked((Post.published_at, Post.id))


def _q5_no_partition():
    return _q5_ranked((Post.published_at.desc(), Post.id.desc()), partition=False)


q5 = Exercise(
    id="05.q5",
    title="Each author's latest published post, with a window function",
    kind=STATEMENT,
    solution_answer=_q5_solution,
    expected=_Q5_REFERENCE,
    probe=_q5_probe,
    rules=[
        Probe(_q5_which_post, name="the latest published post of each author"),
        Probe(_q5_window_order, name="ranked by published_at, a tie going to the higher id"),
        Probe(_q5_counts, name="each author's number of published posts"),
        Columns(["author_id", "post_id", "published_posts"]),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["published"]),
    ],
    hints=[
        "Keep only published posts first (a WHERE inside the subquery), then number each author's posts "
        "newest first: func.row_number().over(partition_by=Post.author_id, order_by=(Post.published_at.desc(), "
        "Post.id.desc())). func.count().over(partition_by=Post.author_id) counts them on every row.",
        "WHERE cannot see a window function's result: build select(...).where(Post.status == \"published\")"
        ".subquery() with labels (\"rn\", \"published_posts\"), then keep rn == 1 in an outer select.",
        "select(ranked.c.author_id, ranked.c.post_id, ranked.c.published_posts).where(ranked.c.rn == 1)"
        ".order_by(ranked.c.author_id), with Post.id.label(\"post_id\") inside the subquery.",
    ],
    why="A window ordered down to a tie-breaker (row_number(), or rank() with the id as last key) keeps "
    "exactly one row per group even when timestamps tie "
    "(seven authors here have two or more posts published in the same second); the WHERE inside the "
    "subquery decides which rows take part in the ranking.",
    counterexamples=[
        Counterexample("status filtered after ranking", _q5_filter_after_ranking, "filter status inside"),
        Counterexample("max(published_at) joined back", _q5_max_joined_back, "appear more than once"),
        Counterexample("rank() instead of row_number()", _q5_rank_ties, "appear more than once"),
        Counterexample("highest id per author", _q5_highest_id, "highest post id"),
        Counterexample("window ordered oldest first", _q5_oldest, "first published post"),
        Counterexample("window without partition_by", _q5_no_partition, "partition_by"),
        Counterexample(
            "row_number() without a tie-breaker", lambda: _q5_ranked(Post.published_at.desc()), "add a tie-breaker"
        ),
        Counterexample(
            "ranked by created_at", lambda: _q5_ranked((Post.created_at.desc(), Post.id.desc())), "ranks posts by created_at"
        ),
        Counterexample(
            "count() window with an ORDER BY: a running count", _q5_running_count,
            "published_posts is 1 for every author: the ORDER BY in your count() window makes it a running count",
        ),
        Counterexample(
            "tie-breaker ascending: the lower id wins", lambda: _q5_ranked((Post.published_at.desc(), Post.id)),
            "on a tie you keep the lower id; the task wants the higher: `Post.id.desc()`",
        ),
    ],
)


# ----------------------------------------------------------------------------- q6 NOT IN and NULL


def _q6_solution():
    invitee = aliased(User, name="invitee")
    return select(User.id).where(~exists().where(invitee.invited_by_id == User.id)).order_by(User.id)


async def _q6_probe(conn: Any, attempt: Attempt, **_: Any) -> None:
    nobody = await conn.execute(text("SELECT id FROM users WHERE invited_by_id IS NULL"))
    attempt.extra["not_invited"] = {r[0] for r in nobody}
    total = await conn.execute(text("SELECT count(*) FROM users"))
    attempt.extra["all_users"] = total.scalar_one()
    await not_in_returns_null(conn, attempt)


def _q6_which_users(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not isinstance(got, list) or not isinstance(want, list) or sorted(got) == sorted(want):
        return None
    reads = [q.sql for q in attempt.log.queries if q.verb in ("SELECT", "WITH")]
    sql = reads[0] if reads else ""
    if not got and want and re.search(r"\bNOT IN\b", sql, re.I):
        return (
            "no users at all: NOT IN over a column that holds NULL. invited_by_id is NULL for every "
            "user nobody invited, and x NOT IN (..., NULL) is never true (false when x is in the list, "
            "unknown otherwise), so no row "
            "passes. The NULL is the culprit, not the subquery: use ~exists() / ~User.invitees.any(), "
            "or keep the NULLs out of the subquery with .where(User.invited_by_id.is_not(None))"
        )
    if len(got) == attempt.extra.get("all_users") and re.search(r"\bEXISTS\b", sql, re.I):
        return (
            "every user passes: your EXISTS subquery is uncorrelated. User.invited_by_id == User.id "
            "names only one users table, so the subquery keeps its own FROM users and asks 'does anyone "
            "invite themself?' for every row. Give the invitees their own name: invitee = aliased(User), "
            "then ~exists().where(invitee.invited_by_id == User.id)"
        )
    if set(got) == attempt.extra.get("not_invited"):
        return (
            "you listed the users nobody invited (invited_by_id IS NULL). The question is the other "
            "direction: users whom no one names as their inviter, i.e. no row with invited_by_id == their id"
        )
    if got and set(got).isdisjoint(want):
        return (
            "you listed the users who did invite someone: negate the test, ~exists() (NOT EXISTS), "
            "not exists()"
        )
    return None


def _q6_not_in():
    return select(User.id).where(User.id.not_in(select(User.invited_by_id))).order_by(User.id)


def _q6_unaliased():
    return select(User.id).where(~exists().where(User.invited_by_id == User.id)).order_by(User.id)


def _q6_not_invited():
    return select(User.id).where(User.invited_by_id.is_(None)).order_by(User.id)


def _q6_inviters():
    invitee = aliased(User, name="invitee")
    return select(User.id).where(exists().where(invitee.invited_by_id == User.id)).order_by(User.id)


q6 = Exercise(
    id="05.q6",
    title="Users who invited nobody",
    kind=STATEMENT,
    solution_answer=_q6_solution,
    expected=sql_reference(
        "SELECT u.id FROM users u LEFT JOIN users i ON i.invited_by_id = u.id WHERE i.id IS NULL ORDER BY u.id",
        flat=True,
    ),
    probe=_q6_probe,
    rules=[
        Probe(_q6_which_users, name="users no one names as inviter"),
        Columns(["id"]),
        SameResult(ordered=True, what="users"),
        StatementBudget(1),
    ],
    hints=[
        "A user invited nobody when no row of users has invited_by_id equal to their id. The "
        "column you test against is nullable: think about what NOT IN does with a NULL.",
        "Two roles of one table: invitee = aliased(User, name=\"invitee\"), then "
        "~exists().where(invitee.invited_by_id == User.id).",
        "select(User.id).where(~exists().where(invitee.invited_by_id == User.id)).order_by(User.id), "
        "or ~User.invitees.any().",
    ],
    why="NOT EXISTS asks 'no such row' and is not fooled by the NULLs a nullable column holds; NOT IN "
    "works only once those NULLs are filtered out of its subquery (one NULL there, and it keeps no row).",
    counterexamples=[
        Counterexample("NOT IN over a nullable column", _q6_not_in, "NOT IN over a column that holds NULL"),
        Counterexample("exists() without an alias", _q6_unaliased, "uncorrelated"),
        Counterexample("users nobody invited", _q6_not_invited, "invited_by_id IS NULL"),
        Counterexample("exists() not negated", _q6_inviters, "did invite someone"),
    ],
)


# correct answers of another form: tests/test_exercises.py requires each one accepted
ALTERNATIVES = {
    "05.q1": [
        ("a CTE instead of a subquery", _q1_cte),
    ],
    "05.q2": [
        ("auto-correlated, no .correlate()", _q2_auto_correlated),
        ("count(*) over comments, .correlate_except(Comment)", _q2_correlate_except),
    ],
    "05.q3": [
        ("~User.orders.any(...)", lambda: select(User.id).where(~User.orders.any(Order.status == "cancelled")).order_by(User.id)),
        ("NOT IN (orders.user_id is NOT NULL)", lambda: select(User.id)
        .where(User.id.not_in(select(Order.user_id).where(Order.status == "cancelled")))
        .order_by(User.id)),
        ("an outer join to cancelled orders, IS NULL", lambda: select(User.id)
        .outerjoin(Order, and_(Order.user_id == User.id, Order.status == "cancelled"))
        .where(Order.id.is_(None))
        .order_by(User.id)),
    ],
    "05.q4": [
        ("start at the user (depth 0), keep depth > 0", _q4_from_the_user),
        ("the invitees as an alias joined to the CTE", _q4_aliased_child),
    ],
    "05.q5": [
        ("rank() with the id as tie-breaker", lambda: _q5_ranked((Post.published_at.desc(), Post.id.desc()), ranking=func.rank)),
        ("numbered oldest first, the last one kept (rn == count)", _q5_last_of_ascending),
    ],
    "05.q6": [
        ("~User.invitees.any()", lambda: select(User.id).where(~User.invitees.any()).order_by(User.id)),
        ("NOT IN with the NULLs filtered out", lambda: select(User.id)
        .where(User.id.not_in(select(User.invited_by_id).where(User.invited_by_id.is_not(None))))
        .order_by(User.id)),
        ("not_(exists()) with an anonymous alias", lambda: select(User.id)
        .where(not_(exists().where(aliased(User).invited_by_id == User.id)))
        .order_by(User.id)),
    ],
}
