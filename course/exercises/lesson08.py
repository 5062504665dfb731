"""Lesson 08 · Sessions, transactions and testing: all or nothing, savepoints, units of work, tasks.

Every exercise is judged by what reached the database, read after the answer ran:

- q1 and q2 take a session (``SESSION_FN``) that stands for the caller's unit of work (a
  request's session, a test's session). ``probe`` reads the tables on the checker's own
  connection, so a change still pending in the session does not count, and a failed
  session cannot break the reading. The checker's session joins its transaction with a
  SAVEPOINT: the first ``SAVEPOINT`` in the answer's SQL log is the caller's, and a
  ``RELEASE`` or ``ROLLBACK TO`` of that one means the answer committed or rolled back
  the caller's whole transaction.
- q3 and q4 take the database handle (``DB_FN``) and run on a scratch copy: the probe opens
  a new connection afterwards, so it sees exactly what was committed.
- q4 watches the scratch engine while the answer runs (listeners installed by the
  reference, removed by the probe): which asyncio task ran each statement on which
  connection, and how many connections were checked out at once.

References are raw SQL or plain Python over the call's arguments, independent of the
solutions.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IllegalStateChangeError, IntegrityError, InvalidRequestError, PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..lab.errorkinds import constraint_kind
from ..schema import Post, Tag, User, post_tags
from .core import DB_FN, SESSION_FN, Counterexample
from .core import _is_lazy_load as is_lazy_load
from .core import _note_lazy_load as note_lazy_load
from .explain import chain
from .named_mistakes import EXPLAINED, Explaining
from .named_mistakes import _close_sessions_left_open as close_sessions_left_open
from .rules import (
    Attempt,
    LeavesTransactionToCaller,
    NoLazyLoads,
    Probe,
    RuleResult,
    SessionUsable,
    lazy_load_message,
)

WHEN = datetime(2026, 1, 1)


async def _rows(conn: AsyncConnection, query: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await conn.execute(text(query), params)).all()]


# --------------------------------------------------------------------------- shared: the caller's transaction
CALLER = LeavesTransactionToCaller()


# --------------------------------------------------------------------------- q1
Q1_CALLS = (
    {"author_id": 7, "title": "Savepoints, explained", "tag_names": ["sql", "transactions", "testing"]},
    {"author_id": 7, "title": "A post with a typo in its tags", "tag_names": ["sql", "transactoins"]},
    {"author_id": 7, "title": "A tag named twice", "tag_names": ["sql", "testing", "sql"]},
)


async def _q1_solution(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None  # an unknown tag: nothing has been written, nothing to undo
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.flush()  # the INSERTs go out; the caller's transaction decides the rest
    return post.id


async def _q1_expected(conn: AsyncConnection, author_id: int, title: str, tag_names: list[str]) -> dict[str, Any]:
    known = sorted(r[0] for r in await _rows(conn, "SELECT name FROM tags"))
    unknown = sorted(set(tag_names) - set(known))
    ((posts,),) = await _rows(conn, "SELECT count(*) FROM posts")
    ((links,),) = await _rows(conn, "SELECT count(*) FROM post_tags")
    written = not unknown
    return {
        "written": written,
        "unknown": unknown,
        "tags": sorted(set(tag_names)) if written else [],
        "posts": posts + (1 if written else 0),
        "links": links + (len(set(tag_names)) if written else 0),
    }


async def _q1_probe(conn: AsyncConnection, attempt: Attempt, author_id: int, title: str, tag_names: list[str]) -> None:
    found = await _rows(conn, "SELECT id FROM posts WHERE author_id = :a AND title = :t ORDER BY id", a=author_id, t=title)
    ids = [r[0] for r in found]
    tags: list[str] = []
    if ids:
        tags = sorted(
            r[0]
            for r in await _rows(
                conn,
                "SELECT t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = :p",
                p=ids[0],
            )
        )
    ((posts,),) = await _rows(conn, "SELECT count(*) FROM posts")
    ((links,),) = await _rows(conn, "SELECT count(*) FROM post_tags")
    attempt.extra.update(ids=ids, tags=tags, posts=posts, links=links, tag_names=list(tag_names))


def _q1_all_or_nothing(attempt: Attempt) -> str | None:
    got, want = attempt.extra, attempt.expected
    if "ids" not in got:  # the probe did not run (the answer stopped first)
        return None
    if want["written"]:
        if not got["ids"] and attempt.value is None:
            names = got.get("tag_names") or []
            if len(set(names)) < len(names):
                return _Q1_DUPLICATE_NAMES
            return (
                "every tag exists, yet no post reached the database and you returned None. If you add()ed it: add() "
                "only puts the post in the session; `await session.flush()` sends its INSERT and sets post.id, "
                "which you return"
            )
        if len(got["ids"]) != 1 or got["posts"] != want["posts"]:
            return f"expected exactly one new post; the database has {len(got['ids'])} with that title"
        if got["tags"] != want["tags"]:
            return f"the new post carries the tags {got['tags']!r}; expected {want['tags']!r}"
        return None
    if got["ids"]:
        missing = ", ".join(repr(n) for n in want["unknown"])
        if got["tags"]:
            left = f"you wrote the post with the tags that do ({got['tags']!r})"
        else:
            left = "a post without its tags was left behind: a partial write"
        if _q1_wrote_first(attempt):
            return (
                f"tag {missing} does not exist, yet {left}. Your function wrote the post before it looked the tags "
                f"up: {_Q1_INSERT_FIRST}. Returning None does not take back an INSERT already sent. {_Q1_CHECK_FIRST}"
            )
        if attempt.value is None:
            return (
                f"tag {missing} does not exist, yet {left}: your check came after the flush. Your function returned "
                "None, but the post's INSERT had already gone out, and returning None does not take it back. "
                f"{_Q1_CHECK_FIRST}"
            )
        if got["tags"]:
            return f"tag {missing} does not exist, yet {left}: with one unknown tag, nothing may be written"
        return (
            f"tag {missing} does not exist, yet {left}. "
            "Look the tags up before you write anything, or write inside begin_nested() and leave it by raising"
        )
    if got["links"] != want["links"] or got["posts"] != want["posts"]:
        return "rows were written or removed elsewhere in posts or post_tags"
    return None


_Q1_DUPLICATE_NAMES = (
    "every tag exists, but you returned None: tag_names names one tag twice, so fewer tags come back "
    "than names were asked for. Compare with the distinct names: len(set(tag_names))"
)
_Q1_INSERT_FIRST = (
    "the INSERT INTO posts went out before the SELECT of the tags (your flush(), or the autoflush that a query "
    "runs after session.add())"
)
_Q1_CHECK_FIRST = (
    "Look the tags up first and compare them with the distinct names; only when every name exists, build "
    "`Post(..., tags=list(tags))`, add it and flush. (Or write inside `async with session.begin_nested():`, "
    "raise inside the block to undo it, and catch that exception outside the block to return None)"
)


def _q1_wrote_first(attempt: Attempt) -> bool:
    """The post's INSERT was sent before the tags were looked up (the first SELECT from tags)."""
    insert_at = select_at = None
    for i, q in enumerate(attempt.log.queries):
        sql = " ".join(q.sql.split()).upper()
        if insert_at is None and q.verb == "INSERT" and sql.startswith("INSERT INTO POSTS"):
            insert_at = i
        if select_at is None and q.verb == "SELECT" and " FROM TAGS" in sql:
            select_at = i
    return insert_at is not None and select_at is not None and insert_at < select_at


def _q1_returned(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    ids = attempt.extra.get("ids") or []
    if not want["written"]:
        if got is None:
            return None
        return f"an unknown tag means nothing was created: return None (you returned {got!r})"
    if isinstance(got, int) and not isinstance(got, bool) and ids and got == ids[0]:
        return None
    if got is None and attempt.lazy_loads:
        return None  # it stopped at a lazy load: that rule says why
    if got is None and len(set(attempt.extra.get("tag_names") or [])) < len(attempt.extra.get("tag_names") or []):
        return _Q1_DUPLICATE_NAMES
    if got is None:
        return "return the new post's id (after a flush, post.id is set); you returned None"
    return f"return the new post's id ({ids[0] if ids else '?'}); you returned {got!r}"


async def _q1_partial(session, author_id, title, tag_names):
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1))
    session.add(post)
    await session.flush()  # the post is in the database from here on
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None  # ...and stays there
    await session.execute(insert(post_tags), [{"post_id": post.id, "tag_id": t.id} for t in tags])
    return post.id


async def _q1_skip_unknown(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.flush()
    return post.id


async def _q1_rollback(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.flush()
    if len(tags) != len(set(tag_names)):
        await session.rollback()  # undoes the post... and everything else the caller had done
        return None
    return post.id


async def _q1_commit(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.commit()
    return post.id


async def _q1_alt_set_difference(session, author_id, title, tag_names):
    found = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
    if set(tag_names) - found.keys():
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1))
    post.tags = [found[name] for name in dict.fromkeys(tag_names)]
    session.add(post)
    await session.flush()
    return post.id


async def _q1_alt_savepoint(session, author_id, title, tag_names):
    """Write first, and undo only its own part when a name turns out unknown."""
    try:
        async with session.begin_nested():
            tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
            post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
            session.add(post)
            await session.flush()
            if len(tags) != len(set(tag_names)):
                raise LookupError("unknown tag")
        return post.id
    except LookupError:
        return None


@dataclass
class _TagsAfterFlush(NoLazyLoads):
    """A lazy load after the post was flushed: post.tags read (extend(), append()) on a new, flushed post."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        inserted = any(q.verb == "INSERT" and "posts" in q.sql.split("(")[0] for q in attempt.log.queries)
        if result.passed or not inserted:
            return result
        if _q1_wrote_first(attempt):
            result.message = (
                f"the post was written before you looked the tags up: {_Q1_INSERT_FIRST}. From then on it is a "
                "flushed object, so setting or extending post.tags loads its collection lazily (MissingGreenlet "
                "in async code), and with an unknown tag the post would stay written. " + _Q1_CHECK_FIRST
            )
            return result
        result.message = (
            "post.tags was touched after the post was flushed: the collection of a flushed object is loaded "
            "lazily on first access (MissingGreenlet in async code). Pass the tags when you build the post, "
            "`Post(..., tags=list(tags))`, then add and flush once"
        )
        return result


async def _q1_extend_after_flush(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1))
    session.add(post)
    await session.flush()
    post.tags.extend(tags)  # a lazy load of the flushed post's empty collection
    await session.flush()
    return post.id


async def _q1_add_then_look_up(session, author_id, title, tag_names):
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1))
    session.add(post)  # no flush() here... but the query below autoflushes the post
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None
    post.tags = list(tags)
    await session.flush()
    return post.id


async def _q1_flush_then_check(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.flush()
    if len(tags) != len(set(tag_names)):  # right test, too late: the INSERT has gone out
        return None
    return post.id


async def _q1_append_each_name(session, author_id, title, tag_names):
    by_name = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))}
    if set(tag_names) - by_name.keys():
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=[])
    for name in tag_names:
        post.tags.append(by_name[name])  # a name given twice links its tag twice
    session.add(post)
    await session.flush()
    return post.id


async def _q1_no_flush(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(set(tag_names)):
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    return post.id  # None: nothing was sent yet


async def _q1_count_with_duplicates(session, author_id, title, tag_names):
    tags = (await session.scalars(select(Tag).where(Tag.name.in_(tag_names)))).all()
    if len(tags) != len(tag_names):  # a name given twice comes back once
        return None
    post = Post(author_id=author_id, title=title, body="", created_at=datetime(2026, 1, 1), tags=list(tags))
    session.add(post)
    await session.flush()
    return post.id


def _q1_explain(error: BaseException) -> str | None:
    """The same tag linked twice: a name repeated in tag_names, appended once per name."""
    statement = " ".join(str(getattr(error, "statement", "") or "").split()).upper()
    if constraint_kind(error) == "unique" and statement.startswith("INSERT INTO POST_TAGS"):
        return (
            "the same tag was linked to the post twice: tag_names names a tag more than once, and each "
            "each tag in `post.tags` becomes a row of post_tags, whose (post_id, tag_id) is UNIQUE. The duplicate is "
            "your own: link each distinct tag once (the SELECT ... WHERE name IN (...) returns each tag once: "
            "`Post(..., tags=list(tags))`; or loop over `dict.fromkeys(tag_names)`)"
        )
    return None


def _q1_raised(attempt: Attempt) -> str | None:
    return "not judged: your function raised (see above)" if attempt.extra.get("explained") else None


@dataclass
class _CallerUnlessRaised(LeavesTransactionToCaller):
    """After an error the checker explains, it rolls the answer's part back itself (to the caller's
    savepoint): that rollback is not the answer's, so the line says it was not judged."""

    def judge(self, attempt: Attempt) -> RuleResult:
        raised = _q1_raised(attempt)
        return RuleResult(self.name, False, raised) if raised else super().judge(attempt)


q1 = Explaining(
    id="08.q1",
    title="A post and its tags, all or nothing",
    kind=SESSION_FN,
    solution_answer=_q1_solution,
    expected=_q1_expected,
    probe=_q1_probe,
    calls=Q1_CALLS,
    explain=_q1_explain,
    rules=[
        EXPLAINED,
        _CallerUnlessRaised(),  # the caller's work thrown away is the worst of it: said first
        _TagsAfterFlush(),
        Probe(test=lambda a: _q1_raised(a) or _q1_all_or_nothing(a), name="all or nothing"),
        Probe(test=lambda a: _q1_raised(a) or _q1_returned(a), name="returns the new id, or None"),
        SessionUsable(),
    ],
    hints=[
        "Find out whether every tag exists before you write anything: one SELECT of the tags whose name "
        "is in tag_names, then compare how many came back with how many distinct names you asked for.",
        "If one is missing, return None: nothing was written, so there is nothing to undo (and the caller's "
        "session is untouched). Otherwise build the Post with tags=list(tags), add it and flush.",
        "Never commit or roll back the session you were given: the caller owns it. If you prefer to write "
        "first, do it inside `async with session.begin_nested():` and raise to leave it: only your part is undone.",
    ],
    why="A helper that shares the caller's session writes all of its part or none of it, and leaves "
    "commit and rollback to the caller.",
    counterexamples=[
        Counterexample("writes the post, then finds the unknown tag", _q1_partial, "partial write"),
        Counterexample("skips the unknown tag", _q1_skip_unknown, "nothing may be written"),
        Counterexample("rolls back the whole session", _q1_rollback, "caller's whole transaction was rolled back"),
        Counterexample("commits the caller's session", _q1_commit, "your function committed the session"),
        Counterexample("post.tags.extend() after the flush", _q1_extend_after_flush, "Post(..., tags=list(tags))"),
        Counterexample("len(tags) != len(tag_names)", _q1_count_with_duplicates, "len(set(tag_names))"),
        Counterexample("add() the post, then look the tags up (autoflush)", _q1_add_then_look_up, "the autoflush"),
        Counterexample("flush, then check the tags", _q1_flush_then_check, "your check came after the flush"),
        Counterexample("a tag appended once per name", _q1_append_each_name, "tag_names names a tag more than once"),
        Counterexample("add() without a flush, post.id returned", _q1_no_flush, "sends its INSERT and sets post.id"),
    ],
)


# --------------------------------------------------------------------------- q2
Q2_CALLS = (
    {"names": ["pytest", "python", "alembic", "pytest", "sql", "savepoints"]},
    {"names": ["python", "sql"]},
)


async def _q2_solution(session, names):
    inserted = []
    for name in names:
        try:
            async with session.begin_nested():  # SAVEPOINT ... RELEASE, or ROLLBACK TO on error
                session.add(Tag(name=name))
        except IntegrityError:
            continue  # only this insert was undone; the session is still usable
        inserted.append(name)
    return inserted


async def _q2_expected(conn: AsyncConnection, names: list[str]) -> dict[str, Any]:
    existing = await _rows(conn, "SELECT id, name FROM tags ORDER BY id")
    known = {name for _, name in existing}
    new: list[str] = []
    for name in names:
        if name not in known and name not in new:
            new.append(name)
    return {"returned": new, "existing": existing, "total": len(existing) + len(new)}


async def _q2_probe(conn: AsyncConnection, attempt: Attempt, names: list[str]) -> None:
    old_ids = [i for i, _ in attempt.expected["existing"]]
    rows = await _rows(conn, "SELECT id, name FROM tags ORDER BY id")
    attempt.extra.update(
        existing=[r for r in rows if r[0] in set(old_ids)],
        names=[name for _, name in rows],
        total=len(rows),
    )


def _q2_new_present(attempt: Attempt) -> str | None:
    if not attempt.extra:
        return None
    want = attempt.expected["returned"]
    missing = [n for n in want if n not in attempt.extra["names"]]
    if missing:
        lost = f"{', '.join(repr(n) for n in missing)} {'is' if len(missing) == 1 else 'are'} missing from the tags table"
        log = list(attempt.log)  # with SAVEPOINT and ROLLBACK TO, which .queries leaves out
        savepoints = [q.sql.split()[-1] for q in log if q.verb == "SAVEPOINT"]
        inserts = [q for q in log if q.verb == "INSERT"]
        # the first savepoint is the checker's (the caller's transaction); the answer opened one more, for all
        if len(savepoints) == 2 and (len(inserts) > 1 or any(q.batch_size > 1 for q in inserts)):
            return (
                f"one savepoint around all the inserts: the first duplicate rolled back to it and undid every tag "
                f"inside it, so {lost}. Open one savepoint per name: `for name in names:` then `try:` around "
                "`async with session.begin_nested():` (add the tag and flush inside), and "
                "`except IntegrityError:` level with the `try`"
            )
        if savepoints and any(q.verb == "ROLLBACK" and q.sql.split()[-1] == savepoints[0] for q in log):
            return (
                f"{lost}: your session.rollback() after a duplicate threw away the tags already inserted; a "
                "savepoint (begin_nested) undoes only the insert that failed"
            )
        return (
            f"{lost}: if a duplicate stopped your inserts, give each name its own savepoint "
            "(begin_nested), which undoes only the insert that failed"
        )
    if attempt.extra["total"] != attempt.expected["total"]:
        return f"the tags table has {attempt.extra['total']} rows; expected {attempt.expected['total']}"
    return None


def _q2_existing_untouched(attempt: Attempt) -> str | None:
    if not attempt.extra:
        return None
    if attempt.extra["existing"] != attempt.expected["existing"]:
        return "tags that already existed were changed or removed: leave them as they are"
    return None


def _q2_returned(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected["returned"]
    if got == want:
        return None
    return f"return the names you inserted, in the order given, each once: expected {want!r}, got {got!r}"


async def _q2_no_savepoint(session, names):
    inserted = []
    for name in names:
        session.add(Tag(name=name))
        try:
            await session.flush()
        except IntegrityError:
            continue  # the session's transaction is gone now: the next flush raises
        inserted.append(name)
    return inserted


async def _q2_rollback(session, names):
    inserted = []
    for name in names:
        session.add(Tag(name=name))
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()  # undoes this insert and every earlier one
            continue
        inserted.append(name)
    return inserted


async def _q2_one_savepoint_for_all(session, names):
    try:
        async with session.begin_nested():
            session.add_all([Tag(name=name) for name in names])
    except IntegrityError:
        pass
    return list(names)


async def _q2_precheck_once(session, names):
    existing = set((await session.scalars(select(Tag.name).where(Tag.name.in_(names)))).all())
    fresh = [n for n in names if n not in existing]  # a name given twice stays twice
    session.add_all([Tag(name=n) for n in fresh])
    await session.flush()
    return fresh


async def _q2_commit_each(session, names):
    inserted = []
    for name in names:
        try:
            async with session.begin_nested():
                session.add(Tag(name=name))
        except IntegrityError:
            continue
        inserted.append(name)
        await session.commit()  # "make it stick": but this is the caller's transaction
    return inserted


async def _q2_alt_flush_in_savepoint(session, names):
    inserted = []
    for name in names:
        savepoint = await session.begin_nested()
        try:
            session.add(Tag(name=name))
            await session.flush()
        except IntegrityError:
            await savepoint.rollback()
            continue
        await savepoint.commit()
        inserted.append(name)
    return inserted


async def _q2_alt_on_conflict(session, names):
    """One statement: the database skips the existing names (and a name's second copy) itself."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Tag).values([{"name": n} for n in names]).on_conflict_do_nothing().returning(Tag.name)
    inserted = set((await session.scalars(stmt)).all())
    return [n for n in dict.fromkeys(names) if n in inserted]


def _q2_explain(error: BaseException) -> str | None:
    if isinstance(error, PendingRollbackError):
        return (
            "a duplicate failed, you caught the IntegrityError and carried on, but the flush that failed "
            "had already rolled back the session's whole transaction (PendingRollbackError on the next "
            "statement; on PostgreSQL the transaction is aborted anyway). Put each insert in a savepoint, "
            "async with session.begin_nested():, so a duplicate undoes only itself"
        )
    if isinstance(error, IntegrityError):
        return (
            "a duplicate reached the database and the IntegrityError escaped your function (a name that "
            "repeats in the list, or one a check made earlier did not see). Let the UNIQUE constraint decide: "
            "catch IntegrityError around each insert, inside async with session.begin_nested():"
        )
    return None


def _q2_unique_decides(attempt: Attempt) -> str | None:
    """Existing names were skipped by looking first, not by the UNIQUE constraint: right rows, a race."""
    statements = list(attempt.log)
    sql = [" ".join(q.sql.lower().split()) for q in statements]
    looked = any(q.verb == "SELECT" and "from tags" in text_ for q, text_ in zip(statements, sql, strict=True))
    refused = any(q.failed for q in statements) or any("on conflict" in text_ for text_ in sql)
    if attempt.extra.get("explained") or not looked or refused:
        return None
    return (
        "you looked the names up with a SELECT first, so the UNIQUE constraint never decided: another session "
        "can add the same name between your SELECT and your INSERT (a race). Insert each name inside "
        "`async with session.begin_nested():` and catch IntegrityError for the ones that exist"
    )


async def _q2_select_first(session, names):
    inserted = []
    for name in names:
        if await session.scalar(select(Tag.id).where(Tag.name == name)) is None:
            session.add(Tag(name=name))
            await session.flush()
            inserted.append(name)
    return inserted


q2 = Explaining(
    id="08.q2",
    title="Insert tags, skipping the ones that exist",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    probe=_q2_probe,
    calls=Q2_CALLS,
    explain=_q2_explain,
    rules=[
        EXPLAINED,
        Probe(test=_q2_unique_decides, name="the UNIQUE constraint decides"),
        Probe(test=_q2_new_present, name="new tags inserted"),
        Probe(test=_q2_existing_untouched, name="existing tags untouched"),
        Probe(test=_q2_returned, name="returns the names inserted"),
        CALLER,
        SessionUsable(),
    ],
    hints=[
        "Let the database's UNIQUE constraint decide: try each insert, and catch IntegrityError for the "
        "duplicates. The catch alone is not enough: after a failed flush the session's transaction is dead.",
        "Wrap each insert in its own savepoint: `async with session.begin_nested(): session.add(Tag(name=name))`. "
        "Leaving the block flushes; an IntegrityError there rolls back to the savepoint only.",
        "try: async with session.begin_nested(): session.add(Tag(name=name))  except IntegrityError: continue "
        "(then append the name to the list you return).",
    ],
    why="The UNIQUE constraint decided what is a duplicate, and a duplicate cost nothing else: a savepoint per "
    "insert undoes only the insert that failed (the transaction, the session and the work before it survive), and "
    "INSERT ... ON CONFLICT DO NOTHING skips the duplicates inside the statement itself.",
    counterexamples=[
        Counterexample("catches IntegrityError without a savepoint", _q2_no_savepoint, "PendingRollbackError"),
        Counterexample("rolls back the session on a duplicate", _q2_rollback, "missing from the tags table"),
        Counterexample("checks the existing names once", _q2_precheck_once, "the IntegrityError escaped your function"),
        Counterexample("one savepoint around every insert", _q2_one_savepoint_for_all,
                       "one savepoint around all the inserts"),
        Counterexample("commits after each tag", _q2_commit_each, "your function committed the session"),
        Counterexample("SELECT each name first, then insert", _q2_select_first, "the UNIQUE constraint never decided"),
    ],
)


# --------------------------------------------------------------------------- q3
Q3_CALLS = (
    {"username": "ada_new", "titles": ["Hello", "Second thoughts"]},
    {"username": "grace_new", "titles": ["Hello", None, "Third"]},
)


async def _q3_solution(db, username, titles):
    # unit 1: the sign-up, in its own session and transaction (begin(): commit at the end)
    async with db.session() as session, session.begin():
        user = User(
            username=username, email=f"{username}@example.com", display_name=username,
            country="NL", created_at=datetime(2026, 1, 1),
        )
        session.add(user)
    user_id = user.id  # committed: it stays, whatever happens next
    # unit 2: the import, all or nothing
    try:
        async with db.session() as session, session.begin():
            session.add_all(
                [Post(author_id=user_id, title=t, body="", created_at=datetime(2026, 1, 1)) for t in titles]
            )
    except IntegrityError:
        return {"user_id": user_id, "imported": 0}
    return {"user_id": user_id, "imported": len(titles)}


async def _q3_expected(conn: AsyncConnection, username: str, titles: list[str | None]) -> dict[str, Any]:
    ((users,),) = await _rows(conn, "SELECT count(*) FROM users")
    ((posts,),) = await _rows(conn, "SELECT count(*) FROM posts")
    valid = all(t is not None for t in titles)
    return {
        "users": users + 1,
        "posts": posts + (len(titles) if valid else 0),
        "titles": sorted(titles) if valid else [],
        "imported": len(titles) if valid else 0,
    }


async def _q3_probe(conn: AsyncConnection, attempt: Attempt, username: str, titles: list[str | None]) -> None:
    user = await _rows(conn, "SELECT id FROM users WHERE username = :u", u=username)
    user_id = user[0][0] if user else None
    mine = (
        sorted(r[0] for r in await _rows(conn, "SELECT title FROM posts WHERE author_id = :a", a=user_id))
        if user_id is not None
        else []
    )
    ((users,),) = await _rows(conn, "SELECT count(*) FROM users")
    ((posts,),) = await _rows(conn, "SELECT count(*) FROM posts")
    attempt.extra.update(user_id=user_id, titles=mine, users=users, posts=posts, valid=None not in titles)


def _q3_signup_stands(attempt: Attempt) -> str | None:
    got = attempt.extra
    if not got:
        return None
    if got["user_id"] is None:
        if attempt.extra.get("explained") and "the sign-up failed" in attempt.extra["explained"]:
            return "the user is not in the database: the sign-up itself failed (see above)"
        if not got["valid"]:
            return (
                "the user is not in the database: the failed import took the sign-up down with it. Commit "
                "the sign-up in its own unit of work (its own session and transaction) before the import starts"
            )
        return (
            "the user is not in the database: was the sign-up ever committed? A session closed without "
            "commit() (or a begin() block) rolls back"
        )
    if got["users"] != attempt.expected["users"]:
        return f"the users table should grow by exactly one row; it has {got['users']} rows"
    return None


def _q3_stopped(attempt: Attempt) -> str | None:
    """Why the answer did not run to its end (it raised, or stopped at a lazy load), or None."""
    if attempt.extra.get("explained"):
        return "your function raised (see above)"
    if attempt.extra.get("stopped_at_lazy_load"):
        return "your function stopped at a lazy load (see the line on it)"
    return None


def _q3_import(attempt: Attempt) -> str | None:
    got, want = attempt.extra, attempt.expected
    if not got:
        return None
    if got["user_id"] is None:
        stopped = _q3_stopped(attempt)
        return f"not judged: no sign-up was committed, and {stopped}" if stopped else None
    if got["titles"] == want["titles"] and got["posts"] == want["posts"]:
        return None
    if not got["valid"] and got["titles"]:
        return (
            f"partial import: {len(got['titles'])} post(s) of the failed import were committed "
            f"({got['titles']!r}). Run the whole import in one transaction, so its failure undoes all of it"
        )
    return f"the user's posts are {got['titles']!r}; expected {want['titles']!r}"


def _q3_returned(attempt: Attempt) -> str | None:
    stopped = _q3_stopped(attempt)
    if stopped:
        return f"not judged: {stopped} before it returned"
    if attempt.extra.get("user_id") is None:
        return None  # no sign-up committed: the first rule says so
    got = attempt.value
    want = {"user_id": attempt.extra.get("user_id"), "imported": attempt.expected["imported"]}
    if got == want:
        return None
    return f"return {{'user_id': ..., 'imported': ...}} describing what was committed: expected {want!r}, got {got!r}"


async def _q3_one_transaction(db, username, titles):
    try:
        async with db.session() as session, session.begin():
            user = User(
                username=username, email=f"{username}@example.com", display_name=username,
                country="NL", created_at=datetime(2026, 1, 1),
            )
            session.add(user)
            await session.flush()
            session.add_all(
                [Post(author_id=user.id, title=t, body="", created_at=datetime(2026, 1, 1)) for t in titles]
            )
    except IntegrityError:
        return {"user_id": None, "imported": 0}
    return {"user_id": user.id, "imported": len(titles)}


async def _q3_commit_each_post(db, username, titles):
    async with db.session() as session:
        user = User(
            username=username, email=f"{username}@example.com", display_name=username,
            country="NL", created_at=datetime(2026, 1, 1),
        )
        session.add(user)
        await session.commit()
        user_id = user.id
        imported = 0
        try:
            for t in titles:
                session.add(Post(author_id=user_id, title=t, body="", created_at=datetime(2026, 1, 1)))
                await session.commit()  # each post on its own: the first ones stay when a later one fails
                imported += 1
        except IntegrityError:
            await session.rollback()
            return {"user_id": user_id, "imported": 0}
    return {"user_id": user_id, "imported": imported}


async def _q3_flush_only(db, username, titles):
    async with db.session() as session:
        user = User(
            username=username, email=f"{username}@example.com", display_name=username,
            country="NL", created_at=datetime(2026, 1, 1),
        )
        session.add(user)
        await session.flush()  # an id, but no commit: closing the session rolls it back
        user_id = user.id
    try:
        async with db.session() as session, session.begin():
            session.add_all([Post(author_id=user_id, title=t, body="", created_at=datetime(2026, 1, 1)) for t in titles])
    except IntegrityError:
        return {"user_id": user_id, "imported": 0}
    return {"user_id": user_id, "imported": len(titles)}


async def _q3_no_catch(db, username, titles):
    async with db.session() as session, session.begin():
        user = User(
            username=username, email=f"{username}@example.com", display_name=username,
            country="NL", created_at=datetime(2026, 1, 1),
        )
        session.add(user)
    async with db.session() as session, session.begin():
        session.add_all([Post(author_id=user.id, title=t, body="", created_at=datetime(2026, 1, 1)) for t in titles])
    return {"user_id": user.id, "imported": len(titles)}


async def _q3_commit_each_reads_expired(db, username, titles):
    """Commits post by post, and after the rollback of the failed one reads user.id: expired, a lazy load."""
    async with db.session() as session:
        user = User(
            username=username, email=f"{username}@example.com", display_name=username,
            country="NL", created_at=datetime(2026, 1, 1),
        )
        session.add(user)
        await session.commit()
        imported = 0
        for t in titles:
            session.add(Post(author_id=user.id, title=t, body="", created_at=datetime(2026, 1, 1)))
            try:
                await session.commit()
                imported += 1
            except IntegrityError:
                await session.rollback()  # expires user: the next user.id is a lazy load
        return {"user_id": user.id, "imported": imported}


async def _q3_no_username(db, username, titles):
    async with db.session() as session, session.begin():
        user = User(email=f"{username}@example.com", display_name=username, country="NL", created_at=datetime(2026, 1, 1))
        session.add(user)
    try:
        async with db.session() as session, session.begin():
            session.add_all([Post(author_id=user.id, title=t, body="", created_at=datetime(2026, 1, 1)) for t in titles])
    except IntegrityError:
        return {"user_id": user.id, "imported": 0}
    return {"user_id": user.id, "imported": len(titles)}


async def _q3_alt_begin_factory(db, username, titles):
    async with db.session.begin() as session:  # the sessionmaker's begin(): session and transaction
        user = User(username=username, email=f"{username}@example.com", display_name=username,
                    country="NL", created_at=datetime(2026, 1, 1))
        session.add(user)
    try:
        async with db.session.begin() as session:
            for title in titles:
                session.add(Post(author_id=user.id, title=title, body="", created_at=datetime(2026, 1, 1)))
    except IntegrityError:
        return {"user_id": user.id, "imported": 0}
    return {"user_id": user.id, "imported": len(titles)}


_NOT_NULL_COLUMN = (
    re.compile(r"NOT NULL constraint failed: (\w+)\.(\w+)"),  # SQLite: table.column
    re.compile(r'null value in column "(\w+)" of relation "(\w+)"'),  # PostgreSQL: column, then table
)


def _not_null_column(error: BaseException) -> tuple[str, str] | None:
    """(table, column) of a NOT NULL violation, from either backend's message (the code says it is one)."""
    if constraint_kind(error) != "not_null":
        return None
    text_ = str(error)
    sqlite_, postgres = (pattern.search(text_) for pattern in _NOT_NULL_COLUMN)
    if sqlite_:
        return sqlite_.group(1), sqlite_.group(2)
    if postgres:
        return postgres.group(2), postgres.group(1)
    return None


def _q3_explain(error: BaseException) -> str | None:
    where = _not_null_column(error)
    if where and where[0] == "users":
        column = where[1]
        value = "username" if column == "username" else "..."
        return (
            f"the sign-up failed: NOT NULL constraint on users.{column}, so the User was never written and nothing "
            f"after it ran. Give the new User its {column}: `User({column}={value}, email=..., ...)`"
        )
    if isinstance(error, IntegrityError):
        return (
            "the import's IntegrityError escaped your function. Catch it around the import's own unit of "
            "work and return imported=0: its transaction rolled back, and the sign-up, committed before, stays"
        )
    return None


def _expired_attribute(error: BaseException) -> str | None:
    """``User.id`` when the lazy load was the reload of an expired column (read after a commit or a
    rollback expired it), from the attribute machinery's frames; None for anything else."""
    expired, name = False, None
    for item in chain(error):
        tb = item.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "_load_expired":
                expired = True
            if name is None and frame.f_code.co_name == "get" and frame.f_code.co_filename.endswith("attributes.py"):
                state, key = frame.f_locals.get("state"), frame.f_locals.get("key")
                if state is not None and isinstance(key, str):
                    name = f"{state.class_.__name__}.{key}"
            tb = tb.tb_next
    return name if expired else None


@dataclass
class _RunsOnAfterLazyLoad(Explaining):
    """An answer that stops at a lazy load is still judged on what it committed: the probe runs as after
    any other end, so the other lines say what happened (a partial import) instead of "ok" for a
    claim nobody checked. The lazy load gets its own line (``_ExpiredRead``)."""

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        stopped: list[tuple[BaseException, str | None]] = []

        async def until_lazy_load(handle: Any, **kw: Any) -> Any:
            try:
                return await answer(handle, **kw)
            except Exception as error:
                if not is_lazy_load(error):
                    raise
                stopped.append((error, _expired_attribute(error)))  # before the frames are released
                await close_sessions_left_open(error, handle)
                return None

        attempt = await super()._attempt(until_lazy_load, db, call)
        if stopped:
            error, attribute = stopped[0]
            attempt.extra["stopped_at_lazy_load"] = True
            attempt.extra["expired_attribute"] = attribute
            note_lazy_load(attempt, error)
        return attempt


@dataclass
class _ExpiredRead(NoLazyLoads):
    """The lazy load, named for what it was here: an attribute read after a commit or rollback expired it.
    Its own name, so it is not put first: what the answer committed is the headline."""

    name: str = "no attribute read after a commit or rollback expired it"

    def judge(self, attempt: Attempt) -> RuleResult:
        if not attempt.lazy_loads:
            return RuleResult(self.name, True)
        attribute = attempt.extra.get("expired_attribute")
        if not attribute:
            return RuleResult(self.name, False, lazy_load_message(attempt))
        saved = "user_id = user.id" if attribute == "User.id" else f"a variable, read from {attribute}"
        return RuleResult(self.name, False, (
            f"your function stopped at `{attribute}`, read after a commit or rollback expired it: reading an expired "
            "attribute loads it again, a lazy load async code cannot do (MissingGreenlet). rollback() always expires "
            f"the session's objects; keep what you need while it is loaded (`{saved}`, right after the commit)"
        ))


q3 = _RunsOnAfterLazyLoad(
    id="08.q3",
    title="Two units of work: the sign-up stands, the import is all or nothing",
    kind=DB_FN,
    scratch_scale=0.1,  # a small copy is enough, and quick to seed
    solution_answer=_q3_solution,
    expected=_q3_expected,
    probe=_q3_probe,
    calls=Q3_CALLS,
    explain=_q3_explain,
    rules=[
        EXPLAINED,
        Probe(test=_q3_signup_stands, name="the sign-up is committed"),
        Probe(test=_q3_import, name="the import is all or nothing"),
        _ExpiredRead(),
        Probe(test=_q3_returned, name="returns what was committed"),
    ],
    hints=[
        "Two units of work means two transactions: commit the user first (its own session, "
        "`async with session.begin():`), then start the import in a second one.",
        "Put every post of the import in one transaction (`async with db.session() as s, s.begin():` then "
        "add_all). A post with title None makes the database refuse the INSERT: the whole block rolls back.",
        "Catch IntegrityError around the second unit only, and return {'user_id': user_id, 'imported': 0} "
        "then; otherwise imported is len(titles).",
    ],
    why="Draw transaction boundaries around what must succeed or fail together, and no wider.",
    counterexamples=[
        Counterexample("one transaction for both", _q3_one_transaction, "took the sign-up down with it"),
        Counterexample("commits each post", _q3_commit_each_post, "partial import"),
        Counterexample("flushes the user, never commits", _q3_flush_only, "was the sign-up ever committed"),
        Counterexample("lets the import's error escape", _q3_no_catch, "IntegrityError escaped your function"),
        Counterexample("commits each post, reads user.id after a rollback", _q3_commit_each_reads_expired, "partial import"),
        Counterexample("a User without username", _q3_no_username, "NOT NULL constraint on users.username"),
    ],
)


# --------------------------------------------------------------------------- q4
Q4_CALLS = ({"user_ids": [1, 2, 3, 5]},)  # on the scratch copy (scale 0.1), user 5 has no posts


class _Watch:
    """Which task ran each statement on which connection, and the most connections out at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = weakref.ref(engine)  # the engine's listeners hold this object, not the reverse
        self.tasks_per_connection: dict[int, set[int]] = {}
        self._connections: list[Any] = []  # keep them alive: their id() stays theirs
        self._out: set[int] = set()
        self.peak = 0
        self.opened_while_lent = False  # a new connection was needed while another was out
        self.queries = 0  # SELECTs the answer sent
        self._tasks_that_queried: set[int] = set()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)
        event.listen(engine, "connect", self._connect)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        self._connections.append(conn)
        self.tasks_per_connection.setdefault(id(conn), set()).add(id(task))
        if statement.lstrip().upper().startswith("SELECT"):  # the counts (not BEGIN, not ROLLBACK)
            self.queries += 1
            self._tasks_that_queried.add(id(task))

    def _checkout(self, dbapi_connection: Any, *args: Any) -> None:
        self._out.add(id(dbapi_connection))
        self.peak = max(self.peak, len(self._out))

    def _connect(self, dbapi_connection: Any, *args: Any) -> None:
        if self._out:
            self.opened_while_lent = True

    def _checkin(self, dbapi_connection: Any, *args: Any) -> None:
        self._out.discard(id(dbapi_connection))

    def stop(self) -> dict[str, Any]:
        engine = self.engine()
        if engine is not None:
            event.remove(engine, "before_cursor_execute", self._statement)
            event.remove(engine, "checkout", self._checkout)
            event.remove(engine, "checkin", self._checkin)
            event.remove(engine, "connect", self._connect)
        shared = max((len(t) for t in self.tasks_per_connection.values()), default=0)
        self._connections.clear()
        return {
            "peak": self.peak, "most_tasks_on_one_connection": shared, "opened_while_lent": self.opened_while_lent,
            "queries": self.queries, "tasks_that_queried": len(self._tasks_that_queried),
        }


_watches: weakref.WeakKeyDictionary[Engine, _Watch] = weakref.WeakKeyDictionary()


async def _q4_solution(db, user_ids):
    async def count_posts(user_id):
        async with db.session() as session:  # one session, one connection, per task
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

    counts = await asyncio.gather(*(count_posts(u) for u in user_ids))
    return dict(zip(user_ids, counts, strict=True))


async def _q4_expected(conn: AsyncConnection, user_ids: list[int]) -> dict[int, int]:
    out = {}
    for user_id in user_ids:
        ((n,),) = await _rows(conn, "SELECT count(*) FROM posts WHERE author_id = :u", u=user_id)
        out[user_id] = n
    # from here on, watch what the answer does on this engine (the probe stops watching)
    _watches[conn.sync_engine] = _Watch(conn.sync_engine)
    return out


async def _q4_probe(conn: AsyncConnection, attempt: Attempt, user_ids: list[int]) -> None:
    watch = _watches.pop(conn.sync_engine, None)
    if watch is not None:
        attempt.extra.update(watch.stop())


def _q4_right_counts(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if attempt.extra.get("explained"):  # it raised: the headline names why
        return "not compared: your function raised (see above)"
    if got == want:
        return None
    if not isinstance(got, dict):
        return f"return a dict {{user_id: number of posts}}; you returned {type(got).__name__} {got!r}"[:300]
    missing = [u for u in want if u not in got]
    if missing:
        return (
            f"expected {want!r}, got {got!r}: no count for user(s) {missing}. A user without posts has "
            "no group in a GROUP BY; count per user and let 0 be 0"
        )
    return f"expected {want!r}, got {got!r}"


def _q4_own_sessions(attempt: Attempt) -> str | None:
    if attempt.extra.get("explained"):  # the session the tasks shared raised: the headline says so
        return attempt.extra["explained"]
    shared = attempt.extra.get("most_tasks_on_one_connection", 0)
    if shared <= 1:
        return None
    return (
        f"{shared} tasks ran statements through one session (one connection): concurrent operations are not "
        "permitted on a session, and one connection runs one statement at a time anyway. Give each task its "
        "own `async with db.session() as session:`"
    )


def _q4_concurrent(attempt: Attempt) -> str | None:
    if attempt.extra.get("explained"):
        return None  # the tasks ran at once on one session: that error is the problem, and proves they overlapped
    if attempt.extra.get("most_tasks_on_one_connection", 0) > 1:
        return None  # the shared session is the problem to fix first
    # Tasks started together ask the pool for connections before any of them is done: a second
    # one is opened while the first is lent, even if (on a busy machine) the first comes back
    # before the second has connected and the peak of connections out at once stays 1. Tasks
    # run one after another never need a new connection while another is out.
    if attempt.extra.get("peak", 0) >= 2 or attempt.extra.get("opened_while_lent"):
        return None
    tasks, queries = attempt.extra.get("tasks_that_queried", 0), attempt.extra.get("queries", 0)
    if queries <= 1:
        return (
            "one query for all the users, in one task, where this drill asks for one task per user, started "
            "together with asyncio.gather(), each with its own session (counting is only the excuse: the drill is "
            "the shape of concurrent database work)"
        )
    if tasks <= 1:
        return (
            f"your {queries} counts ran one after another, all in one task (never more than one connection in "
            "use at a time): start one task per user together with asyncio.gather(), each with its own session"
        )
    return (
        f"your {tasks} tasks took turns (never more than one connection in use at a time): each waited for the "
        "one before it (an asyncio.Lock, a Semaphore(1), or awaiting each task before starting the next). Start "
        "them all with asyncio.gather() and let them run at once, each with its own session"
    )


async def _q4_shared_session(db, user_ids):
    async with db.session() as session:
        async def count_posts(user_id):
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

        counts = await asyncio.gather(*(count_posts(u) for u in user_ids))
    return dict(zip(user_ids, counts, strict=True))


async def _q4_shared_warm_session(db, user_ids):
    async with db.session() as session:
        await session.execute(select(1))  # the connection is already there: no error this time...

        async def count_posts(user_id):
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

        counts = await asyncio.gather(*(count_posts(u) for u in user_ids))
    return dict(zip(user_ids, counts, strict=True))


async def _q4_sequential(db, user_ids):
    counts = {}
    for user_id in user_ids:
        async with db.session() as session:
            counts[user_id] = await session.scalar(
                select(func.count()).select_from(Post).where(Post.author_id == user_id)
            )
    return counts


async def _q4_group_by(db, user_ids):
    async with db.session() as session:
        rows = await session.execute(
            select(Post.author_id, func.count()).where(Post.author_id.in_(user_ids)).group_by(Post.author_id)
        )
        return dict(rows.all())  # a user without posts has no group: missing from the dict


async def _q4_group_by_outer_join(db, user_ids):
    async with db.session() as session:
        rows = await session.execute(
            select(User.id, func.count(Post.id))
            .outerjoin(Post, Post.author_id == User.id)
            .where(User.id.in_(user_ids))
            .group_by(User.id)
        )
        return dict(rows.all())  # the right counts, but one query: not the drill


async def _q4_tasks_behind_a_lock(db, user_ids):
    lock = asyncio.Lock()  # "to be safe": now the tasks take turns

    async def count_posts(user_id):
        async with lock, db.session() as session:
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

    counts = await asyncio.gather(*(count_posts(u) for u in user_ids))
    return dict(zip(user_ids, counts, strict=True))


async def _q4_alt_task_group(db, user_ids):
    async def count_one(user_id):
        async with db.session() as session:
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

    async with asyncio.TaskGroup() as group:
        tasks = {user_id: group.create_task(count_one(user_id)) for user_id in user_ids}
    return {user_id: task.result() for user_id, task in tasks.items()}


def _q4_explain(error: BaseException) -> str | None:
    text_ = str(error)
    if isinstance(error, IllegalStateChangeError) or (
        isinstance(error, InvalidRequestError)
        and ("concurrent operations are not permitted" in text_ or "already in progress" in text_)
    ):
        return (
            f"one session used by several tasks at once ({type(error).__name__}): concurrent operations are "
            "not permitted on a session, which has one transaction and one connection. Give each task its own: "
            "async with db.session() as session: inside the task"
        )
    return None


q4 = Explaining(
    id="08.q4",
    title="Count posts for several users at once",
    kind=DB_FN,
    scratch_scale=0.1,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    probe=_q4_probe,
    calls=Q4_CALLS,
    explain=_q4_explain,
    rules=[
        EXPLAINED,
        Probe(test=_q4_right_counts, name="the right counts"),
        Probe(test=_q4_own_sessions, name="one session per task"),
        Probe(test=_q4_concurrent, name="the tasks ran at the same time"),
    ],
    hints=[
        "Write an inner `async def count_posts(user_id)` that does one count, then run them all with "
        "`await asyncio.gather(*(count_posts(u) for u in user_ids))`.",
        "Each task needs a session of its own: open it inside count_posts with "
        "`async with db.session() as session:`. A session shared by tasks fails, or silently serialises.",
        "counts = await asyncio.gather(...); return dict(zip(user_ids, counts, strict=True))",
    ],
    why="Concurrency in async SQLAlchemy means one session (and one connection) per task: a session is "
    "a unit of work, not a connection pool.",
    counterexamples=[
        Counterexample("one session shared by the tasks", _q4_shared_session, "concurrent operations are not permitted"),
        Counterexample("a shared session, already connected", _q4_shared_warm_session, "tasks ran statements through one session"),
        Counterexample("a loop, one task", _q4_sequential, "one after another"),
        Counterexample("one GROUP BY query", _q4_group_by, "a user without posts has no group"),
        Counterexample("one GROUP BY query, outer join", _q4_group_by_outer_join, "one query for all the users"),
        Counterexample("gather, but every task behind one lock", _q4_tasks_behind_a_lock, "took turns"),
    ],
)


# correct answers of another form: tests/test_exercises.py proves each is accepted
ALTERNATIVES = {
    "08.q1": [
        ("names checked by set difference", _q1_alt_set_difference),
        ("write in a savepoint, undo it on an unknown name", _q1_alt_savepoint),
    ],
    "08.q2": [
        ("explicit savepoint objects, commit() or rollback()", _q2_alt_flush_in_savepoint),
        ("one INSERT ... ON CONFLICT DO NOTHING ... RETURNING", _q2_alt_on_conflict),
    ],
    "08.q3": [
        ("sessionmaker.begin() for each unit of work", _q3_alt_begin_factory),
    ],
    "08.q4": [
        ("asyncio.TaskGroup instead of gather", _q4_alt_task_group),
    ] if hasattr(asyncio, "TaskGroup") else [],  # TaskGroup: Python 3.11+
}
