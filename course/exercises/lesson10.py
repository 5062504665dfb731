"""Lesson 10 exercises: error handling and security, judged by behaviour.

The checkers run the answer and look at what it did: the rows it returned, whether
user input reached the SQL text, whether the session still works, what was left in
the database (earlier work kept, nothing partial committed, nothing overwritten),
how many times a unit of work was tried and how long the answer waited.

Mistake catalogue: misconception -> detector -> the phrase its message carries (each one
has a counterexample in this module, tested on both backends).

- q1 search box: input pasted into SQL (the term found in the statement text) ->
  "pasted into the SQL text"; LIKE wildcards left live (extra ids for "%") -> "wildcards";
  a plain LIKE, right on SQLite only (LIKE without ILIKE/lower in the SQL) ->
  "case-sensitive"; lower(title) LIKE a term that keeps its capitals, right on SQLite only (the
  values on the LIKE's right side, neither side folded by the database) -> "you lowered the title
  but not the term"; every title fetched and searched in Python (rows fetched, no LIKE) ->
  "the search ran in Python"; no ORDER BY (the last SELECT, unless the source sorts in Python) ->
  "no ORDER BY"; Post objects returned (noted before they are normalised to ids) -> "returns
  Post objects".
- q2 get or create: the duplicate not handled (error) -> "IntegrityError"; the try inside the
  begin_nested() block (raised as the block ends, read from the traceback; explain.py) -> "never saw
  the IntegrityError"; session.rollback()
  losing earlier work (tags gone afterwards) -> "threw away"; caught without a savepoint
  (PendingRollbackError, an aborted transaction, or on SQLite a failed INSERT in the SQL log
  followed by more statements) -> "outside a savepoint"; upsert without looking the id up ->
  "look the existing tag's id up"; a commit inside the helper (the RELEASE of the caller's
  savepoint in the SQL log) -> "create_tag committed".
- q3 import: the class name as the kind -> "you reported 'IntegrityError'"; a rollback per
  bad row (accepted rows gone) -> "threw them away"; one flush for all -> "IntegrityError";
  merge() overwriting -> "overwritten"; no savepoint (as q2) ->
  "outside a savepoint"; a blanket ``except IntegrityError`` as "already exists" (every
  refusal reported "unique") -> "blanket"; session.expunge() of the refused row (explain.py) ->
  "found nothing to remove"; the try inside each begin_nested() block -> "never saw the IntegrityError";
  ON CONFLICT DO NOTHING with the skipped duplicate reported as None (the clause in the SQL log) ->
  "skipped it without a word".
- q4 retry: every exception retried, or every DBAPIError (attempts on a duplicate) ->
  "you retried an IntegrityError"; one session for all attempts (failed writes committed) ->
  "new transaction"; no backoff (gap between failure and retry) -> "wait at least"; the last
  error swallowed -> "raise the last error"; time.sleep() between attempts (a sleep( call not
  awaited, in the source) -> "blocks the event loop".
- q5 sort by a user's column: text()/literal_column() of the input (its text in the SQL,
  whether the statement ran or PostgreSQL's error quoted it) -> "identifier injection";
  getattr(User, name) without an allow-list (a real, unlisted column sorted) -> "exposes any
  attribute"; no tie-breaker (one ORDER BY key) -> "no tie-breaker"; column(name) (the input
  as a quoted name) -> "quoted name"; the name as a bound parameter -> "parameters carry
  values"; a refusal that is not a ValueError naming the allowed columns -> "raise
  ValueError"; a refusal only by the database -> "reached the database"; DESC in the ORDER BY ->
  "sorts descending".
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError

from ..lab.errorkinds import constraint_kind, is_transient
from ..schema import Order, Post, Tag, User
from .core import DB_FN, SESSION_FN, Counterexample, Exercise
from .named_mistakes import EXPLAINED, Explaining, KeepsSource
from .rules import (
    Attempt,
    LeavesTransactionToCaller,
    Probe,
    SameResult,
    SavepointAroundFailure,
    SessionUsable,
    StatementBudget,
    note_result_order,
    values_in,
)
from .verdict import RuleResult

WHEN = datetime(2025, 6, 1)


@dataclass
class _Adapted(Exercise):
    """An exercise whose answer the checker drives through an adapter.

    ``adapt(answer)`` returns the function the checker really calls: it can call the
    learner's function several times in one session (q2), or hand it a scripted
    ``work`` and record what it raised instead of turning that into an error
    verdict (q4). The kind of the learner's own answer is checked first.
    """

    adapt: Callable[[Any], Any] | None = None

    async def evaluate(self, answer: Any = ..., *, db: Any = None):
        problem, not_attempted = self._kind_problem(answer)
        if problem or not_attempted or self.adapt is None:
            return await super().evaluate(answer, db=db)
        self._source = None  # the learner's own source, for a rule the data cannot decide (q5)
        with contextlib.suppress(OSError, TypeError):
            self._source = inspect.getsource(answer)
        return await super().evaluate(self.adapt(answer), db=db)

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        attempt = await super()._attempt(answer, db, call)
        if getattr(self, "_source", None):
            attempt.extra["source"] = self._source
        return attempt


@dataclass
class _AdaptedExplaining(_Adapted, Explaining):
    """Driven through an adapter (q2), and naming the failed-INSERT mistake instead of the raw error."""


def _failed_insert_outside_savepoint(error: BaseException) -> str | None:
    """PendingRollbackError (SQLite, after a failed flush) or an aborted transaction (PostgreSQL):
    the answer caught an IntegrityError and carried on in the transaction the failure spoiled."""
    from sqlalchemy.exc import PendingRollbackError

    aborted = getattr(getattr(error, "orig", None), "sqlstate", None) == "25P02" or (
        "current transaction is aborted" in str(error)
    )
    if not isinstance(error, PendingRollbackError) and not aborted:
        return None
    raised = "PendingRollbackError" if isinstance(error, PendingRollbackError) else "current transaction is aborted"
    return (
        "a failed INSERT outside a savepoint ruined the caller's transaction: you caught the "
        f"IntegrityError and carried on, but the next statement raised {raised}. Wrap each INSERT "
        "that may fail in `async with session.begin_nested():`, so a failure undoes only itself"
    )


def _guarded(probe):
    """Run a probe only on a transaction that still works (PostgreSQL refuses every
    statement after a failed one; the answer's own failure is what the learner must see)."""

    async def guarded(conn, attempt, **call):
        try:
            await probe(conn, attempt, **call)
        except DBAPIError:
            attempt.extra["probe_failed"] = True

    guarded.__name__ = probe.__name__
    return guarded


def _dialect_insert(session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# ---------------------------------------------------------------------------- q1

_Q1_CALLS = ({"term": "Upsert"}, {"term": "' OR '1'='1"}, {"term": "%"})


async def _q1_solution(session, term):
    stmt = select(Post.id).where(Post.title.icontains(term, autoescape=True)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_expected(conn, term):
    """Independent of SQL pattern matching: Python's `in` over every title."""
    rows = (await conn.execute(text("SELECT id, title FROM posts ORDER BY id"))).all()
    return [post_id for post_id, title in rows if term.lower() in title.lower()]


@dataclass
class _Search(Exercise):
    """10.q1: also keeps the class of the objects the answer returned (Post objects are normalised to
    their ids, so the compared result cannot tell) and its source (a sort done in Python)."""

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        returned_objects: list[str] = []

        async def noting(session, **kw):
            returned = await answer(session, **kw)
            first = returned[0] if isinstance(returned, (list, tuple)) and returned else None
            if first is not None and hasattr(type(first), "__mapper__"):
                returned_objects.append(type(first).__name__)
            return returned

        attempt = await super()._attempt(noting, db, call)
        if returned_objects:
            attempt.extra["returned_objects"] = returned_objects[0]
        with contextlib.suppress(OSError, TypeError):
            attempt.extra["source"] = inspect.getsource(answer)
        return attempt


async def _q1_probe(conn, attempt, term):
    attempt.extra["term"] = term
    note_result_order(attempt)


def _q1_ids(attempt: Attempt) -> str | None:
    kind = attempt.extra.get("returned_objects")
    if not kind:
        return None
    return (
        f"your function returns {kind} objects; the task asks for the posts' ids, a list of ints. Select "
        "the id alone, `select(Post.id)`, and return `(await session.scalars(stmt)).all()`: whole objects "
        "load every column of every match (each body too) for a search that needs the ids"
    )


def _q1_not_pasted(attempt: Attempt) -> str | None:
    term = attempt.extra.get("term", "")
    if len(term) < 3:  # "%" also appears in safe SQL ('%' || ? || '%')
        return None
    if not any(term.lower() in s.sql.lower() for s in attempt.log.queries):
        return None
    return (
        f"the search term {term!r} was pasted into the SQL text: whoever types the term writes your "
        "SQL. Bind it: Post.title.icontains(term, ...) in a select(), or :term in text() with a dict"
    )


def _q1_wildcards(attempt: Attempt) -> str | None:
    term = attempt.extra.get("term", "")
    got, want = attempt.value, attempt.expected
    if not ("%" in term or "_" in term) or not isinstance(got, list) or not isinstance(want, list):
        return None
    extra = [i for i in got if i not in set(want)]
    if not extra:
        return None
    return (
        f"searching for {term!r} returned {len(got)} posts, though no title contains a literal "
        f"{term!r}: in LIKE, % and _ are wildcards. Escape them: .icontains(term, autoescape=True)"
    )


_LIKE_WORD = re.compile(r"(?<![A-Za-z_])(I?LIKE)\b", re.I)
_CONDITION_START = re.compile(r"\b(?:WHERE|AND|OR|ON|HAVING|WHEN)\b", re.I)
_PATTERN_END = re.compile(r"\s(?:ESCAPE|AND|OR|ORDER|GROUP|LIMIT|HAVING)\b", re.I)


def _pattern_side(rest: str) -> str:
    """The right side of a LIKE: up to ESCAPE, the next condition or clause, or the parenthesis that
    closes the group the LIKE is in."""
    end = _PATTERN_END.search(rest)
    rest = rest[: end.start()] if end else rest
    depth = 0
    for i, char in enumerate(rest):
        depth += (char == "(") - (char == ")")
        if depth < 0:
            return rest[:i]
    return rest


def _q1_case(attempt: Attempt) -> str | None:
    """LIKE without lower() or ILIKE: case-insensitive on SQLite (for ASCII) only by accident; and
    lower(title) LIKE a pattern whose term keeps its capitals: never a match on PostgreSQL."""
    for statement in attempt.log.queries:
        sql = statement.sql
        for match in _LIKE_WORD.finditer(sql):
            if match.group(1).upper() == "ILIKE":
                continue
            left = _CONDITION_START.split(sql[: match.start()])[-1]
            wrapped = re.search(r"\b(lower|upper)\s*\(", left, re.I)
            if not wrapped:
                return (
                    "your search is case-sensitive where it matters: a plain LIKE ignores case on SQLite "
                    "(for ASCII letters), but not on PostgreSQL, where 'upsert' would not find 'Upsert'. "
                    "Ask for 'ignoring case' explicitly: .icontains(term, autoescape=True) sends ILIKE on "
                    "PostgreSQL and lower(...) LIKE lower(...) on SQLite"
                )
            right = _pattern_side(sql[match.end():])
            if re.search(r"\b(lower|upper)\s*\(", right, re.I):
                continue  # both sides folded by the database
            lowered = wrapped.group(1).lower() == "lower"
            terms = [
                v for v in values_in(statement, match.end(), match.end() + len(right))
                if isinstance(v, str) and v != (v.lower() if lowered else v.upper())
            ]
            if terms:
                did, fold = ("lowered", "lower") if lowered else ("upper-cased", "upper")
                return (
                    f"you {did} the title but not the term: `{fold}(posts.title) LIKE` a pattern holding "
                    f"{terms[0]!r} compares a {fold}-case title with a term that keeps its "
                    f"{'capitals' if lowered else 'small letters'}, so it never matches on PostgreSQL (SQLite's LIKE "
                    "ignores ASCII case, "
                    f"so there it passes by accident). Fold both sides: `func.{fold}(Post.title).contains("
                    f"term.{fold}(), autoescape=True)`, or let `Post.title.icontains(term, autoescape=True)` do it"
                )
    return None


def _q1_filtered_in_sql(attempt: Attempt) -> str | None:
    """Every title fetched and searched in Python: right ids, all the posts over the wire."""
    want = attempt.expected if isinstance(attempt.expected, list) else []
    fetched = max((s.rows or 0 for s in attempt.log.queries), default=0)
    if fetched > max(50, 5 * len(want)) and not any(_LIKE_WORD.search(s.sql) for s in attempt.log.queries):
        return (
            f"your function fetched {fetched} rows to return {len(want)}: the search ran in Python, "
            "after every title crossed the wire. Filter in SQL (WHERE title ILIKE ...), where an index "
            "or at least the database's own scan does the work"
        )
    return None


async def _q1_fstring(session, term):
    sql = f"SELECT id FROM posts WHERE title LIKE '%{term}%' ORDER BY id"
    return (await session.execute(text(sql))).scalars().all()


async def _q1_ilike_pattern(session, term):
    stmt = select(Post.id).where(Post.title.ilike(f"%{term}%")).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_icontains_no_escape(session, term):
    stmt = select(Post.id).where(Post.title.icontains(term)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_bound_text(session, term):
    stmt = text("SELECT id FROM posts WHERE title LIKE :pattern ORDER BY id")
    return (await session.execute(stmt, {"pattern": f"%{term}%"})).scalars().all()


q1 = _Search(
    id="10.q1",
    title="A search box that cannot be hijacked",
    kind=SESSION_FN,
    solution_answer=_q1_solution,
    expected=_q1_expected,
    probe=_q1_probe,
    calls=_Q1_CALLS,
    rules=[
        Probe(test=_q1_not_pasted, name="the term travels as a bound parameter"),
        Probe(test=_q1_wildcards, name="% and _ in the term are literal"),
        Probe(test=_q1_case, name="case ignored on both backends"),
        Probe(test=_q1_filtered_in_sql, name="searched in SQL"),
        Probe(test=_q1_ids, name="a list of post ids"),
        SameResult(ordered=True, what="post ids"),
        StatementBudget(1),
    ],
    hints=[
        "Build a select(Post.id) and let a column operator make the LIKE: the term then travels as "
        "a bound parameter. Which operator matches 'contains, ignoring case'?",
        "Post.title.icontains(term) binds the term, but % and _ inside it are still wildcards: "
        "icontains() takes autoescape=True.",
        "select(Post.id).where(Post.title.icontains(term, autoescape=True)).order_by(Post.id)",
    ],
    why=(
        "A bound parameter is never parsed as SQL, so quotes in the input stay text; autoescape=True "
        "also keeps % and _ literal. The f-string version returned every post for ' OR '1'='1."
    ),
    counterexamples=[
        Counterexample("f-string in text()", _q1_fstring, "pasted into the SQL text"),
        Counterexample("ilike with the term in a pattern", _q1_ilike_pattern, "wildcards"),
        Counterexample("icontains without autoescape", _q1_icontains_no_escape, "wildcards"),
        Counterexample("bound :pattern in text(), LIKE", _q1_bound_text, "wildcards"),
    ],
)


# ---------------------------------------------------------------------------- q2

_Q2_NAMES = ["errors-and-retries", "python", "savepoints", "sql", "errors-and-retries"]


def _in_one_session(create_tag):
    """The checker calls the learner's create_tag once per name, all in one session."""

    async def sequence(session, names):
        return [await create_tag(session, name) for name in names]

    return sequence


async def _q2_solution(session, name):
    new_id = await session.scalar(
        _dialect_insert(session)(Tag)
        .values(name=name)
        .on_conflict_do_nothing(index_elements=[Tag.name])
        .returning(Tag.id)
    )
    if new_id is not None:
        return new_id, True
    return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_expected(conn, names):
    existing = set((await conn.execute(text("SELECT name FROM tags"))).scalars())
    out = []
    for name in names:
        out.append((name, name not in existing))
        existing.add(name)
    return out


async def _q2_probe(conn, attempt, names):
    tags = dict((await conn.execute(text("SELECT id, name FROM tags"))).all())
    attempt.extra["absent"] = sorted({n for n in names if n not in tags.values()})
    returned = attempt.value
    if not isinstance(returned, list) or not all(isinstance(r, (tuple, list)) and len(r) == 2 for r in returned):
        attempt.extra["state"] = f"not a list of (tag_id, created) pairs: {returned!r}"[:120]
        return
    attempt.extra["state"] = [
        (None if tag_id is None else tags.get(tag_id, _NoTag(tag_id)), created)
        for tag_id, created in returned
    ]


@dataclass(frozen=True)
class _NoTag:
    """An id create_tag returned that no tag has after the calls (its row was rolled back)."""

    id: Any


def _q2_kept(attempt: Attempt) -> str | None:
    absent = attempt.extra.get("absent")
    if not absent or attempt.extra.get("probe_failed"):
        return None
    if not any(q.verb == "INSERT" for q in attempt.log.queries):
        return (
            f"these tags were never written: {', '.join(map(repr, absent))}. Your function returned before "
            "any INSERT (the id is None until a flush): flush inside create_tag (`await session.flush()`; "
            "leaving an `async with session.begin_nested():` block flushes too)"
        )
    return (
        f"after the calls, these tags your function created are gone: {', '.join(map(repr, absent))}. The whole "
        "transaction was rolled back (by session.rollback(), or by SQLAlchemy itself when a flush failed "
        "outside a savepoint), which threw away everything done before the duplicate; roll back only the "
        "failed INSERT (async with session.begin_nested()) or avoid the error (ON CONFLICT DO NOTHING)"
    )


def _q2_same(attempt: Attempt) -> str | None:
    got, want = attempt.extra.get("state"), attempt.expected
    if got is None or got == want:
        return None
    if not isinstance(got, list):
        return f"your function returned {got}"
    for i, (g, (name, created)) in enumerate(zip(got, want, strict=False)):
        if g != (name, created):
            if g[0] is None:
                return (
                    f"call {i + 1}, create_tag(session, {name!r}) returned (None, {g[1]!r}): when the "
                    "insert was skipped, look the existing tag's id up"
                )
            what = "a new tag" if created else "the existing tag"
            if isinstance(g[0], _NoTag):
                return (
                    f"call {i + 1}, create_tag(session, {name!r}) returned ({g[0].id!r}, {g[1]!r}), but after the "
                    f"calls no tag has id {g[0].id!r}: expected the id of {what} {name!r}"
                )
            return (
                f"call {i + 1}, create_tag(session, {name!r}): expected (id of {what} {name!r}, {created}); "
                f"got (id of {g[0]!r}, {g[1]!r})"
            )
    return f"expected {len(want)} results, one per call; got {len(got)}"


async def _q2_plain(session, name):
    tag = Tag(name=name)
    session.add(tag)
    await session.flush()
    return tag.id, True


async def _q2_rollback_all(session, name):
    tag = Tag(name=name)
    session.add(tag)
    try:
        await session.flush()
        return tag.id, True
    except IntegrityError:
        await session.rollback()
        return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_no_rollback_then_select(session, name):
    tag = Tag(name=name)
    session.add(tag)
    try:
        await session.flush()
        return tag.id, True
    except IntegrityError:
        return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_execute_no_savepoint(session, name):
    try:
        return await session.scalar(insert(Tag).values(name=name).returning(Tag.id)), True
    except IntegrityError:
        return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_upsert_no_lookup(session, name):
    new_id = await session.scalar(
        _dialect_insert(session)(Tag)
        .values(name=name)
        .on_conflict_do_nothing(index_elements=[Tag.name])
        .returning(Tag.id)
    )
    return new_id, new_id is not None


@dataclass
class _TagLeftToCaller(LeavesTransactionToCaller):
    """create_tag neither commits nor rolls back the caller's transaction. After an error the checker
    explains, the checker rolls the answer's part back itself: that rollback is not the answer's."""

    def judge(self, attempt: Attempt) -> RuleResult:
        if attempt.extra.get("explained"):
            return RuleResult(self.name, True)
        result = super().judge(attempt)
        if not result.passed and result.message.startswith("your function committed"):
            result.message = (
                "create_tag committed: the caller's transaction ended inside your helper, and with it the "
                "caller's say over its own work (a later failure can no longer undo what came before). A "
                "get-or-create runs in the caller's transaction: flush (or leave the savepoint) for the id, "
                "and let the caller commit"
            )
        return result


q2 = _AdaptedExplaining(
    id="10.q2",
    title="Get or create a tag, in a session that keeps working",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    adapt=_in_one_session,
    expected=_q2_expected,
    probe=_guarded(_q2_probe),
    calls=({"names": _Q2_NAMES},),
    explain=_failed_insert_outside_savepoint,
    rules=[
        EXPLAINED,
        SavepointAroundFailure(),
        Probe(test=_q2_kept, name="earlier work survives a duplicate"),  # the cause, when the session failed too
        SessionUsable(),
        Probe(test=_q2_same, name="(id, created) for every name"),
        _TagLeftToCaller(),
    ],
    hints=[
        "A failed flush ruins the whole session's transaction, and session.rollback() throws away "
        "everything before it too. Either let only the INSERT fail, or make it not fail.",
        "Let only the INSERT fail: try: async with session.begin_nested(): session.add(Tag(name=name)) "
        "/ except IntegrityError: then look the existing id up. Or make it not fail: an upsert.",
        "Upsert: insert(Tag).values(name=name).on_conflict_do_nothing(index_elements=[Tag.name])"
        ".returning(Tag.id) from sqlalchemy.dialects.postgresql or .sqlite; None back means it existed.",
    ],
    why=(
        "A savepoint or ON CONFLICT contains the duplicate; rolling back the session would have lost "
        "the caller's earlier work. (A SELECT first, then INSERT, also passes here but races: two "
        "requests can both see 'missing'.)"
    ),
    counterexamples=[
        Counterexample("add and flush", _q2_plain, "IntegrityError"),
        Counterexample("session.rollback() on the duplicate", _q2_rollback_all, "threw away"),
        Counterexample("catch, no rollback, then select", _q2_no_rollback_then_select, "failed INSERT outside a savepoint"),
        Counterexample("execute(insert()) caught, no savepoint", _q2_execute_no_savepoint, "outside a savepoint"),
        Counterexample("upsert, no lookup of the existing id", _q2_upsert_no_lookup, "look the existing tag's id up"),
    ],
)


# ---------------------------------------------------------------------------- q3

_Q3_ROWS = [
    {"id": 3101, "user_id": 5, "status": "paid", "total_cents": 1_250, "created_at": WHEN},
    {"id": 3102, "user_id": 8, "status": "paid", "total_cents": -300, "created_at": WHEN},
    {"id": 3103, "user_id": 99_999, "status": "pending", "total_cents": 800, "created_at": WHEN},
    {"id": 3104, "user_id": 12, "status": "shipped", "total_cents": 4_000, "created_at": WHEN},
    {"id": 3105, "user_id": 12, "status": None, "total_cents": 990, "created_at": WHEN},
    {"id": 17, "user_id": 3, "status": "paid", "total_cents": 5_000, "created_at": WHEN},
    {"id": 3107, "user_id": 20, "status": "pending", "total_cents": 0, "created_at": WHEN},
]


async def _q3_solution(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                session.add(Order(**row))
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q3_expected(conn, rows):
    """What the database will refuse, read from the data (each bad row breaks one rule)."""
    orders = set((await conn.execute(text("SELECT id FROM orders"))).scalars())
    users = set((await conn.execute(text("SELECT id FROM users"))).scalars())
    out = []
    for row in rows:
        if row["id"] in orders:
            out.append("unique")
        elif row["user_id"] not in users:
            out.append("foreign_key")
        elif row["status"] is None:
            out.append("not_null")
        elif row["total_cents"] < 0:
            out.append("check")
        else:
            out.append(None)
    return out


async def _q3_probe(conn, attempt, rows):
    ids = [row["id"] for row in rows]
    stored = {
        r[0]: tuple(r[1:])
        for r in (
            await conn.execute(
                select(Order.id, Order.user_id, Order.status, Order.total_cents).where(Order.id.in_(ids))
            )
        ).all()
    }
    expected = attempt.expected or []
    attempt.extra["lost"] = [i for i, (row, kind) in enumerate(zip(rows, expected, strict=False)) if kind is None and row["id"] not in stored]
    attempt.extra["overwritten"] = [
        row["id"] for row, kind in zip(rows, expected, strict=False)
        if kind == "unique" and stored.get(row["id"]) == (row["user_id"], row["status"], row["total_cents"])
    ]


def _q3_kept(attempt: Attempt) -> str | None:
    lost = attempt.extra.get("lost")
    if not lost:
        return None
    return (
        f"row(s) {', '.join(map(str, lost))} were accepted, but are not in orders after your function: "
        "a rollback of the whole session threw them away with the bad row. Give each row its own "
        "savepoint (async with session.begin_nested())"
    )


def _q3_not_overwritten(attempt: Attempt) -> str | None:
    hit = attempt.extra.get("overwritten")
    if not hit:
        return None
    return (
        f"existing order {hit[0]} was overwritten with the imported values (`merge()` and "
        "`ON CONFLICT DO UPDATE` update a row that exists); an import must insert, and report the duplicate"
    )


def _q3_kinds(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if got == want:
        return None
    if not isinstance(got, list) or len(got) != len(want):
        return f"expected a list with one entry per row ({len(want)}), got {got!r}"[:200]
    refused = [g for g, w in zip(got, want, strict=False) if w is not None]
    if len(set(want) - {None}) > 1 and refused and all(g == "unique" for g in refused):
        return (
            "every refusal reported as 'unique': a blanket 'except IntegrityError' treated as "
            "'already exists' also calls a missing user (foreign key), a NULL status (not null) and a "
            "negative total (check) duplicates. Read the code (e.orig.sqlstate / e.orig.sqlite_errorname), "
            "as constraint_kind() does"
        )
    i = next(i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w)
    row = {k: v for k, v in _Q3_ROWS[i].items() if k != "created_at"}
    if want[i] is None:
        return f"row {i} {row} is fine and should give None; you reported {got[i]!r}"
    skipped = _skips_conflicts(attempt)
    if got[i] is None and skipped == "INSERT OR IGNORE":
        return (
            f"row {i} {row}: your INSERT OR IGNORE skipped it without a word, so nothing was raised and your "
            f"function reported None where the database refuses it as {want[i]!r}. On SQLite OR IGNORE also "
            "skips rows that break NOT NULL and CHECK, not only duplicates. Insert each row in a savepoint and "
            "read the error's code (constraint_kind(exc))"
        )
    if want[i] == "unique" and got[i] is None and skipped:
        return (
            f"row {i} {row} has the id of an existing order, and ON CONFLICT DO NOTHING skipped it without a "
            "word: nothing was raised, so your function reported None. The import must report it as "
            "'unique': insert in a savepoint and read the error's code (constraint_kind(exc)), or add "
            "`.returning(Order.id)` and report 'unique' when no row came back"
        )
    return (
        f"row {i} {row}: you reported {got[i]!r}; the database refused it as {want[i]!r}. Read the "
        "code (e.orig.sqlstate / e.orig.sqlite_errorname), as constraint_kind() does"
    )


_SKIPS_CONFLICTS = re.compile(r"\bON\s+CONFLICT\b.*\bDO\s+NOTHING\b|^\s*INSERT\s+OR\s+IGNORE\b", re.I | re.S)


def _skips_conflicts(attempt: Attempt) -> str:
    """An INSERT that skips a refused row silently: "ON CONFLICT", "INSERT OR IGNORE", or "" for none."""
    for s in attempt.log.queries:
        found = s.verb == "INSERT" and _SKIPS_CONFLICTS.search(s.sql)
        if found:
            return "INSERT OR IGNORE" if re.match(r"\s*INSERT\s+OR\s+IGNORE", s.sql, re.I) else "ON CONFLICT"
    return ""


async def _q3_class_names(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                session.add(Order(**row))
        except IntegrityError as exc:
            outcome.append(type(exc).__name__)
        else:
            outcome.append(None)
    return outcome


async def _q3_rollback_all(session, rows):
    outcome = []
    for row in rows:
        session.add(Order(**row))
        try:
            await session.flush()
        except IntegrityError as exc:
            await session.rollback()
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q3_one_flush(session, rows):
    session.add_all([Order(**row) for row in rows])
    await session.flush()
    return [None] * len(rows)


async def _q3_merge(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                await session.merge(Order(**row))
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q3_catch_and_continue(session, rows):
    outcome = []
    for row in rows:
        session.add(Order(**row))
        try:
            await session.flush()
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q3_by_message(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                session.add(Order(**row))
        except IntegrityError as exc:
            text_ = str(exc.orig).lower()
            outcome.append(
                "unique" if "unique" in text_ or "duplicate" in text_
                else "foreign_key" if "foreign" in text_
                else "not_null" if "null" in text_
                else "check"
            )
        else:
            outcome.append(None)
    return outcome


async def _q3_execute_no_savepoint(session, rows):
    outcome = []
    for row in rows:
        try:
            await session.execute(insert(Order).values(**row))
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


def _q3_not_by_message(attempt: Attempt) -> str | None:
    source = attempt.extra.get("source") or ""
    reads_code = any(word in source for word in ("constraint_kind", "sqlstate", "sqlite_errorname", "pgcode"))
    reads_text = re.search(r"\bstr\(\s*\w+(\.orig)?\s*\)|\.args\b|\.message\b", source)
    if reads_text and not reads_code:
        return (
            "you told the kinds apart by the error's message text: it happens to contain 'unique' or 'foreign' "
            "here, but messages differ by backend, version and server language. Read the code instead: "
            "constraint_kind(exc), which reads e.orig.sqlstate (PostgreSQL) or e.orig.sqlite_errorname (SQLite)"
        )
    return None


q3 = KeepsSource(
    id="10.q3",
    title="Import orders, report the rejects",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    probe=_guarded(_q3_probe),
    calls=({"rows": _Q3_ROWS},),
    explain=_failed_insert_outside_savepoint,
    rules=[
        EXPLAINED,
        SavepointAroundFailure(),
        SessionUsable(),
        Probe(test=_q3_not_by_message, name="kinds not told apart by the message text"),
        Probe(test=_q3_kept, name="accepted rows stay"),
        Probe(test=_q3_not_overwritten, name="existing orders unchanged"),
        Probe(test=_q3_kinds, name="the right kind for every row"),
    ],
    hints=[
        "One bad row must cost only itself: each row needs its own little transaction inside the "
        "big one. And the kind comes from the error's code, not its class (always IntegrityError).",
        "for row in rows: try: async with session.begin_nested(): session.add(Order(**row)) "
        "/ except IntegrityError as exc: record constraint_kind(exc) / else: record None.",
    ],
    why=(
        "A savepoint per row keeps the good rows and contains each failure; the SQLSTATE or SQLite "
        "error name says which rule failed on either backend, where the class and the message do not."
    ),
    counterexamples=[
        Counterexample("the exception's class name", _q3_class_names, "you reported 'IntegrityError'"),
        Counterexample("session.rollback() per bad row", _q3_rollback_all, "threw them away"),
        Counterexample("add all, flush once", _q3_one_flush, "IntegrityError"),
        Counterexample("merge() instead of add()", _q3_merge, "overwritten"),
        Counterexample("catch and continue, no savepoint", _q3_catch_and_continue, "failed INSERT outside a savepoint"),
        Counterexample("execute(insert()) per row, no savepoint", _q3_execute_no_savepoint, "outside a savepoint"),
        Counterexample("the kind read from the message text", _q3_by_message, "by the error's message text"),
    ],
)


# ---------------------------------------------------------------------------- q4

_ATTEMPTS = 4
_BASE_DELAY = 0.02
_MARK = "retry-check"  # the status of the orders the checker's work writes


def _lost_connection() -> InterfaceError:
    """What SQLAlchemy raises on asyncpg when the connection drops mid-statement (simulated)."""
    return InterfaceError(
        "INSERT INTO orders ...", None,
        ConnectionResetError("connection reset by peer (simulated by the checker)"),
        connection_invalidated=True,
    )


@dataclass
class _Work:
    """A unit of work that writes an order, then fails as its script says."""

    script: str
    calls: list[float] = field(default_factory=list)  # loop time at each start
    failed: list[float] = field(default_factory=list)  # loop time at each failure

    async def __call__(self, session):
        now = asyncio.get_running_loop().time
        self.calls.append(now())
        order = Order(user_id=1, status=_MARK, total_cents=4_242, created_at=WHEN)
        session.add(order)
        await session.flush()  # written: a failed attempt must not leave it committed
        try:
            if self.script == "always fails (lost connection)" or (
                self.script == "fails twice (lost connection), then works" and len(self.calls) <= 2
            ):
                raise _lost_connection()
            if self.script == "hits a duplicate tag":
                session.add(Tag(name="python"))
                await session.flush()
        except Exception:
            self.failed.append(now())
            raise
        return order.id


@dataclass
class _Outcome:
    work: _Work
    value: Any = None
    error: BaseException | None = None

    def __repr__(self) -> str:
        return f"returned {self.value!r}" if self.error is None else f"raised {type(self.error).__name__}"


def _scripted(run_with_retry):
    """Hand the learner's function a fresh scripted work; record what it returned or raised."""

    async def answer(db, script):
        work = _Work(script)
        try:
            value = await run_with_retry(db, work, _ATTEMPTS, _BASE_DELAY)
        except NotImplementedError:
            raise
        except Exception as exc:
            return _Outcome(work, error=exc)
        return _Outcome(work, value=value)

    return answer


async def _q4_solution(db, work, attempts, base_delay):
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception as exc:
            if attempt + 1 == attempts or not is_transient(exc):
                raise
            await asyncio.sleep(base_delay * 2**attempt * random.uniform(1.0, 1.5))


async def _q4_sleep_in_a_thread(db, work, attempts, base_delay):
    """Never time.sleep() on the loop: here it runs in a worker thread, which is fine."""
    import time

    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception as exc:
            if attempt + 1 == attempts or not is_transient(exc):
                raise
            await asyncio.to_thread(time.sleep, base_delay * 2**attempt * random.uniform(1.0, 1.5))


async def _q4_probe(conn, attempt, script):
    ids = (await conn.execute(select(Order.id).where(Order.status == _MARK))).scalars().all()
    attempt.extra["committed"] = list(ids)


def _outcome(attempt: Attempt) -> _Outcome | None:
    return attempt.value if isinstance(attempt.value, _Outcome) else None


def _q4_right_errors(attempt: Attempt) -> str | None:
    out = _outcome(attempt)
    if out is None:
        return None
    n, script, error = len(out.work.calls), out.work.script, out.error
    if script == "hits a duplicate tag":
        if n > 1:
            return (
                f"you retried an IntegrityError: {n} attempts for a duplicate that will never go away. "
                "Retry only transient errors (and note that IntegrityError is a DBAPIError: "
                "`except DBAPIError` catches it too)"
            )
        if not isinstance(error, IntegrityError):
            return f"the IntegrityError must reach the caller; your function {out!r}"
        return None
    if script == "always fails (lost connection)":
        if n != _ATTEMPTS:
            return f"with attempts={_ATTEMPTS} and a connection that keeps failing, work ran {n} time(s), not {_ATTEMPTS}"
        if error is None:
            return (
                f"after {n} failed attempts your function returned {out.value!r}: raise the last error, "
                "so the caller knows nothing was done"
            )
        return None
    if error is not None:  # fails twice, then works
        return (
            f"a lost connection is transient, but your function gave up after {n} attempt(s) "
            f"({type(error).__name__}): try again, in a new transaction"
        )
    if n != 3:
        return f"work should have run 3 times (2 failures, then success); it ran {n} time(s)"
    return None


def _q4_new_transaction(attempt: Attempt) -> str | None:
    out = _outcome(attempt)
    committed = attempt.extra.get("committed")
    if out is None or committed is None:
        return None
    works = out.work.script == "fails twice (lost connection), then works" and out.error is None
    want = 1 if works else 0
    if len(committed) == want:
        return None
    if len(committed) > want:
        return (
            f"{len(committed)} order(s) were committed where {want} should be: the writes of failed "
            "attempts were kept. Run each attempt in a new transaction (async with db.session() as "
            "session, session.begin():) so that a failure rolls back its own work"
        )
    return "work succeeded, but its order was not committed: session.begin() commits when its block ends"


def _q4_result(attempt: Attempt) -> str | None:
    out = _outcome(attempt)
    committed = attempt.extra.get("committed") or []
    if out is None:
        return None
    if out.work.script != "fails twice (lost connection), then works" or out.error is not None:
        return None
    if len(committed) == 1 and out.value != committed[0]:
        return f"return what work returned (the new order's id, {committed[0]}); your function returned {out.value!r}"
    return None


def _q4_backoff(attempt: Attempt) -> str | None:
    out = _outcome(attempt)
    if out is None:
        return None
    calls, failed = out.work.calls, out.work.failed
    for n in range(len(calls) - 1):
        waited = calls[n + 1] - failed[n]
        floor = _BASE_DELAY * 2**n
        if waited < floor * 0.5:  # generous: sleeps never end early, but clocks are coarse
            return (
                f"retry {n + 1} started {waited * 1000:.1f} ms after the failure; wait at least "
                f"base_delay * 2**{n} = {floor * 1000:.0f} ms (plus jitter), or every client hammers "
                "the database at the moment it is struggling"
            )
    return None




def _q4_loop_left_free(attempt: Attempt) -> str | None:
    """A blocking time.sleep() between attempts (read from the source: the wait itself looks right).

    Read with ``ast``: a ``time.sleep(...)`` call (or ``sleep`` imported from time) in the answer's own
    async body, not in a string, nor in a helper it defines (which may run in a thread, ``to_thread``)."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(attempt.extra.get("source") or ""))
    except SyntaxError:
        return None
    from_time = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "time"
                 for a in n.names if a.name == "sleep"}

    def blocking(node: ast.AST) -> ast.Call | None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # a helper of its own: maybe run in a thread
            if isinstance(child, ast.Call) and (
                (isinstance(child.func, ast.Attribute) and child.func.attr == "sleep"
                 and isinstance(child.func.value, ast.Name) and child.func.value.id == "time")
                or (isinstance(child.func, ast.Name) and child.func.id in from_time)
            ):
                return child
            found = blocking(child)
            if found is not None:
                return found
        return None

    answer = next((n for n in tree.body if isinstance(n, ast.AsyncFunctionDef)), None)
    call = blocking(answer) if answer is not None else None
    if call is None:
        return None
    return (
        f"`{ast.unparse(call.func)}(...)` blocks the event loop: while your function waits, nothing else on "
        "this event loop runs, no other request, no other task. Wait with `await asyncio.sleep(...)`, "
        "which lets the loop run other work meanwhile"
    )


async def _q4_time_sleep(db, work, attempts, base_delay):
    import time

    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception as exc:
            if attempt + 1 == attempts or not is_transient(exc):
                raise
            time.sleep(base_delay * 2**attempt * random.uniform(1.0, 1.5))


async def _q4_retry_everything(db, work, attempts, base_delay):
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception:
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(base_delay * 2**attempt)


async def _q4_retry_dbapi_errors(db, work, attempts, base_delay):
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except DBAPIError:
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(base_delay * 2**attempt)


async def _q4_one_session(db, work, attempts, base_delay):
    async with db.session() as session:
        for attempt in range(attempts):
            try:
                result = await work(session)
                await session.commit()
                return result
            except Exception as exc:
                if attempt + 1 == attempts or not is_transient(exc):
                    raise
                await asyncio.sleep(base_delay * 2**attempt)


async def _q4_no_wait(db, work, attempts, base_delay):
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception as exc:
            if attempt + 1 == attempts or not is_transient(exc):
                raise


async def _q4_swallow_last(db, work, attempts, base_delay):
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception as exc:
            if not is_transient(exc):
                raise
            await asyncio.sleep(base_delay * 2**attempt)
    return None


q4 = _Adapted(
    id="10.q4",
    title="Retry transient errors, and only those",
    kind=DB_FN,
    solution_answer=_q4_solution,
    adapt=_scripted,
    probe=_q4_probe,
    scratch_scale=0.05,
    calls=(
        {"script": "fails twice (lost connection), then works"},
        {"script": "hits a duplicate tag"},
        {"script": "always fails (lost connection)"},
    ),
    rules=[
        Probe(
            test=_q4_right_errors,
            name="transient errors retried, the last one raised; permanent ones raised at once",
        ),
        Probe(test=_q4_new_transaction, name="each attempt in a new transaction"),
        Probe(test=_q4_result, name="work's result returned"),
        Probe(test=_q4_loop_left_free, name="the event loop left free while it waits"),
        Probe(test=_q4_backoff, name="waits longer before each retry"),
    ],
    hints=[
        "A loop over range(attempts). Inside: a new session and transaction per attempt, and return "
        "work's result from inside it. On an exception decide: retry, or raise?",
        "Raise when the error is not transient (is_transient() from the lesson, or "
        "course.lab.errorkinds.is_transient) or when this was the last attempt; otherwise "
        "await asyncio.sleep(base_delay * 2**attempt * random.uniform(1, 1.5)).",
        "for attempt in range(attempts): try: async with db.session() as session, session.begin(): "
        "return await work(session) / except Exception as exc: if attempt + 1 == attempts or not "
        "is_transient(exc): raise / then sleep and loop.",
    ],
    why=(
        "Retrying the whole unit of work in a fresh transaction is safe for transient errors; a "
        "duplicate or a bug fails the same way every time, and a caller must hear about the final failure."
    ),
    counterexamples=[
        Counterexample("retry every exception", _q4_retry_everything, "you retried an IntegrityError"),
        Counterexample("retry every DBAPIError", _q4_retry_dbapi_errors, "you retried an IntegrityError"),
        Counterexample("one session for all attempts", _q4_one_session, "new transaction"),
        Counterexample("retry at once, no wait", _q4_no_wait, "wait at least"),
        Counterexample("return None when out of attempts", _q4_swallow_last, "raise the last error"),
        Counterexample("time.sleep() between attempts", _q4_time_sleep, "blocks the event loop"),
    ],
)


# ---------------------------------------------------------------------------- q5

#: The columns a user may sort the user list by (the reference's allow-list).
_Q5_ALLOWED = ("id", "username", "country", "created_at")
#: A blind-injection payload: the order of the rows answers "does user 1's email start with 'a'?"
_Q5_ERROR_TEXT = "CAST((SELECT email FROM users WHERE id = 1) AS INTEGER)"  # PostgreSQL's error quotes it
_Q5_INJECTION = "CASE WHEN substr((SELECT email FROM users WHERE id = 1), 1, 1) = 'a' THEN id ELSE -id END"
#: The names the checker tries; the gravest finding over all of them is the verdict.
_Q5_SORTS = ["country", "created_at", _Q5_ERROR_TEXT, _Q5_INJECTION, "email", "username"]
_Q5_PAGE = 5


@dataclass
class _SortCall:
    """One call of the learner's function: what it returned or raised, and the SQL it sent."""

    sort: str
    value: Any = None
    error: BaseException | None = None
    statements: list[Any] = field(default_factory=list)


def _q5_each_sort(users_page):
    """Call the learner's users_page once per sort name, each inside a savepoint, noting the
    SQL it sent and what came back (a ValueError for a refused name is the right answer)."""
    from types import SimpleNamespace

    from sqlalchemy import event

    from .core import normalize

    async def run(session, sorts):
        calls = []
        connection = await session.connection()  # the checker's connection: listen on it alone
        for sort in sorts:
            call = _SortCall(sort)

            def note(conn, cursor, statement, parameters, context, executemany, call=call):
                if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    params = parameters if isinstance(parameters, (list, tuple)) else list((parameters or {}).values())
                    call.statements.append(SimpleNamespace(sql=statement, params=tuple(params)))

            event.listen(connection.sync_connection, "before_cursor_execute", note)
            try:
                async with session.begin_nested():
                    call.value = normalize(await users_page(session, sort))
            except NotImplementedError:
                raise
            except Exception as exc:  # judged by the rules, never shown as a traceback
                call.error = exc
            finally:
                event.remove(connection.sync_connection, "before_cursor_execute", note)
            calls.append(call)
        return calls

    return run


async def _q5_solution(session, sort):
    sortable = {"id": User.id, "username": User.username, "country": User.country, "created_at": User.created_at}
    if sort not in sortable:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(sortable)}")
    stmt = select(User.id).order_by(sortable[sort], User.id).limit(5)
    return (await session.scalars(stmt)).all()


async def _q5_expected(conn, sorts):
    """Each allowed name's first page, from SQL the checker writes itself; None for a refusal."""
    out = []
    for sort in sorts:
        if sort in _Q5_ALLOWED:
            sql = f"SELECT id FROM users ORDER BY {sort}, id LIMIT {_Q5_PAGE}"  # sort is from our own list
            out.append(list((await conn.execute(text(sql))).scalars()))
        else:
            out.append(None)
    return out


def _order_by_keys(sql: str) -> list[str]:
    import re

    found = re.search(r"ORDER BY (.*?)(?:\sLIMIT\s|\sOFFSET\s|\sFETCH\s|$)", sql, re.S | re.I)
    return [key.strip() for key in found.group(1).split(",")] if found else []


def _q5_pasted(call: _SortCall) -> bool:
    """The user's text appears in the SQL as SQL (not quoted as a name, not as a parameter)."""
    needle = call.sort.lower()
    return any(needle in s.sql.lower() and f'"{needle}"' not in s.sql.lower() for s in call.statements)


_INJECTION = (
    "identifier injection: sort={shown!r} was pasted into the SQL text, so whoever picks the sort "
    "column writes SQL (text() and literal_column() run what they are given; the order of the rows, "
    "or PostgreSQL's error text, then answers an attacker's questions about any table). A bound "
    "parameter cannot fix it: parameters carry values, never identifiers (ORDER BY ? sorts by a "
    "constant). Map the allowed names to columns and raise ValueError for the rest"
)


def _q5_findings(call: _SortCall, want: Any) -> tuple[int, str] | None:
    """(priority, message) for one call; the lowest priority over all calls is the verdict."""
    shown = call.sort if len(call.sort) < 30 else call.sort[:27] + "..."
    if want is None:  # a name that must be refused
        if not call.sort.isidentifier() and _q5_pasted(call):
            return 0, _INJECTION.format(shown=shown)
        if any(f'"{call.sort.lower()}"' in s.sql.lower() for s in call.statements):
            return 1, (
                f"sort={shown!r} reached the SQL as a quoted name: column(name) cannot break out of its "
                "quotes, but it lets a user sort by any column (SQLite even sorts by an unknown name as a "
                "string constant). Check the name against an allow-list first and raise ValueError"
            )
        if any(call.sort in map(str, s.params or ()) for s in call.statements):
            return 2, (
                f"sort={shown!r} travelled as a bound parameter: parameters carry values, not column "
                "names, so ORDER BY ? sorts every row by the same constant. Map allowed names to "
                "columns instead, and raise ValueError for any other name"
            )
        if call.error is None:
            return 3, (
                f"sort={shown!r} is not one of the sortable columns ({', '.join(_Q5_ALLOWED)}), yet your "
                "function sorted by it: getattr(User, name) or User.__table__.c[name] without an "
                "allow-list exposes any attribute, and the order of the rows leaks a column you never "
                "show (every email's first letters, here). Keep an explicit allow-list"
            )
        if call.statements:
            return 4, (
                f"sort={shown!r} reached the database, which refused it ({type(call.error).__name__}): "
                "refuse a name before building SQL with it, by checking an allow-list, and raise ValueError"
            )
        if not isinstance(call.error, ValueError):
            return 8, (
                f"sort={shown!r} raised {type(call.error).__name__}; raise ValueError with a message that "
                "names the allowed columns, so the caller can answer 400 and the user can pick again"
            )
        # every allowed name ("id" alone is no evidence: it hides in "invalid")
        if not all(name in str(call.error) for name in _Q5_ALLOWED if name != "id"):
            return 9, (
                f"the ValueError for sort={shown!r} says {str(call.error)[:80]!r}: name the allowed columns "
                f"in it ({', '.join(_Q5_ALLOWED)}), so the user knows what to pick"
            )
        return None
    if call.error is not None:
        return 5, f"sort={shown!r} is allowed, but your function raised {type(call.error).__name__}: {str(call.error)[:120]}"
    keys = _order_by_keys(call.statements[-1].sql) if call.statements else []
    if call.sort != "id" and keys and len(keys) < 2:
        return 6, (
            f"sort={shown!r}: no tie-breaker in ORDER BY {', '.join(keys)}. Many users share a "
            f"{call.sort}, and rows with equal keys come back in whatever order the database likes, so "
            "pages overlap or skip users. Add User.id as a second ORDER BY key"
        )
    descending = [key for key in keys if re.search(r"\sDESC\b", key, re.I)]
    if call.value != want and descending:
        return 7, (
            f"sort={shown!r}: your ORDER BY sorts descending ({', '.join(keys)}): the page lists the users "
            f"in ascending order of {call.sort}, ties by ascending id. Drop the `.desc()`"
        )
    if call.value != want:
        return 7, f"sort={shown!r}: expected the ids {want} (ascending, ties by id), got {call.value!r}"
    return None


def _q5_judge(refusals: bool) -> Callable[[Attempt], str | None]:
    """The gravest finding over the calls with a name to refuse (``refusals``) or to sort by."""

    def test(attempt: Attempt) -> str | None:
        calls, expected = attempt.value, attempt.expected
        if not isinstance(calls, list):
            return None
        found = [
            f for call, want in zip(calls, expected or [], strict=False)
            if (want is None) == refusals and (f := _q5_findings(call, want))
        ]
        if refusals and (late := _q5_validated_first(attempt)):
            found.append((10, late))  # SQL built before the check: the calls alone cannot show it
        return min(found)[1] if found else None

    return test


async def _q5_text(session, sort):
    stmt = select(User.id).order_by(text(sort), User.id).limit(5)
    return (await session.scalars(stmt)).all()


async def _q5_getattr(session, sort):
    stmt = select(User.id).order_by(getattr(User, sort), User.id).limit(5)
    return (await session.scalars(stmt)).all()


def _q5_columns() -> dict[str, Any]:
    """The allow-list as the counterexamples spell it: name -> column."""
    return {name: getattr(User, name) for name in _Q5_ALLOWED}


async def _q5_no_tiebreak(session, sort):
    sortable = _q5_columns()
    if sort not in sortable:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(sortable)}")
    return (await session.scalars(select(User.id).order_by(sortable[sort]).limit(5))).all()


async def _q5_column(session, sort):
    from sqlalchemy import column

    stmt = select(User.id).order_by(column(sort), User.id).limit(5)
    return (await session.scalars(stmt)).all()


async def _q5_bound(session, sort):
    from sqlalchemy import literal

    stmt = select(User.id).order_by(literal(sort), User.id).limit(5)
    return (await session.scalars(stmt)).all()


async def _q5_key_error(session, sort):
    sortable = _q5_columns()
    return (await session.scalars(select(User.id).order_by(sortable[sort], User.id).limit(5))).all()


async def _q5_value_error_unnamed(session, sort):
    sortable = {"id": User.id, "username": User.username, "country": User.country, "created_at": User.created_at}
    if sort not in sortable:
        raise ValueError("invalid sort column")
    return (await session.scalars(select(User.id).order_by(sortable[sort], User.id).limit(5))).all()


async def _q5_text_before_check(session, sort):
    stmt = select(User.id).order_by(text(sort), User.id).limit(5)
    if sort not in ("id", "username", "country", "created_at"):
        raise ValueError(f"cannot sort by {sort!r}; choose one of id, username, country, created_at")
    return (await session.scalars(stmt)).all()


async def _q5_literal_column(session, sort):
    from sqlalchemy import literal_column

    return (await session.scalars(select(User.id).order_by(literal_column(sort), User.id).limit(5))).all()


async def _q5_table_columns(session, sort):
    if sort not in _Q5_ALLOWED:
        raise ValueError(f"cannot sort by {sort!r}; allowed: {', '.join(_Q5_ALLOWED)}")
    return (await session.scalars(select(User.id).order_by(User.__table__.c[sort], User.id).limit(5))).all()


async def _q5_getattr_checked(session, sort):
    allowed = frozenset({"id", "username", "country", "created_at"})
    if sort not in allowed:
        raise ValueError(f"unknown sort {sort!r}, use one of: {sorted(allowed)}")
    column_ = getattr(User, sort)
    return list(await session.scalars(select(User.id).order_by(column_.asc(), User.id.asc()).limit(5)))


def _q5_validated_first(attempt: Attempt) -> str | None:
    """SQL built from the raw name before the allow-list check (the checker cannot see it run)."""
    source = attempt.extra.get("source") or ""
    built = re.search(r"\b(text|literal_column)\(\s*sort\b", source)
    check = source.find("raise ValueError")
    if built and check != -1 and built.start() < check:
        return (
            f"your function builds SQL from the raw name ({built.group(1)}(sort)) before it checks the name: "
            "check it against the allow-list first, and build the statement only from the column the "
            "allow-list maps it to"
        )
    return None


q5 = _Adapted(
    id="10.q5",
    title="Sort by the column the user picks",
    kind=SESSION_FN,
    solution_answer=_q5_solution,
    adapt=_q5_each_sort,
    expected=_q5_expected,
    calls=({"sorts": _Q5_SORTS},),
    rules=[
        Probe(
            test=_q5_judge(refusals=True),
            name="any other name refused before SQL is built, with a ValueError naming the allowed columns",
        ),
        Probe(test=_q5_judge(refusals=False), name="allowed names sorted, ties broken by id"),
    ],
    hints=[
        "A bound parameter cannot name a column, and text(sort) runs whatever the user typed. Decide "
        "in Python which column a name means: only names you chose may become a column.",
        "A dict from allowed name to column: {'id': User.id, 'username': User.username, ...}. Raise "
        "ValueError (naming the allowed names) for anything else; sort by the column, then User.id.",
        "if sort not in SORTABLE: raise ValueError(...); select(User.id).order_by(SORTABLE[sort], "
        "User.id).limit(5)",
    ],
    why=(
        "Only names you listed become columns: injected SQL, and real columns you never meant to "
        "expose (email), are refused before any SQL is built. User.id breaks ties, so pages are stable."
    ),
    counterexamples=[
        Counterexample("order_by(text(sort))", _q5_text, "identifier injection"),
        Counterexample("order_by(literal_column(sort))", _q5_literal_column, "bound parameter cannot fix it"),
        Counterexample("getattr(User, sort), no allow-list", _q5_getattr, "exposes any attribute"),
        Counterexample("allow-list, no tie-breaker", _q5_no_tiebreak, "no tie-breaker"),
        Counterexample("column(sort)", _q5_column, "quoted name"),
        Counterexample("the name as a bound parameter", _q5_bound, "parameters carry values"),
        Counterexample("dict lookup raises KeyError", _q5_key_error, "raise ValueError"),
        Counterexample("ValueError('invalid sort column')", _q5_value_error_unnamed, "name the allowed columns"),
        Counterexample("text(sort) built, then the name checked", _q5_text_before_check, "before it checks the name"),
    ],
)


# ------------------------------------------------------- more wrong answers, and right ones

async def _q1_case_sensitive(session, term):
    stmt = select(Post.id).where(Post.title.contains(term, autoescape=True)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_in_python(session, term):
    rows = (await session.execute(select(Post.id, Post.title).order_by(Post.id))).all()
    return [post_id for post_id, title in rows if term.lower() in title.lower()]


async def _q1_lower_contains(session, term):
    from sqlalchemy import func

    stmt = select(Post.id).where(func.lower(Post.title).contains(term.lower(), autoescape=True)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_text_escaped(session, term):
    escaped = term.replace("/", "//").replace("%", "/%").replace("_", "/_")
    stmt = text("SELECT id FROM posts WHERE lower(title) LIKE lower(:pattern) ESCAPE '/' ORDER BY id")
    return (await session.execute(stmt, {"pattern": f"%{escaped}%"})).scalars().all()


async def _q1_lower_title_only(session, term):
    from sqlalchemy import func

    stmt = select(Post.id).where(func.lower(Post.title).contains(term, autoescape=True)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_no_order_by(session, term):
    return (await session.scalars(select(Post.id).where(Post.title.icontains(term, autoescape=True)))).all()


async def _q1_post_objects(session, term):
    stmt = select(Post).where(Post.title.icontains(term, autoescape=True)).order_by(Post.id)
    return (await session.scalars(stmt)).all()


async def _q1_sorted_in_python(session, term):
    ids = await session.scalars(select(Post.id).where(Post.title.icontains(term, autoescape=True)))
    return sorted(ids)


q1.counterexamples = [
    *q1.counterexamples,
    Counterexample("contains(): case-sensitive on PostgreSQL", _q1_case_sensitive, "case-sensitive"),
    Counterexample("every title searched in Python", _q1_in_python, "the search ran in Python"),
    Counterexample("lower(title), the term not lowered", _q1_lower_title_only, "you lowered the title but not the term"),
    Counterexample("no ORDER BY", _q1_no_order_by, "your statement has no ORDER BY"),
    Counterexample("Post objects, not ids", _q1_post_objects, "returns Post objects"),
]


async def _q2_savepoint(session, name):
    try:
        async with session.begin_nested():
            tag = Tag(name=name)
            session.add(tag)
        return tag.id, True
    except IntegrityError:
        return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_commits(session, name):
    try:
        async with session.begin_nested():
            tag = Tag(name=name)
            session.add(tag)
        await session.commit()  # "make it stick": the caller's transaction ends here
        return tag.id, True
    except IntegrityError:
        return await session.scalar(select(Tag.id).where(Tag.name == name)), False


async def _q2_try_inside_savepoint(session, name):
    async with session.begin_nested():
        tag = Tag(name=name)
        try:
            session.add(tag)  # sends nothing: the INSERT runs when the block ends, after this try
        except IntegrityError:
            return await session.scalar(select(Tag.id).where(Tag.name == name)), False
    return tag.id, True


q2.counterexamples = [
    *q2.counterexamples,
    Counterexample("try inside the begin_nested() block", _q2_try_inside_savepoint, "never saw the IntegrityError"),
    Counterexample("a savepoint, then session.commit()", _q2_commits, "create_tag committed"),
]


async def _q3_expunge_the_refused(session, rows):
    outcome = []
    for row in rows:
        order = Order(**row)
        session.add(order)
        try:
            await session.flush()
        except IntegrityError as exc:
            session.expunge(order)  # "take the bad row back out", no savepoint
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q3_try_inside_savepoint(session, rows):
    outcome = []
    for row in rows:
        async with session.begin_nested():
            try:
                session.add(Order(**row))
            except IntegrityError as exc:
                outcome.append(constraint_kind(exc))
            else:
                outcome.append(None)
    return outcome


async def _q3_blanket_unique(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                session.add(Order(**row))
        except IntegrityError:
            outcome.append("unique")  # "already exists", whatever the database said
        else:
            outcome.append(None)
    return outcome


async def _q3_codes_by_hand(session, rows):
    kinds = {"23505": "unique", "23503": "foreign_key", "23502": "not_null", "23514": "check",
             "SQLITE_CONSTRAINT_UNIQUE": "unique", "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
             "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key", "SQLITE_CONSTRAINT_NOTNULL": "not_null",
             "SQLITE_CONSTRAINT_CHECK": "check"}
    outcome = []
    for row in rows:
        savepoint = await session.begin_nested()
        try:
            session.add(Order(**row))
            await session.flush()
        except IntegrityError as exc:
            await savepoint.rollback()
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None)
            outcome.append(kinds.get(code))
        else:
            await savepoint.commit()
            outcome.append(None)
    return outcome


async def _q3_do_nothing(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                await session.execute(_dialect_insert(session)(Order).values(**row).on_conflict_do_nothing())
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)  # a skipped duplicate raises nothing: it is reported as accepted
    return outcome


async def _q3_do_nothing_returning(session, rows):
    outcome = []
    for row in rows:
        try:
            async with session.begin_nested():
                inserted = await session.scalar(
                    _dialect_insert(session)(Order).values(**row).on_conflict_do_nothing().returning(Order.id)
                )
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None if inserted is not None else "unique")
    return outcome


async def _q3_or_ignore_on_sqlite(session, rows):
    sqlite_db = session.get_bind().dialect.name == "sqlite"
    outcome = []
    for row in rows:
        stmt = (insert(Order).prefix_with("OR IGNORE") if sqlite_db
                else _dialect_insert(session)(Order).on_conflict_do_nothing()).values(**row)
        try:
            async with session.begin_nested():
                await session.execute(stmt)
        except IntegrityError as exc:
            outcome.append(constraint_kind(exc))
        else:
            outcome.append(None)
    return outcome


async def _q2_never_flushed(session, name):
    tag = Tag(name=name)
    session.add(tag)
    return tag.id, True


q2.counterexamples = [
    *q2.counterexamples,
    Counterexample("add() without a flush", _q2_never_flushed, "these tags were never written"),
]

q3.counterexamples = [
    *q3.counterexamples,
    # SQLite: INSERT OR IGNORE also skips NOT NULL and CHECK; PostgreSQL: ON CONFLICT skips the duplicate
    Counterexample("INSERT OR IGNORE on SQLite, ON CONFLICT on PostgreSQL", _q3_or_ignore_on_sqlite,
                   "skipped it without a word"),
    Counterexample("on_conflict_do_nothing(), the skipped row reported as None", _q3_do_nothing, "skipped it without a word"),
    Counterexample("blanket except IntegrityError: 'already exists'", _q3_blanket_unique, "blanket"),
    Counterexample("session.expunge() of the refused row, no savepoint", _q3_expunge_the_refused, "found nothing to remove"),
    Counterexample("try inside each begin_nested() block", _q3_try_inside_savepoint, "never saw the IntegrityError"),
]


async def _q4_while_loop(db, work, attempts, base_delay):
    attempt = 0
    while True:
        try:
            async with db.session() as session, session.begin():
                result = await work(session)
            return result
        except Exception as exc:
            attempt += 1
            if attempt >= attempts or not is_transient(exc):
                raise
            await asyncio.sleep(base_delay * 2 ** (attempt - 1) + random.random() * base_delay)


async def _q5_descending(session, sort):
    sortable = _q5_columns()
    if sort not in sortable:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(sortable)}")
    return (await session.scalars(select(User.id).order_by(sortable[sort].desc(), User.id).limit(5))).all()


q5.counterexamples = [
    *q5.counterexamples,
    Counterexample("sorted descending", _q5_descending, "your ORDER BY sorts descending"),
]


#: Correct answers of another form: the tests require each one judged correct.
ALTERNATIVES = {
    "10.q1": [
        ("lower(title) contains lower(term), autoescape", _q1_lower_contains),
        ("text() with an escaped, bound pattern and ESCAPE", _q1_text_escaped),
        ("no ORDER BY, the ids sorted in Python", _q1_sorted_in_python),
    ],
    "10.q2": [
        ("a savepoint around the INSERT", _q2_savepoint),
    ],
    "10.q3": [
        ("explicit savepoint object, codes mapped by hand", _q3_codes_by_hand),
        ("on_conflict_do_nothing().returning(), no row back reported as 'unique'", _q3_do_nothing_returning),
    ],
    "10.q4": [
        ("a while loop, additive jitter", _q4_while_loop),
        ("time.sleep in a worker thread (to_thread), named in the docstring", _q4_sleep_in_a_thread),
    ],
    "10.q5": [
        ("User.__table__.c[name] after an allow-list check", _q5_table_columns),
        ("getattr(User, name) after an allow-list check", _q5_getattr_checked),
    ],
}
