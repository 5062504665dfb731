"""12.q3 (a post and its tags, all or nothing) and 12.q4 (duplicates, a real concurrent request, a
foreign-key violation that is no duplicate): scenarios and rules."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_only

from ...engines import HIDDEN
from ...lab.errorkinds import constraint_kind, error_code, is_transient
from ...recorder import record
from ...schema import Post, User
from ..core import (
    Requirement,
    _AnswerRaised,
    _is_lazy_load,
    _usable,
    call_answer,
)
from ..rules import Attempt, Probe, SessionUsable
from ..verdict import RuleResult
from .harness import _WRITTEN_LAZILY, NoLazyLoadsNamed, _session, capstone
from .reference import CREATE_BUDGET, TAG, WHEN, AlreadyExists


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


NO_COMMIT = Probe(_no_commit_rule, name="the commit left to the caller")


@dataclass
class _NoLazyWrite(NoLazyLoadsNamed):
    """No lazy loads; after a commit inside create_post the commit is named first: it flushed the post,
    and that is why setting post.tags afterwards loaded the old collection lazily."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        committed = _no_commit_rule(attempt)
        if not result.passed and committed:
            where = attempt.extra.get("lazy_attribute")
            result.message = (
                f"{committed}. The commit also flushed the post (and, with the default expire_on_commit=True, "
                "expired it), so assigning Post.tags afterwards needed a load first: a lazy load, a query of its "
                "own (in async code MissingGreenlet). Drop the "
                "commit, and set post.tags before the post is flushed"
            ) if where == "Post.tags" else (
                f"{committed}. After it, {where or 'a relationship'} was loaded lazily, a query of its own (in "
                "async code MissingGreenlet)"
            )
        return result


NO_LAZY_WRITE = _NoLazyWrite(advice=_WRITTEN_LAZILY)


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


async def _outcome(call: Awaitable[Any]) -> Any:
    """What one create_post call did: "returned", or the exception it raised (a lazy load goes on up)."""
    try:
        await call
        return "returned"
    except _AnswerRaised as raised:
        if _is_lazy_load(raised.error):
            raise
        return raised.error


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
            attempt.extra["raised_error"] = raised.error
            return
        await session.commit()
    rows = await _rows(
        scratch,
        "SELECT id, body, status, published_at, created_at FROM posts WHERE author_id = 2 AND title = :title",
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


_INSERT_TAGS = re.compile(r'\s*INSERT\s+INTO\s+"?tags"?[\s(]', re.I)


def _tag_violation(error: BaseException | None) -> IntegrityError | None:
    """The unique violation of an INSERT INTO tags behind ``error`` (itself, or what it was raised from)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (
            isinstance(error, IntegrityError) and constraint_kind(error) == "unique"
            and _INSERT_TAGS.match(str(getattr(error, "statement", "") or ""))
        ):
            return error
        error = error.__cause__ or error.__context__
    return None


def _tags_refused(raised: BaseException | None) -> str | None:
    """create_post inserted a tag that exists: the message, or None when that is not what happened."""
    if _tag_violation(raised) is None:
        return None
    refused = (
        "the unique index on tags.name refused them, and create_post reported that as AlreadyExists, though "
        "no post had this title" if _is_already_exists(raised) else "the unique index on tags.name refused them"
    )
    return (
        "creating a post with a new title failed on its tags: create_post inserted tags that already "
        f"exist; {refused}. Reuse the tags that exist: look "
        "them up with one SELECT ... WHERE name IN (...), and create only the missing ones"
    )


def _began_its_own(error: BaseException | None) -> str | None:
    """create_post called session.begin() in a session whose transaction the caller had begun."""
    if not isinstance(error, InvalidRequestError) or "already begun" not in str(error):
        return None
    return (
        "create_post opened its own transaction (`session.begin()`), but the caller has already begun one: "
        "a session has one outermost transaction at a time, and this one is the caller's (SQLAlchemy refused: 'A "
        "transaction is already begun on this Session'). Use the session as it is: `await session.flush()` "
        "gives you the ids, and `async with session.begin_nested():` a savepoint where part of the work may fail"
    )


def _created_rule(attempt: Attempt) -> str | None:
    refused = _tags_refused(attempt.extra.get("raised_error")) or _began_its_own(attempt.extra.get("raised_error"))
    if refused:
        return refused
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
    pk, body, status, published_at, created_at = rows[0]
    returned = attempt.extra.get("returned")
    returned = getattr(returned, "id", returned)
    if returned is None:
        return (
            f"create_post returned None, though the post ({pk}) reached the database at the caller's commit: "
            "a new post has no id until it is flushed. `await session.flush()` (or leave an `async with "
            "session.begin_nested():` block) before `return post.id`"
        )
    if returned != pk:
        return f"create_post should return the new post's id ({pk}); it returned {returned!r}"
    if status != "published":
        return f"the new post's status is {status!r}: create_post publishes it (status 'published')"
    if str(published_at)[:16] != str(WHEN)[:16]:
        return f"the new post's published_at is {published_at!r}, not the published_at passed in ({WHEN})"
    if str(created_at)[:16] != str(WHEN)[:16]:
        return (
            f"the new post's created_at is {str(created_at)[:19]}, but the contract sets created_at and "
            f"published_at both to the published_at passed in ({WHEN}): `Post(..., created_at=published_at, "
            "published_at=published_at)`"
        )
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


def _nulls(parameters: Any) -> Any:
    """The same parameters, every value NULL (one row or a list of rows; positional or named)."""
    if isinstance(parameters, dict):
        return dict.fromkeys(parameters)
    if _rows_of(parameters):
        return [_nulls(row) for row in parameters]
    return tuple(None for _ in parameters) if isinstance(parameters, (list, tuple)) else parameters


def _rows_of(parameters: Any) -> bool:
    """True for a list of rows (an executemany), False for one row of values."""
    return isinstance(parameters, (list, tuple)) and bool(parameters) and isinstance(parameters[0], (list, tuple, dict))


def _arm_failure(scratch: Any, fired: list[int]):
    """Make the database refuse the INSERT INTO post_tags. With an IntegrityError (the error an ``except
    IntegrityError`` would swallow) when its values are bound: each becomes NULL, and NOT NULL refuses the
    row. Any other form (INSERT ... SELECT, values written into the SQL) names a table that does not exist."""

    def inject(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool):
        if re.match(r'\s*INSERT\s+INTO\s+"?post_tags"?[\s(]', statement, re.I):
            fired.append(1)
            if re.search(r"\bVALUES\b", statement, re.I) and not re.search(r"\bSELECT\b", statement, re.I) and parameters:
                parameters = _nulls(parameters)
            else:
                statement = re.sub(r"post_tags", "post_tags_injected_failure", statement, count=1)
        return statement, parameters

    event.listen(scratch.engine.sync_engine, "before_cursor_execute", inject, retval=True)
    return inject


async def _failure_scenario(answer: Any, scratch: Any, attempt: Attempt) -> None:
    title = "Capstone: a post the database refuses half-way"
    fired: list[int] = []
    async with _session(scratch, attempt, begin=True) as session:
        inject = _arm_failure(scratch, fired)
        try:
            attempt.extra["outcome"] = await _outcome(_create(
                answer, session, scratch, attempt,
                author_id=3, title=title, body="Doomed.", tag_names=["python", DOOMED_TAG], published_at=WHEN,
            ))
        finally:
            event.remove(scratch.engine.sync_engine, "before_cursor_execute", inject)
        attempt.extra["fired"] = bool(fired)
        await session.rollback()  # the caller saw an error: it rolls back
    attempt.extra["left_posts"] = len(await _rows(scratch, "SELECT id FROM posts WHERE title = :t", t=title))
    attempt.extra["left_tags"] = len(await _rows(scratch, "SELECT id FROM tags WHERE name = :n", n=DOOMED_TAG))


def _reaches_caller_rule(attempt: Attempt) -> str | None:
    if "outcome" not in attempt.extra:
        return None
    began = None if isinstance(attempt.extra["outcome"], str) else _began_its_own(attempt.extra["outcome"])
    if began:
        return began
    if not attempt.extra.get("fired") and not any(s.verb == "INSERT" for s in attempt.log or ()):
        return (
            "create_post sent no INSERT: the post and its tags waited in the session for the caller's "
            "flush, so a failure could not happen inside create_post. Flush inside it (`await "
            "session.flush()`, or a `session.begin_nested()` block)"
        )
    refused = None if isinstance(attempt.extra["outcome"], str) else _tags_refused(attempt.extra["outcome"])
    if not attempt.extra.get("fired") and refused:
        return refused  # it failed before the INSERT INTO post_tags, as the first requirement says
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
            "catch only the duplicate, an IntegrityError whose constraint_kind(exc) is 'unique', and let "
            "every other error through"
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


q3 = capstone(
    "12.q3",
    "Create a post with its tags, all or nothing",
    ("create_post",),
    [
        Requirement(
            "a post with five known tags and one new",
            _create_scenario,
            [Probe(_created_rule, name="the post stored as asked, its id returned"), Probe(_tags_rule, name="its tags, each new tag created once"), NO_COMMIT,
             Probe(_create_budget_rule, name=f"statement budget ({CREATE_BUDGET})"), NO_LAZY_WRITE],
        ),
        Requirement(
            "the database refuses the tags half-way",
            _failure_scenario,
            [Probe(_reaches_caller_rule, name="the error reaches the caller"),
             Probe(_nothing_left_rule, name="all of it rolled back with the caller"), NO_COMMIT, NO_LAZY_WRITE],
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
                attempt.extra["other_author_refused"] = _is_already_exists(other)
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
    "transaction block'): the caller's next statement fails, and its COMMIT raises nothing but rolls "
    "everything back. Wrap the insert in async with session.begin_nested(): a failure then rolls back "
    "to the savepoint only"
)


_THREW_AWAY = (
    "the post created just before the duplicate is gone: session.rollback() threw away the caller's whole "
    "transaction. Wrap the insert in session.begin_nested(), so a failure rolls back to the savepoint only"
)


def _savepoint_rule(attempt: Attempt) -> str | None:
    outcome = attempt.extra.get("duplicate")
    if outcome is None or outcome == "returned":
        return None
    if not _unprotected_insert(attempt.extra.get("duplicate_log")):
        return None
    if attempt.session_usable and attempt.extra.get("author_posts") == 0:
        return _THREW_AWAY  # then a rollback: the same words as "earlier work kept", said once
    return f"the duplicate INSERT INTO posts ran outside a SAVEPOINT. {_ABORTED}"


def _kept_rule(attempt: Attempt) -> str | None:
    if "author_posts" not in attempt.extra or "first_failed" in attempt.extra or not attempt.session_usable:
        return None
    if "commit_failed" in attempt.extra:
        return f"the caller's commit failed afterwards ({attempt.extra['commit_failed']})"
    if attempt.extra["author_posts"] == 0:
        return _THREW_AWAY
    return None


def _partial_rule(attempt: Attempt) -> str | None:
    if attempt.extra.get("dup_tags"):
        return (
            "the new tag of the refused post survived: create the tags inside the same savepoint as the "
            "post, so the duplicate takes them back too"
        )
    return None


def _other_author_rule(attempt: Attempt) -> str | None:
    if "other_author" not in attempt.extra:
        return None
    if attempt.extra.get("other_author_refused"):
        return (
            f"another author may use the same title, but create_post refused it: {attempt.extra['other_author']}. "
            "A duplicate is the same title for the same author"
        )
    raised = attempt.extra["other_author"]
    return f"a post by another author with the same title and no tags (tag_names=[]) failed: {raised[:1].lower()}{raised[1:]}"


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
        # its own engine, so its own connection. On SQLite a short busy timeout: where the answer already
        # holds the write lock, give up after 1 s. (On PostgreSQL "timeout" is the connect timeout: keep
        # the default, so a busy machine does not lose the race; lock_timeout bounds the wait instead.)
        self.engine = scratch.create_engine(**({"connect_args": {"timeout": 1}} if scratch.is_sqlite else {}))
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
    elif (
        scratch.is_sqlite and attempt.extra.get("retried") and _is_already_exists(attempt.extra.get("duplicate"))
        and _checked_first(attempt.extra.get("first_log"))
    ):
        attempt.extra["unseen"] = await _unseen_duplicate(answer, scratch, attempt, call)


UNSEEN_TITLE = "Capstone: a title committed after the check"


class _HiddenFromTheCheck:
    """Hides a committed post from the answer's SELECTs on posts until its INSERT INTO posts runs: what a
    title committed by another request between the answer's check and its insert looks like, without
    SQLite's snapshot turning the insert into 'database is locked' first."""

    def __init__(self, scratch: Any, title: str) -> None:
        self.scratch, self.title = scratch, title
        self.hidden = False
        self.inserted = False

    def __enter__(self) -> _HiddenFromTheCheck:
        event.listen(self.scratch.engine.sync_engine, "before_cursor_execute", self._before, retval=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.scratch.engine.sync_engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool):
        if self.inserted:
            return statement, parameters
        if _INSERT_POSTS.match(statement):
            self.inserted = True
        elif _SELECT_TITLE.match(statement) and self.title in repr(parameters):
            unseen = f"{self.title} (not committed yet)"
            self.hidden = True
            if isinstance(parameters, dict):
                parameters = {k: unseen if v == self.title else v for k, v in parameters.items()}
            elif isinstance(parameters, (list, tuple)):
                parameters = type(parameters)(unseen if v == self.title else v for v in parameters)
        return statement, parameters


async def _unseen_duplicate(answer: Any, scratch: Any, attempt: Attempt, call: dict[str, Any]) -> Any:
    """SQLite only, for an answer that checks the title with a SELECT first: there the race ends in
    'database is locked' and the caller's retry, whose SELECT finds the post, so the answer's handling of a
    unique violation never ran. Run it: a post committed beforehand, hidden from the answer's SELECTs until
    its INSERT, as PostgreSQL's READ COMMITTED shows a row committed between the two. What create_post did,
    or None when nothing was hidden (the check read no title the checker could hide)."""
    async with scratch.engine.begin() as conn:
        await conn.execute(Post.__table__.insert().values(
            author_id=call["author_id"], title=UNSEEN_TITLE, body="first", status="published",
            created_at=WHEN, published_at=WHEN,
        ))
    hider = _HiddenFromTheCheck(scratch, UNSEEN_TITLE)
    try:
        async with _session(scratch, attempt, begin=True) as session:
            with hider:
                outcome = await _outcome(_create(answer, session, scratch, attempt, **{**call, "title": UNSEEN_TITLE}))
            await session.rollback()
    finally:
        async with scratch.engine.begin() as conn:
            await conn.execute(Post.__table__.delete().where(Post.__table__.c.title == UNSEEN_TITLE))
    return outcome if hider.hidden and hider.inserted else None


_SELECT_TITLE = re.compile(r"^\s*SELECT\b.*\bFROM\s+\"?posts\"?.*\btitle\b", re.I | re.S)


def _checked_first(log: Any) -> bool:
    """True when create_post looked the title up (a SELECT on posts naming title) before its INSERT INTO posts."""
    for statement in log or ():
        if _INSERT_POSTS.match(statement.sql):
            return False
        if _SELECT_TITLE.match(statement.sql):
            return True
    return False


_LET_THE_INDEX_DECIDE = (
    "A SELECT cannot see a row another request is about to commit: let the unique index decide. Insert "
    "inside a savepoint (`async with session.begin_nested():`) and turn the IntegrityError whose "
    "constraint_kind(exc) is 'unique' into AlreadyExists, or send INSERT ... ON CONFLICT DO NOTHING with "
    "RETURNING (the dialect's `insert()`, `postgresql.insert` or `sqlite.insert`, has "
    "`.on_conflict_do_nothing()`) and raise AlreadyExists when no row came back"
)


def _race_rule(attempt: Attempt) -> str | None:
    other = attempt.extra.get("other")
    if other is None:
        return None
    if not other.fired:
        return "the checker found no INSERT INTO posts carrying the title: does create_post insert the post?"
    if other.failed:
        return None  # the answer's transaction held the write lock: the other request waits, no race to judge
    checked = _checked_first(attempt.extra.get("first_log"))
    race = (
        "your check-then-insert races (two writers that both saw 'not there' both insert): your SELECT saw "
        "no post with this title, the other request inserted it and committed, and your INSERT"
    )
    if attempt.extra.get("retried") and _unprotected_insert(attempt.extra.get("first_log")):
        start = (
            f"{race} ran outside a SAVEPOINT." if checked else
            "the other request committed the same title while your transaction was open, and your INSERT "
            "ran outside a SAVEPOINT: this races."
        )
        return (
            f"{start} SQLite refused your stale write (database is locked) and the caller's retry found the "
            "duplicate; on PostgreSQL your INSERT meets the committed row in the unique index (unique "
            f"violation 23505), and the raw IntegrityError aborts the caller's transaction. {_LET_THE_INDEX_DECIDE}"
        )
    unseen = attempt.extra.get("unseen")
    if isinstance(unseen, IntegrityError) and not _is_already_exists(unseen) or unseen == "returned":
        met = (
            "create_post returned normally instead of raising AlreadyExists" if unseen == "returned"
            else "a raw IntegrityError reached the caller, not AlreadyExists"
        )
        code = error_code(unseen) if isinstance(unseen, IntegrityError) else None
        here = f"; {code} in this run" if code and code != "23505" else ""
        return (
            f"{race} meets its row in the unique index on PostgreSQL (unique violation 23505{here}): {met}. SQLite hid "
            "that at first (your stale write failed with 'database is locked', and the caller's retry found the "
            "post with your SELECT), so the checker committed a post and kept it from your SELECT until your "
            "INSERT ran, as PostgreSQL's READ COMMITTED shows a row committed between the two. "
            f"{_LET_THE_INDEX_DECIDE}"
        )
    outcome = attempt.extra.get("duplicate")
    if isinstance(outcome, IntegrityError) and not _is_already_exists(outcome):
        code = error_code(outcome)
        met = (
            f"met its row in the unique index (unique violation{f' {code}' if code else ''}): a raw "
            "IntegrityError reached the caller" + ("" if attempt.session_usable else " and aborted its transaction")
        )
        if checked:
            return f"{race} {met}. {_LET_THE_INDEX_DECIDE}"
        return (
            f"the other request inserted the title and committed just before your INSERT, which {met}. "
            "Catch it inside `session.begin_nested()` and raise AlreadyExists"
        )
    return _raises_already_exists("its post was committed just before your INSERT")(attempt)


q4 = capstone(
    "12.q4",
    "Duplicates, gracefully",
    ("create_post",),
    [
        Requirement(
            "the same title twice, then carry on",
            _duplicate_scenario,
            [Probe(_raises_already_exists("the author already had a post with this title"), name="a duplicate raises AlreadyExists"),
             Probe(_savepoint_rule, name="the duplicate not inserted outside a savepoint"),
             SessionUsable(), Probe(_kept_rule, name="earlier work kept"),
             Probe(_partial_rule, name="the refused post's new tags rolled back too"), Probe(_other_author_rule, name="another author's post with the same title (and no tags) created"),
             NO_COMMIT, NO_LAZY_WRITE],
        ),
        Requirement(
            "another request commits the same title meanwhile",
            _race_scenario,
            [Probe(_race_rule, name="a title committed meanwhile raises AlreadyExists"), SessionUsable()],
        ),
        Requirement(
            "an author who does not exist",
            _missing_author_scenario,
            [Probe(_not_a_duplicate_rule, name="a foreign-key violation reaches the caller as itself")],
        ),
    ],
    hints=[
        "The unique index on (author_id, title) is the source of truth: insert, and if the database says "
        "it broke a unique constraint, it was a duplicate. A SELECT beforehand cannot see a row another "
        "request is about to commit.",
        "A failed flush leaves the session unusable until rollback (PendingRollbackError), and on PostgreSQL "
        "any failed statement aborts the transaction, unless it ran inside a savepoint: "
        "async with session.begin_nested(): session.add(post). The savepoint rolls back; the caller's "
        "earlier work stays. Not every IntegrityError is a duplicate: a missing author breaks the foreign key.",
        "try: async with session.begin_nested(): ... / except IntegrityError as exc: if constraint_kind(exc) "
        "!= 'unique': raise / raise AlreadyExists(...) from exc (constraint_kind from course.lab.errorkinds, "
        "lesson 10). Never session.rollback() in here: that is the caller's transaction. (tags.name is unique "
        "too: before AlreadyExists, the reference reads the post back, so a tag another request just created "
        "is not reported as a duplicate post.)",
    ],
    why=(
        "The unique index has the last word (a SELECT first, if you kept one, only spares an INSERT): a "
        "savepoint contains the failure, only a unique violation becomes AlreadyExists, and the caller keeps "
        "its transaction. On PostgreSQL that holds under concurrent requests; on SQLite a "
        "writer that read first meets 'database is locked', which your function lets out for the caller to "
        "retry (or the caller begins with BEGIN IMMEDIATE)."
    ),
)
