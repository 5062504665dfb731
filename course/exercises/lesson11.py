"""Lesson 11 exercises: indexes, plans and the statement cache.

The checkers read query plans with :mod:`course.lab.plans`, on the checker's own
connection, inside the transaction that is rolled back afterwards:

- q1 (defer the body): the SQL sent must not name ``posts.body``.
- q2 (the partial index): the statement is EXPLAINed exactly as it was sent; the
  plan must search ``ix_orders_active`` with the date range, and the index's
  condition must be written into the SQL (a bound parameter cannot be used by a
  generic plan). Before the answer runs, the checker adds three orders of user 108 at the
  ends of the date range (rolled back with the rest), so a range off by its ends is caught.
- q3 (a composite index): the answer runs DDL in the checker's transaction (both
  backends roll DDL back); the checker lists the new indexes, runs ANALYZE, and
  EXPLAINs the target query.
- q4 (ids in chunks): 40,000 ids; no statement may carry more parameters than
  asyncpg sends (32,767), and a runaway answer (one query per id) is
  stopped after a few dozen statements instead of running 40,000 of them.

Mistake catalogue: misconception -> detector -> the phrase its message carries (each one
has a counterexample in this module, tested on both backends).

- q1: the body loaded (``posts.body`` in the SQL; the whole post, or the wrong column
  deferred) -> "posts.body"; rows instead of objects -> "Post objects"; the tag condition
  forgotten (more posts, no tags in the SQL) -> "never mentions tags"; ids first, then the
  posts (two SELECTs, the second by IN) -> "the ids first"; no ORDER BY (unless the source sorts in
  Python) -> "no ORDER BY"; the tag loaded, then ``Tag.posts`` lazily (the lazy attribute) ->
  "select the posts themselves".
- q2: the index's condition as a bound parameter -> "bound parameter"; no status condition
  (cancelled orders too) -> "extra"; the live statuses listed instead of the index's
  condition -> "status != 'cancelled'"; a function or a cast around created_at in WHERE
  (func.date, cast, substr, extract; read from the SQL, the plan confirming it searches by user
  only; the headline even when the rows differ or PostgreSQL refuses a date compared with a
  string) -> "ix_orders_active cannot search the date range: `date(orders.created_at)` wraps the
  column"; BETWEEN ... 30 June (the checker adds orders at the range's ends) -> "the orders of 30
  June are missing"; <= 1 July -> "the range stops before 1 July"; the user id pasted into the
  SQL -> "bound parameter".
- q3: the range column first -> "starts with created_at"; status alone -> "covers only
  status"; an index on another table -> "no new index on orders" (the column and EXPLAIN rules
  fail with it: nothing of yours to judge is no pass); a partial index where a composite one
  serves every status -> "partial index"; ``conn.run_sync(...)`` not awaited (core's
  forgotten-await detector) -> "was never awaited"; a column the query does not set between status and
  created_at -> "puts user_id between status and created_at".
- q4: one IN for every id, or chunks over the limit (the parameters counted from the SQL log; on
  PostgreSQL asyncpg's InterfaceError, explained) -> "one statement carried 40,000 bound
  parameters"; one query per id -> "one query per id"; the last chunk dropped -> "missing"; the
  database's order kept -> "wrong order".
"""

from __future__ import annotations

import random
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Index, cast, event, func, inspect, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import defer
from sqlalchemy.sql import ClauseElement

from ..lab import plans
from ..schema import Order, Post, Tag, User
from .core import SESSION_FN, STATEMENT, Counterexample, Exercise, sql_reference
from .named_mistakes import EXPLAINED, Explaining, KeepsSource
from .rules import (
    Attempt,
    BoundParameters,
    Columns,
    NoLazyLoads,
    Probe,
    SameResult,
    StatementBudget,
    note_result_order,
)
from .verdict import ERROR, RuleResult, Verdict

# ---------------------------------------------------------------- helpers


def _queries(attempt: Attempt) -> list[Any]:
    return list(attempt.log.queries)


def _careful(probe: Any) -> Any:
    """A probe that never turns a failed answer into a checker error: after an answer that
    raised (a PostgreSQL transaction may then be aborted), reading the database fails too."""

    async def run(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
        try:
            await probe(conn, attempt, **call)
        except Exception as exc:  # reported by the rules that needed the probe's findings
            attempt.extra["probe_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    return run


def _plan_line(plan: plans.Plan | None) -> str:
    """The plan's reads in one line: each scan or search, with its index condition."""
    if plan is None:
        return "(no plan)"
    reads = [n for n in plan.nodes if n.table or n.index] or plan.nodes
    return " | ".join(
        n.label + (f" [{n.condition}]" if plan.backend == "postgresql" and n.condition else "") for n in reads
    )


# ---------------------------------------------------------------- q1: defer the body


def _q1_statement(*options: Any) -> Any:
    return select(Post).join(Post.tags).where(Tag.name == "indexes").options(*options).order_by(Post.id)


async def _q1_solution(session: AsyncSession) -> list[Post]:
    stmt = (
        select(Post)
        .join(Post.tags)
        .where(Tag.name == "indexes")
        .options(defer(Post.body))
        .order_by(Post.id)
    )
    return list((await session.scalars(stmt)).all())


_q1_expected = sql_reference(
    "SELECT p.id, p.title FROM posts p JOIN post_tags pt ON pt.post_id = p.id "
    "JOIN tags t ON t.id = pt.tag_id WHERE t.name = 'indexes' ORDER BY p.id"
)


async def _q1_observe(session: AsyncSession, returned: Any) -> Any:
    if not isinstance(returned, (list, tuple)) or not all(isinstance(p, Post) for p in returned):
        kind = type(returned[0]).__name__ if isinstance(returned, (list, tuple)) and returned else type(returned).__name__
        return {"kind": kind}
    # read what was loaded, without loading anything: a deferred title shows up as None
    return [(p.id, inspect(p).dict.get("title")) for p in returned]


def _q1_objects(attempt: Attempt) -> str | None:
    if isinstance(attempt.value, dict):
        return (
            f"return a list of Post objects (yours holds {attempt.value['kind']}): the page will "
            "update them, so select(Post) with a loader option, not a list of columns"
        )
    return None


def _q1_no_body(attempt: Attempt) -> str | None:
    heavy = [s for s in _queries(attempt) if "posts.body" in s.sql]
    if heavy:
        return (
            "the SELECT still names posts.body: every body (0.7 to 2 KB each) travelled for nothing. "
            "Leave it out with .options(defer(Post.body)) or load_only(...)"
        )
    return None


async def _q1_whole_posts(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q1_statement())).all())


async def _q1_defers_the_title(session: AsyncSession) -> list[Post]:
    return list((await session.scalars(_q1_statement(defer(Post.title)))).all())


async def _q1_columns(session: AsyncSession) -> list[Any]:
    stmt = select(Post.id, Post.title).join(Post.tags).where(Tag.name == "indexes").order_by(Post.id)
    return list((await session.execute(stmt)).all())


def _q1_tag_condition(attempt: Attempt) -> str | None:
    """Extra posts and no tag in the SQL: the filter on Tag.name was forgotten."""
    got, want = attempt.value, attempt.expected
    if not isinstance(got, list) or not isinstance(want, list) or len(got) <= len(want):
        return None
    if any("tags" in s.sql for s in _queries(attempt)):
        return None
    return (
        f"{len(got)} posts where {len(want)} are tagged 'indexes': your SQL never mentions tags. Join "
        "Post.tags (or use Post.tags.any(...)) and keep only Tag.name == 'indexes'"
    )


async def _q1_probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
    note_result_order(attempt)  # ordered by Post.id: an ORDER BY, or a sort in Python (the source)


@dataclass
class _TagPostsLoadedLazily(NoLazyLoads):
    """No lazy loads; loading the tag and then its ``Tag.posts`` gets the one-statement fix, since
    ``selectinload(Tag.posts)`` would still take two statements and every body."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if not result.passed and "Tag.posts" in attempt.lazy_attributes:
            result.message = (
                "you loaded the tag, then its posts through `Tag.posts` (a lazy load): that is 2 statements, "
                "and the collection loads whole posts, every body with them. Eager-loading it "
                "(`selectinload(Tag.posts)`) would still cost the second statement (`.defer(Post.body)` on it would at least skip the bodies). Select the posts themselves, filtered by "
                "the tag, in one statement: `select(Post).join(Post.tags).where(Tag.name == \"indexes\")` (or "
                "`.where(Post.tags.any(Tag.name == \"indexes\"))`) with `.options(defer(Post.body))` and "
                "`.order_by(Post.id)`"
            )
        return result


def _q1_one_round_trip(attempt: Attempt) -> str | None:
    reads = [s for s in _queries(attempt) if s.verb == "SELECT"]
    if len(reads) == 2 and any(" IN " in s.sql for s in reads[1:]):
        return (
            "your answer took 2 statements: the ids first, then the posts WHERE id IN (...). One "
            "statement can do both: select(Post).join(Post.tags).where(Tag.name == 'indexes')"
        )
    return None


q1 = KeepsSource(
    id="11.q1",
    title="Posts of a tag, without their bodies",
    kind=SESSION_FN,
    solution_answer=_q1_solution,
    expected=_q1_expected,
    observe=_q1_observe,
    probe=_q1_probe,
    rules=[
        _TagPostsLoadedLazily(),
        Probe(_q1_objects, name="Post objects"),
        Probe(_q1_no_body, name="posts.body left out"),
        Probe(_q1_one_round_trip, name="one round trip"),
        Probe(_q1_tag_condition, name="only the posts tagged 'indexes'"),
        StatementBudget(1),
        SameResult(ordered=True, what="posts"),
    ],
    hints=[
        "Start from the full query: select(Post), joined to its tags, where the tag's name is "
        "'indexes', ordered by Post.id. Then keep the body out of the SELECT.",
        "A loader option on the statement decides which columns the SELECT names: "
        ".options(defer(Post.body)) leaves one column out; load_only(...) keeps only the ones you list.",
        "select(Post).join(Post.tags).where(Tag.name == \"indexes\").options(defer(Post.body))"
        ".order_by(Post.id); return the scalars as a list.",
    ],
    why="A list page needs titles, not kilobytes of body per row: defer() keeps the heavy column "
    "off the wire while you still get objects you can change.",
    counterexamples=[
        Counterexample("whole posts", _q1_whole_posts, "posts.body"),
        Counterexample("defers the wrong column", _q1_defers_the_title, "posts.body"),
        Counterexample("rows, not objects", _q1_columns, "Post objects"),
    ],
)


# ---------------------------------------------------------------- q2: the partial index

Q2_USER = 108
Q2_FROM, Q2_TO = datetime(2025, 1, 1), datetime(2025, 7, 1)
_PREDICATE = re.compile(r"status\s*(!=|<>)\s*'cancelled'")


def _q2_solution():
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(
            Order.user_id == 108,
            Order.status != literal_column("'cancelled'"),
            Order.created_at >= datetime(2025, 1, 1),
            Order.created_at < datetime(2025, 7, 1),
        )
        .order_by(Order.created_at)
    )


#: orders the checker adds for user 108 at the ends of the range (rolled back with the check): where an
#: answer's range is off by its ends, its rows differ whatever the seed holds
Q2_EDGES = {
    "first": (990_001, datetime(2025, 1, 1, 0, 0, 0)),  # included: the range starts at 1 January, 00:00
    "last day": (990_002, datetime(2025, 6, 30, 18, 7, 13)),  # included: 30 June is inside the range
    "stop": (990_003, datetime(2025, 7, 1, 0, 0, 0)),  # excluded: the range stops before 1 July
}


async def _q2_expected(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    await conn.execute(Order.__table__.insert(), [
        {"id": pk, "user_id": Q2_USER, "status": "paid", "total_cents": 1_000, "created_at": at}
        for pk, at in Q2_EDGES.values()
    ])
    rows = await conn.execute(
        text(
            "SELECT id, status, created_at FROM orders WHERE user_id = :user AND status <> 'cancelled' "
            "AND created_at >= :start AND created_at < :stop ORDER BY created_at"
        ).columns(created_at=Order.__table__.c.created_at.type),
        {"user": Q2_USER, "start": Q2_FROM, "stop": Q2_TO},
    )
    return [tuple(r) for r in rows.all()]


async def _q2_probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
    queries = _queries(attempt)
    if len(queries) != 1:
        return
    await conn.exec_driver_sql("ANALYZE orders")
    attempt.extra["plan"] = await plans.explain(conn, queries[0])


def _q2_literal(attempt: Attempt) -> str | None:
    queries = _queries(attempt)
    if queries and not any(_PREDICATE.search(s.sql) for s in queries):
        if any(re.search(r"status\s*(!=|<>)\s*(\?|\$\d)", s.sql) for s in queries):
            return (
                "status != 'cancelled' is sent as a bound parameter: a plan made for any value "
                "(PostgreSQL's generic plan of a prepared statement) cannot prove the index's "
                "condition. Write the index's condition into the SQL: "
                "Order.status != literal_column(\"'cancelled'\")"
            )
        return (
            "the SQL does not contain the index's own condition, status != 'cancelled': the "
            "planner uses a partial index only when it can prove the query stays inside it"
        )
    return None


_CREATED_AT = r'(?:"?orders"?\.)?"?created_at"?\b'
_WRAPPERS = (
    (re.compile(r"\b(CAST)\(\s*" + _CREATED_AT + r"\s+AS\b", re.I), "cast(Order.created_at, ...)"),
    (re.compile(r"\bEXTRACT\(\s*(\w+)\s+FROM\s+" + _CREATED_AT, re.I), "extract('{name}', Order.created_at)"),
    (re.compile(r"\b([A-Za-z_]\w*)\(((?:[^()]*?,\s*)?)" + _CREATED_AT, re.I), "func.{name}({before}Order.created_at)"),
)
_NOT_FUNCTIONS = {"AND", "OR", "NOT", "IN", "EXISTS", "WHERE", "ON", "ANY", "ALL", "CAST", "EXTRACT"}


def _call_text(sql: str, start: int) -> str:
    """The call that starts at ``start`` ("date(orders.created_at)"), up to its closing parenthesis."""
    depth = 0
    for i in range(sql.index("(", start), len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[start : i + 1]
    return sql[start:]


def _wrapped_created_at(sql: str) -> tuple[str, str] | None:
    """(the SQL of the call around created_at in WHERE, how it reads in Python), or None when WHERE
    compares the column itself."""
    where = re.split(r"\bWHERE\b", sql, maxsplit=1, flags=re.I)
    if len(where) < 2:
        return None
    clause = re.split(r"\b(?:ORDER|GROUP)\s+BY\b|\bLIMIT\b", where[1], maxsplit=1, flags=re.I)[0]
    for pattern, python in _WRAPPERS:
        for match in pattern.finditer(clause):
            name = match.group(1)
            if python.startswith("func.") and name.upper() in _NOT_FUNCTIONS:
                continue
            before = "..., " if match.lastindex and match.lastindex > 1 and match.group(2) else ""
            return " ".join(_call_text(clause, match.start()).split()), python.format(name=name.lower(), before=before)
    return None


def _wrap_message(wrapped: tuple[str, str]) -> str:
    expression, python = wrapped
    return (
        f"ix_orders_active cannot search the date range: `{expression}` wraps the column (`{python}` in "
        "Python), and the index holds created_at itself, not what a function makes of it, so it finds the "
        "user's orders and the date range is checked row by row. Compare the column with a range instead: `Order.created_at >= datetime(2025, 1, "
        "1)`, `Order.created_at < datetime(2025, 7, 1)`"
    )


def _searched_by_date(plan: plans.Plan | None) -> bool:
    node = next((n for n in plan.nodes if n.index == "ix_orders_active"), None) if plan is not None else None
    return node is not None and node.access == plans.INDEX_SEARCH and "created_at" in (node.condition or "")


def _q2_bare_column(attempt: Attempt) -> str | None:
    """created_at inside a function or a cast in WHERE (and the plan, when read, confirms the cost)."""
    wrapped = next((w for s in _queries(attempt) if (w := _wrapped_created_at(s.sql))), None)
    if wrapped is None or _searched_by_date(attempt.extra.get("plan")):
        return None
    return _wrap_message(wrapped)


def _q2_range_ends(attempt: Attempt) -> str | None:
    """The orders the checker put at the ends of the range: one missing, or one too many (None when
    the ends are right, or wrong with the rest: the rows' own comparison says more then)."""
    got, want = attempt.value, attempt.expected
    if not isinstance(got, list) or not isinstance(want, list):
        return None
    ids = {row[0] for row in got if isinstance(row, tuple) and row}
    first, last_day, stop = (Q2_EDGES[k][0] for k in ("first", "last day", "stop"))
    if stop in ids:
        return (
            "an order placed on 1 July 2025 at 00:00:00 is in your result, but the range stops before 1 July: "
            "BETWEEN and <= include their upper end. Use a half-open range: `Order.created_at >= "
            "datetime(2025, 1, 1)`, `Order.created_at < datetime(2025, 7, 1)`"
        )
    if last_day not in ids and first in ids:
        return (
            "the orders of 30 June are missing (one placed at 18:07 is not in your result): an upper end of "
            "30 June, with BETWEEN or <=, is the moment 30 June 00:00:00, not the whole day. Stop before the "
            "next day instead: `Order.created_at < datetime(2025, 7, 1)`"
        )
    if first not in ids and last_day in ids:
        strict = any(re.search(r"created_at\s*>\s*(?!=)", q.sql) for q in _queries(attempt))
        return (
            "the order placed on 1 January 2025 at 00:00:00 is missing, though the range starts there: "
            + ("compare with >=, not >" if strict else "your range starts later than that")
            + ": `Order.created_at >= datetime(2025, 1, 1)`"
        )
    return None


_Q2_SAME = SameResult(ordered=True, what="orders")


def _q2_rows(attempt: Attempt) -> str | None:
    """The rows, the ends of the range named first (a message of their own when only they differ)."""
    ends = _q2_range_ends(attempt)
    if ends:
        return ends
    same = _Q2_SAME.judge(attempt)
    return None if same.passed else same.message


def _q2_uses_index(attempt: Attempt) -> str | None:
    plan = attempt.extra.get("plan")
    if plan is None:
        if "probe_error" in attempt.extra:
            return f"the plan of your statement could not be read ({attempt.extra['probe_error']})"
        return "answer with one statement (a select()) so that its plan can be read"
    if not plan.uses_index("ix_orders_active"):
        return f"the plan does not use ix_orders_active: {_plan_line(plan)}"
    if not _searched_by_date(plan):
        if _q2_bare_column(attempt):  # the rule above says why: here, the evidence
            return f"ix_orders_active is searched by user_id only: {_plan_line(plan)}"
        return (
            "ix_orders_active is searched by user_id only, the date range is checked row by row: "
            "compare Order.created_at itself with the dates (a function around the column hides it "
            f"from the index). Plan: {_plan_line(plan)}"
        )
    return None


def _q2_orders_of_days(*range_tests: Any) -> Any:
    """The exercise's statement with the date range written as given (the wrong ones below)."""
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(Order.user_id == Q2_USER, Order.status != literal_column("'cancelled'"), *range_tests)
        .order_by(Order.created_at)
    )


def _q2_bound_status():
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(
            Order.user_id == 108,
            Order.status != "cancelled",
            Order.created_at >= datetime(2025, 1, 1),
            Order.created_at < datetime(2025, 7, 1),
        )
        .order_by(Order.created_at)
    )


def _q2_no_status():
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(Order.user_id == 108, Order.created_at >= datetime(2025, 1, 1), Order.created_at < datetime(2025, 7, 1))
        .order_by(Order.created_at)
    )


def _q2_status_list():
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(
            Order.user_id == 108,
            Order.status.in_([literal_column("'paid'"), literal_column("'shipped'"), literal_column("'pending'")]),
            Order.created_at >= datetime(2025, 1, 1),
            Order.created_at < datetime(2025, 7, 1),
        )
        .order_by(Order.created_at)
    )


def _q2_date_function():
    from sqlalchemy import String, cast, func

    day = func.substr(cast(Order.created_at, String), 1, 10)  # 'YYYY-MM-DD' on both backends
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(
            Order.user_id == 108,
            Order.status != literal_column("'cancelled'"),
            day >= "2025-01-01",
            day < "2025-07-01",
        )
        .order_by(Order.created_at)
    )


class _WrappedColumnExplained(Exercise):
    """A statement that raised gets the wrapped-column diagnosis first, when its SQL shows one:
    func.date(created_at) >= '2025-01-01' runs on SQLite, but PostgreSQL refuses to compare the date
    with a string, and the learner should still hear why the index could not serve it."""

    async def evaluate(self, answer: Any = ..., *, db: Any = None) -> Verdict:
        verdict = await super().evaluate(answer, db=db)
        if verdict.status != ERROR or not isinstance(answer, ClauseElement):
            return verdict
        try:
            from ..database import current

            sql = str(answer.compile(dialect=(db or current()).engine.dialect))
        except Exception:  # no database to compile for, or a statement that does not compile
            return verdict
        wrapped = _wrapped_created_at(sql)
        if wrapped is not None:
            message = _wrap_message(wrapped)
            if "operator does not exist" in verdict.message:  # PostgreSQL: date(created_at) >= '2025-01-01'
                message += ". PostgreSQL also refuses to compare the two sides, of different types"
            verdict.message = f"{message[:1].upper()}{message[1:]}. {verdict.message}"
        return verdict


q2 = _WrappedColumnExplained(
    id="11.q2",
    title="Active orders through the partial index",
    kind=STATEMENT,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    probe=_careful(_q2_probe),
    rules=[
        Columns(["id", "status", "created_at"]),
        Probe(_q2_bare_column, name="created_at compared as itself, so the index can serve the range"),
        Probe(_q2_rows, name="the right orders, from 1 January (included) to 1 July (excluded), oldest first"),
        Probe(_q2_literal, name="the index's condition written in the SQL"),
        Probe(_q2_uses_index, name="EXPLAIN: ix_orders_active searched with the date range"),
        BoundParameters([Q2_USER]),
    ],
    hints=[
        "ix_orders_active holds (user_id, created_at) of the orders whose status is not "
        "'cancelled'. Your WHERE needs user 108, the date range on created_at, and the index's own "
        "condition.",
        "Write the condition the way the index does, into the SQL itself: "
        "Order.status != literal_column(\"'cancelled'\"). Keep the user id and the dates as "
        "ordinary comparisons (bound parameters).",
        "select(Order.id, Order.status, Order.created_at).where(Order.user_id == 108, "
        "Order.status != literal_column(\"'cancelled'\"), Order.created_at >= datetime(2025, 1, 1), "
        "Order.created_at < datetime(2025, 7, 1)).order_by(Order.created_at)",
    ],
    why="A partial index is used only when the planner can prove the query stays inside it; "
    "a condition written into the SQL is a proof every plan can use.",
    counterexamples=[
        Counterexample("status as a bound parameter", _q2_bound_status, "bound parameter"),
        Counterexample("no status condition", _q2_no_status, "extra"),
        Counterexample("the live statuses listed", _q2_status_list, "status != 'cancelled'"),
        Counterexample("a function around created_at", _q2_date_function, "date range"),
        Counterexample("func.date(created_at) compared with dates", lambda: _q2_orders_of_days(
            func.date(Order.created_at) >= date(2025, 1, 1), func.date(Order.created_at) < date(2025, 7, 1),
        ), "ix_orders_active cannot search the date range: `date(orders.created_at)` wraps the column"),
        Counterexample("func.date(created_at) compared with strings", lambda: _q2_orders_of_days(
            func.date(Order.created_at) >= "2025-01-01", func.date(Order.created_at) < "2025-07-01",
        ), "`func.date(Order.created_at)` in Python"),
        Counterexample("cast(created_at, Date)", lambda: _q2_orders_of_days(
            cast(Order.created_at, Date) >= date(2025, 1, 1), cast(Order.created_at, Date) < date(2025, 7, 1),
        ), "compare the column with a range instead"),
        Counterexample("between 1 January and 30 June", lambda: _q2_orders_of_days(
            Order.created_at.between(datetime(2025, 1, 1), datetime(2025, 6, 30)),
        ), "the orders of 30 June are missing"),
        Counterexample("<= 1 July", lambda: _q2_orders_of_days(
            Order.created_at >= datetime(2025, 1, 1), Order.created_at <= datetime(2025, 7, 1),
        ), "the range stops before 1 July"),
    ],
)


# ---------------------------------------------------------------- q3: a composite index

Q3_FROM, Q3_TO = datetime(2025, 11, 1), datetime(2025, 12, 1)
_BASE_INDEXES = frozenset(Order.__table__.indexes)
_BASE_INDEX_NAMES = frozenset(ix.name for ix in _BASE_INDEXES)


def q3_query():
    """The query the index is for: last month's pending orders, oldest first."""
    return (
        select(Order.id, Order.user_id, Order.created_at)
        .where(Order.status == "pending", Order.created_at >= Q3_FROM, Order.created_at < Q3_TO)
        .order_by(Order.created_at)
    )


async def _q3_solution(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_orders_status_created ON orders (status, created_at)"))


def _forget_new_metadata_indexes() -> None:
    """An ``Index(...)`` built from the model's columns joins the shared metadata; a later
    ``create_all()`` (a reset) would create it for real. The checker undoes that."""
    for index in set(Order.__table__.indexes) - _BASE_INDEXES:
        Order.__table__.indexes.discard(index)


async def _q3_before(conn: AsyncConnection, **call: Any) -> None:
    """Runs before the answer: drop what an earlier, failed attempt may have left in the metadata."""
    _forget_new_metadata_indexes()


async def _q3_probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
    _forget_new_metadata_indexes()
    found = await conn.run_sync(lambda sync: inspect(sync).get_indexes("orders"))
    attempt.extra["new"] = [
        {
            "name": ix["name"],
            "columns": list(ix["column_names"]),
            "partial": any(k.endswith("_where") and v is not None for k, v in ix.get("dialect_options", {}).items()),
        }
        for ix in found
        if ix["name"] not in _BASE_INDEX_NAMES
    ]
    await conn.exec_driver_sql("ANALYZE orders")
    attempt.extra["plan"] = await plans.explain(conn, q3_query())


def _q3_created(attempt: Attempt) -> str | None:
    if "probe_error" in attempt.extra:
        return f"the checker could not read the indexes after your answer ({attempt.extra['probe_error']})"
    if not attempt.extra.get("new"):
        return (
            "no new index on orders: run CREATE INDEX ... ON orders (...) through the session "
            "(session.execute(text(...)), or Index(...).create() inside session.run_sync)"
        )
    return None


def _q3_columns(attempt: Attempt) -> str | None:
    new: Sequence[dict[str, Any]] = attempt.extra.get("new") or []
    if not new:  # nothing to judge: not a pass (the same message as the rule above, so said once)
        return _q3_created(attempt)
    if any(ix["columns"][:2] == ["status", "created_at"] and not ix["partial"] for ix in new):
        return None
    ix = new[-1]
    cols = ", ".join(str(c) for c in ix["columns"])
    if ix["partial"]:
        return (
            f"{ix['name']} is a partial index: this exercise asks for a plain composite index "
            "(one index that serves every status), with its columns in the right order"
        )
    if ix["columns"] and ix["columns"][0] == "created_at":
        return (
            f"{ix['name']} ({cols}) starts with created_at, the range column: the B-tree is sorted by "
            "date first, so all of November's orders are read to find the pending ones. Put the "
            "equality column first: (status, created_at)"
        )
    if ix["columns"] == ["status"]:
        return (
            f"{ix['name']} covers only status: every pending order is read, and the date range and "
            "the ORDER BY are done row by row. Add created_at after status"
        )
    columns = [str(c) for c in ix["columns"]]
    if columns[:1] == ["status"] and "created_at" in columns[2:]:
        middle = ", ".join(columns[1:columns.index("created_at")])
        return (
            f"{ix['name']} ({cols}) puts {middle} between status and created_at: the query sets no {middle}, so "
            "the search can use status alone, and the date range is checked entry by entry over every pending "
            "order (the ORDER BY then needs a sort; PostgreSQL 18 can skip-scan over the middle column, still "
            "one index descent per value of it, plus the sort). Put created_at right after status: (status, "
            "created_at)"
        )
    return f"{ix['name']} ({cols}) does not fit the query: status (equality) first, then created_at (range)"


def _q3_used(attempt: Attempt) -> str | None:
    plan = attempt.extra.get("plan")
    new = [ix["name"] for ix in attempt.extra.get("new") or []]
    if not new:  # no index of yours to search: not a pass
        return _q3_created(attempt)
    if plan is None:
        return "the checker could not EXPLAIN the query after your answer"
    if not any(plan.searches_index(name) for name in new):
        return f"EXPLAIN does not show a search of your index: {_plan_line(plan)}"
    return None


async def _q3_range_first(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_orders_created_status ON orders (created_at, status)"))


async def _q3_status_only(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_orders_status ON orders (status)"))


async def _q3_column_in_between(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_orders_status_user_created ON orders (status, user_id, created_at)"))


async def _q3_wrong_table(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_posts_status_created ON posts (status, created_at)"))


async def _q3_metadata_index(session: AsyncSession) -> None:
    index = Index("ix_orders_created_status_meta", Order.created_at, Order.status)
    await session.run_sync(lambda sync: index.create(sync.connection()))


q3 = Exercise(
    id="11.q3",
    title="The right composite index for a query",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_before,
    probe=_careful(_q3_probe),
    rules=[
        Probe(_q3_created, name="a new index on orders"),
        Probe(_q3_columns, name="a plain (not partial) index on (status, created_at), the equality column first"),
        Probe(_q3_used, name="EXPLAIN: the planner searches your new index"),
    ],
    hints=[
        "The query compares status with one value (equality) and created_at with a range, then "
        "sorts by created_at. A B-tree can search on its leading columns: which column must lead?",
        "Equality columns first, the range (and sort) column last: an index on (status, created_at). "
        "Create it through the session you are given.",
        "await session.execute(text(\"CREATE INDEX ix_orders_status_created ON orders (status, created_at)\"))",
    ],
    why="With the equality column first, the pending orders of one month sit side by side in the "
    "index, already sorted by date: one search, no sort.",
    counterexamples=[
        Counterexample("range column first", _q3_range_first, "starts with created_at"),
        Counterexample("status only", _q3_status_only, "covers only status"),
        Counterexample("an index on another table", _q3_wrong_table, "no new index on orders"),
        Counterexample("Index() with the range column first", _q3_metadata_index, "starts with created_at"),
    ],
)


# ---------------------------------------------------------------- q4: ids in chunks

#: 40,000 distinct ids from "an import file": a few hundred of them are real users
Q4_IDS = random.Random(11).sample(range(1, 200_001), 40_000)
MAX_PARAMETERS = 32_767  # asyncpg's cap (the protocol itself allows 65,535); SQLite's default limit is 32,766
_STATEMENT_CAP = 50
_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}
_guards: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # connection -> its guard


class RunawayAnswer(Exception):
    """Raised into an answer that keeps sending statements (one query per id)."""


def _cap_statements(conn: AsyncConnection) -> None:
    """Stop the answer once it has sent ``_STATEMENT_CAP`` queries: 40,000 single-id
    queries would take half a minute, and the verdict is the same after 50."""
    count = 0

    def guard(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal count
        if (statement.split(None, 1) or [""])[0].upper() in _CONTROL:
            return
        count += 1
        if count > _STATEMENT_CAP:
            raise RunawayAnswer(
                f"stopped after {_STATEMENT_CAP} statements for {len(Q4_IDS):,} ids: one query per "
                "id (or chunks far too small)? Load the ids a few thousand at a time"
            )

    sync = conn.sync_connection
    event.listen(sync, "before_cursor_execute", guard)
    _guards[sync] = guard


async def _q4_expected(conn: AsyncConnection, ids: Sequence[int]) -> list[int]:
    existing = set((await conn.execute(text("SELECT id FROM users"))).scalars().all())
    _cap_statements(conn)  # installed last: only the answer's statements count
    return [i for i in ids if i in existing]  # in the order of the input


async def _q4_probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
    sync = conn.sync_connection
    guard = _guards.pop(sync, None)
    if guard is not None and event.contains(sync, "before_cursor_execute", guard):
        event.remove(sync, "before_cursor_execute", guard)


async def _q4_get_per_id(session: AsyncSession, ids: list[int]) -> list[User]:
    users = [await session.get(User, i) for i in ids]
    return [u for u in users if u is not None]


async def _q4_id_order(session: AsyncSession, ids: list[int]) -> list[User]:
    found = []
    for start in range(0, len(ids), 10_000):
        found += (await session.scalars(select(User).where(User.id.in_(ids[start : start + 10_000])))).all()
    return sorted(found, key=lambda u: u.id)


async def _q4_solution(session: AsyncSession, ids: list[int]) -> list[User]:
    found = {}
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        for user in (await session.scalars(select(User).where(User.id.in_(chunk)))).all():
            found[user.id] = user
    return [found[i] for i in ids if i in found]


def _too_many_parameters(count: int | None) -> str:
    carried = f"one statement carried {count:,} bound parameters" if count else "one statement carried too many bound parameters"
    return (
        f"{carried}: PostgreSQL (asyncpg) refuses more than {MAX_PARAMETERS} (InterfaceError: the number of "
        "query arguments cannot exceed 32767), and SQLite's default limit is 32766. Send the ids in chunks of "
        "a few thousand, one IN query per chunk; or, on PostgreSQL, as one array parameter: "
        "`User.id == any_(bindparam(\"ids\", type_=ARRAY(Integer)))`, SQL `= ANY(:ids)`"
    )


def _q4_parameters(attempt: Attempt) -> str | None:
    sizes = [len(s.params) for s in _queries(attempt) if isinstance(s.params, (list, tuple)) and not s.executemany]
    biggest = max(sizes, default=0)
    if biggest > MAX_PARAMETERS - 1:
        return _too_many_parameters(biggest)
    return None


async def _q4_one_in(session: AsyncSession, ids: list[int]) -> list[User]:
    return list((await session.scalars(select(User).where(User.id.in_(ids)))).all())


async def _q4_one_query_per_id(session: AsyncSession, ids: list[int]) -> list[User]:
    users = []
    for user_id in ids:
        user = await session.get(User, user_id)
        if user is not None:
            users.append(user)
    return users


async def _q4_drops_last_chunk(session: AsyncSession, ids: list[int]) -> list[User]:
    found = {}
    for start in range(0, len(ids) - 10_000, 10_000):  # off by one chunk: the last one never runs
        for user in (await session.scalars(select(User).where(User.id.in_(ids[start : start + 10_000])))).all():
            found[user.id] = user
    return [found[i] for i in ids if i in found]


async def _q4_database_order(session: AsyncSession, ids: list[int]) -> list[User]:
    users: list[User] = []
    for start in range(0, len(ids), 10_000):
        users += (await session.scalars(select(User).where(User.id.in_(ids[start : start + 10_000])))).all()
    return users  # in whatever order each chunk came back


def _q4_explain(error: BaseException) -> str | None:
    if "number of query arguments cannot exceed" in str(error):  # asyncpg refused the statement
        params = getattr(error, "params", None)
        return _too_many_parameters(len(params) if isinstance(params, (list, tuple)) else None)
    if isinstance(error, RunawayAnswer) or "RunawayAnswer" in str(error):
        return (
            f"one query per id, an N+1 (stopped after {_STATEMENT_CAP} statements for {len(Q4_IDS):,} ids: "
            "get() or a SELECT per id). Load the ids a few thousand at a time: one IN query per chunk of "
            "ids, then pick the users from a dict by id"
        )
    return None


def _q4_caller_order(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    ids = [getattr(u, "id", u) for u in got] if isinstance(got, list) else None
    if ids is None or ids == want or sorted(ids) != sorted(want or []):
        return None
    return (
        "the right users in the wrong order: "
        + ("sorted by id, " if ids == sorted(ids) else "in the order the database sent them, ")
        + "not in the order of ids the caller passed. Keep the users in a dict by id, then walk ids once: "
        "[found[i] for i in ids if i in found]"
    )


q4 = Explaining(
    id="11.q4",
    title="Load 40,000 ids in chunks, in the caller's order",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    probe=_q4_probe,
    calls=({"ids": Q4_IDS},),
    explain=_q4_explain,
    rules=[
        EXPLAINED,
        Probe(_q4_parameters, name="parameters per statement within the limits"),
        StatementBudget(8),
        Probe(_q4_caller_order, name="the caller's order"),
        SameResult(what="users"),  # the users, in any order: the order is the rule above's (ids, not ORDER BY)
    ],
    hints=[
        "One IN list with 40,000 values is one bound parameter per value: more than asyncpg sends "
        "in one statement (32,767). Split the list and run one IN query per slice; the rows of each slice "
        "come back in the database's order, not in yours.",
        "for start in range(0, len(ids), 10_000): select the users whose id is in "
        "ids[start:start + 10_000] and keep them in a dict by id (at most 8 queries in all). "
        "Then walk ids once and pick the ones you found.",
        "found = {}\nfor start in range(0, len(ids), 10_000):\n    chunk = ids[start:start + 10_000]\n"
        "    for user in (await session.scalars(select(User).where(User.id.in_(chunk)))).all():\n"
        "        found[user.id] = user\nreturn [found[i] for i in ids if i in found]",
    ],
    why="Chunks keep every statement under the bind-parameter limits while the number of round "
    "trips stays tiny; on PostgreSQL, = ANY(:ids) with one array parameter is another way out.",
    counterexamples=[
        Counterexample("one IN for every id", _q4_one_in, "one statement carried 40,000 bound parameters"),
        Counterexample("one query per id", _q4_one_query_per_id, "one query per id, an N+1"),
        Counterexample("get() per id", _q4_get_per_id, "an N+1"),
        Counterexample("chunks, users in id order", _q4_id_order, "not in the order of ids the caller passed"),
        Counterexample("the last chunk dropped", _q4_drops_last_chunk, "missing"),
        Counterexample("the database's order", _q4_database_order, "wrong order"),
    ],
)


# ------------------------------------------------------- more wrong answers, and right ones

async def _q1_every_post(session: AsyncSession) -> list[Post]:
    stmt = select(Post).options(defer(Post.body)).order_by(Post.id)  # the tag condition forgotten
    return list((await session.scalars(stmt)).all())


async def _q1_ids_then_posts(session: AsyncSession) -> list[Post]:
    ids = (await session.scalars(select(Post.id).join(Post.tags).where(Tag.name == "indexes"))).all()
    stmt = select(Post).where(Post.id.in_(ids)).options(defer(Post.body)).order_by(Post.id)
    return list((await session.scalars(stmt)).all())


async def _q1_exists(session: AsyncSession) -> list[Post]:
    stmt = select(Post).where(Post.tags.any(Tag.name == "indexes")).options(defer(Post.body)).order_by(Post.id)
    return list((await session.scalars(stmt)).all())


async def _q1_load_only(session: AsyncSession) -> list[Post]:
    from sqlalchemy.orm import load_only

    stmt = _q1_statement(load_only(Post.title, Post.author_id, Post.status, Post.created_at))
    return list((await session.scalars(stmt)).all())


async def _q1_no_order_by(session: AsyncSession) -> list[Post]:
    stmt = select(Post).join(Post.tags).where(Tag.name == "indexes").options(defer(Post.body))
    return list((await session.scalars(stmt)).all())


async def _q1_the_tags_posts(session: AsyncSession) -> list[Post]:
    tag = await session.scalar(select(Tag).where(Tag.name == "indexes"))
    return sorted(await tag.awaitable_attrs.posts, key=lambda post: post.id)


async def _q1_sorted_in_python(session: AsyncSession) -> list[Post]:
    stmt = select(Post).where(Post.tags.any(Tag.name == "indexes")).options(defer(Post.body))
    return sorted((await session.scalars(stmt)).all(), key=lambda post: post.id)


q1.counterexamples = [
    *q1.counterexamples,
    Counterexample("the tag condition forgotten", _q1_every_post, "never mentions tags"),
    Counterexample("ids first, then the posts", _q1_ids_then_posts, "the ids first"),
    Counterexample("no ORDER BY", _q1_no_order_by, "your statement has no ORDER BY"),
    Counterexample("the tag, then tag.awaitable_attrs.posts", _q1_the_tags_posts, "select the posts themselves"),
]


def _q2_orders_of(user_test: Any, status_test: Any) -> Any:
    """The exercise's statement with the user and status conditions given (variants below)."""
    return (
        select(Order.id, Order.status, Order.created_at)
        .where(user_test, status_test, Order.created_at >= Q2_FROM, Order.created_at < Q2_TO)
        .order_by(Order.created_at)
    )


def _q2_literal_execute():
    from sqlalchemy import literal

    # rendered into the SQL when it runs; the statement still caches as one entry
    return _q2_orders_of(Order.user_id == Q2_USER, Order.status != literal("cancelled", literal_execute=True))


def _q2_text_condition():
    return _q2_orders_of(Order.user_id == Q2_USER, text("orders.status != 'cancelled'"))


def _q2_everything_literal():
    # the user pasted into the SQL too: one statement, and one plan, per user
    return _q2_orders_of(Order.user_id == literal_column(str(Q2_USER)), Order.status != literal_column("'cancelled'"))


q2.counterexamples = [
    *q2.counterexamples,
    Counterexample("the user id written into the SQL too", _q2_everything_literal, "bound parameter"),
]


async def _q3_partial(session: AsyncSession) -> None:
    await session.execute(
        text("CREATE INDEX ix_orders_pending_created ON orders (status, created_at) WHERE status = 'pending'")
    )


async def _q3_covering(session: AsyncSession) -> None:
    await session.execute(text("CREATE INDEX ix_orders_status_created_user ON orders (status, created_at, user_id)"))


async def _q3_index_object(session: AsyncSession) -> None:
    index = Index("ix_orders_status_created_meta", Order.status, Order.created_at)
    await session.run_sync(lambda sync: index.create(sync.connection()))


async def _q3_run_sync_not_awaited(session: AsyncSession) -> None:
    conn = await session.connection()
    conn.run_sync(Index("ix_orders_status_created_lost", Order.status, Order.created_at).create)  # no await


q3.counterexamples = [
    *q3.counterexamples,
    Counterexample("a partial index for 'pending' only", _q3_partial, "partial index"),
    Counterexample("conn.run_sync() not awaited", _q3_run_sync_not_awaited, "conn.run_sync() was never awaited"),
    Counterexample("a column in between: (status, user_id, created_at)", _q3_column_in_between,
                   "puts user_id between status and created_at"),
]


async def _q4_smaller_chunks(session: AsyncSession, ids: list[int]) -> list[User]:
    position = {user_id: n for n, user_id in enumerate(ids)}
    users: list[User] = []
    for start in range(0, len(ids), 6_000):
        users += (await session.scalars(select(User).where(User.id.in_(ids[start : start + 6_000])))).all()
    return sorted(users, key=lambda user: position[user.id])


async def _q4_chunks_too_big(session: AsyncSession, ids: list[int]) -> list[User]:
    found = {}
    for start in range(0, len(ids), 35_000):  # 2 statements, but the first carries 35,000 parameters
        for user in (await session.scalars(select(User).where(User.id.in_(ids[start : start + 35_000])))).all():
            found[user.id] = user
    return [found[i] for i in ids if i in found]


q4.counterexamples = [
    *q4.counterexamples,
    Counterexample("chunks of 35,000", _q4_chunks_too_big, "one statement carried 35,000 bound parameters"),
]


async def _q4_one_parameter(session: AsyncSession, ids: list[int]) -> list[User]:
    from sqlalchemy import JSON, Integer, any_, bindparam, func
    from sqlalchemy.dialects.postgresql import ARRAY

    if session.get_bind().dialect.name == "postgresql":
        stmt = select(User).where(User.id == any_(bindparam("ids", type_=ARRAY(Integer))))
    else:
        wanted = func.json_each(bindparam("ids", type_=JSON)).table_valued("value")
        stmt = select(User).where(User.id.in_(select(wanted.c.value)))
    found = {user.id: user for user in (await session.scalars(stmt, {"ids": list(ids)})).all()}
    return [found[i] for i in ids if i in found]


#: Correct answers of another form: the tests require each one judged correct.
ALTERNATIVES = {
    "11.q1": [
        ("Post.tags.any(...) instead of a join", _q1_exists),
        ("load_only(...) the columns the page shows", _q1_load_only),
        ("no ORDER BY, sorted by id in Python", _q1_sorted_in_python),
    ],
    "11.q2": [
        ("literal('cancelled', literal_execute=True)", _q2_literal_execute),
        ("text() for the index's condition", _q2_text_condition),
        ("BETWEEN 1 January and 30 June 23:59:59.999999", lambda: _q2_orders_of_days(
            Order.created_at.between(datetime(2025, 1, 1), datetime(2025, 6, 30, 23, 59, 59, 999_999)),
        )),
    ],
    "11.q3": [
        ("(status, created_at, user_id): covering", _q3_covering),
        ("Index(Order.status, Order.created_at).create()", _q3_index_object),
    ],
    "11.q4": [
        ("chunks of 6,000, then sorted by position", _q4_smaller_chunks),
        ("one array (PostgreSQL) or JSON (SQLite) parameter", _q4_one_parameter),
    ],
}
