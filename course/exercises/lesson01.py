"""Lesson 01 · Async ORM essentials: statements, add + flush, get + change, delete-orphan.

References are raw SQL on the checker's connection, independent of the solutions.

Misconceptions catalogued (one counterexample each):

- q1: the ``is_active`` filter dropped or flipped (every extra user active, read back by a
  probe); "de" in lower case (string comparison is case-sensitive); no ORDER BY; raw SQL with the value pasted in; ids where ``User`` objects were asked.
- q2: no flush (the id is still None); ``refresh()`` instead of ``flush()``; a second query for
  ``max(id)``; a commit inside a function that does not own the transaction.
- q3: no flush (the change stays in the session); ``scalar_one()`` on a missing id; no check
  for a missing tag; a ``refresh()`` after the flush (a statement too many).
- q4: the whole post deleted; a Core ``delete(Comment)`` statement (it skips the ORM: the
  replies still point at the comment, and the foreign key refuses the DELETE); ``session.delete()``
  instead of the collection (the task asks for delete-orphan), with the replies loaded or not, and
  one that leaves the object in the loaded collection; the replies not loaded (the flush loads
  them lazily); no flush.
The answers that write are judged by what reached the database: ``observe`` reads
the tables through the session's own connection (``session.connection()`` never
autoflushes, on 2.0 or 2.1), so a change left pending in the session is seen as
not sent. Those reads are marked hidden, so they do not count against a budget.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import has_parent

from ..engines import HIDDEN
from ..schema import Comment, Post, Tag, User
from .core import SESSION_FN, STATEMENT, Counterexample, Exercise, normalize, sql_reference
from .explain import chain, from_flush
from .named_mistakes import EXPLAINED, Explaining
from .rules import (
    Attempt,
    BoundParameters,
    Columns,
    LeavesTransactionToCaller,
    LetterCase,
    NoLazyLoads,
    Probe,
    SameResult,
    StatementBudget,
)
from .userfacts import COUNTRY_CODES, shared, user_facts_probe
from .verdict import RuleResult

_QUIET = {HIDDEN: True}


async def _read(session: AsyncSession, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows as the database has them now, without flushing the session first."""
    conn = await session.connection()
    result = await conn.execute(text(query), params, execution_options=_QUIET)
    return [tuple(r) for r in result.all()]


# ---------------------------------------------------------------- q1
def _q1_solution():
    return select(User).filter_by(country="DE", is_active=False).order_by(User.id)


def _q1_where(attempt: Attempt) -> str:
    sql = " ".join(s.sql for s in attempt.log.queries)
    return sql.split("WHERE", 1)[1] if "WHERE" in sql else ""


# a conjunct of its own (not "is_active = false", PostgreSQL's spelling of a real comparison)
_CONSTANT_FALSE = re.compile(
    r"(?:^|\bAND\b|\bOR\b|\()\s*(?:0\s*=\s*1|1\s*!=\s*1|false)\s*(?=\bAND\b|\bOR\b|\)|\bORDER\b|$)", re.I
)


def _q1_constant(attempt: Attempt) -> str | None:
    if _CONSTANT_FALSE.search(_q1_where(attempt)):
        return (
            "your WHERE contains the constant false, so no user can match: Python evaluated "
            "`User.is_active is False` or `not User.is_active` itself (an object is never the value "
            "False) instead of turning it into SQL. Write filter_by(is_active=False), "
            "User.is_active.is_(False) or ~User.is_active"
        )
    return None


def _q1_active(attempt: Attempt) -> str | None:
    n = shared(attempt, "extra", lambda r: r["is_active"])
    if n:
        python_and = ""
        if "is_active" not in _q1_where(attempt):
            python_and = (
                " (your WHERE never mentions is_active: if you joined two comparisons with Python's "
                "`and`, Python kept only one of them; separate conditions with a comma)"
            )
        return (
            f"{n} extra users, every one active: the 1.x query keeps only inactive users, "
            f"filter_by(..., is_active=False){python_and}"
        )
    return None


q1 = Exercise(
    id="01.q1",
    title="A 1.x query, spelled the 2.x way",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference(
        "SELECT id FROM users WHERE country = 'DE' AND NOT is_active ORDER BY id", flat=True
    ),
    probe=user_facts_probe(),
    rules=[
        Columns(["User"]),
        LetterCase(["DE"], stored=COUNTRY_CODES),
        Probe(test=_q1_constant, name="a WHERE clause made of SQL"),
        Probe(test=_q1_active, name="only inactive users"),
        SameResult(ordered=True, what="users"),
        StatementBudget(1),
        BoundParameters(["DE"]),
    ],
    hints=[
        "session.query(User) becomes select(User); the session is not part of a 2.x statement.",
        "filter_by(...) and order_by(...) keep their names: "
        'select(User).filter_by(country="DE", is_active=False).order_by(User.id)',
    ],
    why="In 2.x a query is a plain select() you can build, pass around and run with any session.",
    counterexamples=[
        Counterexample(
            "active flag dropped",
            lambda: select(User).filter_by(country="DE").order_by(User.id),
            "every one active",
        ),
        Counterexample("no ORDER BY", lambda: select(User).filter_by(country="DE", is_active=False), "no ORDER BY"),
        Counterexample(
            "the code in lower case",
            lambda: select(User).filter_by(country="de", is_active=False).order_by(User.id),
            "'de' is not 'DE'",
        ),
        Counterexample(
            "active instead of inactive",
            lambda: select(User).filter_by(country="DE", is_active=True).order_by(User.id),
            "every one active",
        ),
        Counterexample(
            "raw SQL with the value pasted in",
            lambda: text("SELECT * FROM users WHERE country = 'DE' AND NOT is_active ORDER BY id"),
            "pasted into the SQL text",
        ),
        Counterexample(
            "`is False` evaluated by Python",
            lambda: select(User).where(User.country == "DE", User.is_active is False).order_by(User.id),
            "constant false",
        ),
        Counterexample(
            "`not` evaluated by Python",
            lambda: select(User).where(User.country == "DE", not User.is_active).order_by(User.id),
            "not User.is_active",
        ),
        Counterexample(
            "Python `and` between the comparisons",
            lambda: select(User).where((User.country == "DE") and (User.is_active == False)).order_by(User.id),  # noqa: E712 - a wrong answer on purpose
            "python's `and`",
        ),
        Counterexample(
            "ids instead of User objects",
            lambda: select(User.id).filter_by(country="DE", is_active=False).order_by(User.id),
            "expected columns ['User']",
        ),
    ],
)


# ---------------------------------------------------------------- q2
Q2_CALL = {
    "username": "new_reader",
    "email": "new.reader@example.com",
    "display_name": "New Reader",
    "country": "NL",
    "created_at": datetime(2026, 1, 1, 9, 30),
}


async def _q2_solution(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    await session.flush()  # sends the INSERT; the database hands back the new id
    return user.id


async def _q2_expected(conn: AsyncConnection, **call: Any) -> dict[str, Any]:
    users = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
    row = (call["username"], call["email"], call["display_name"], call["country"], "member")
    return {"id": "an integer", "row": row, "users": users + 1}


async def _q2_observe(session: AsyncSession, returned: Any, **call: Any) -> dict[str, Any]:
    new_id = normalize(returned)
    if isinstance(returned, User):  # normalize() would turn it into its id: the task asks for the int
        new_id = ("a User object", new_id)
    rows = []
    if isinstance(new_id, int) and not isinstance(new_id, bool):
        rows = await _read(
            session, "SELECT username, email, display_name, country, role FROM users WHERE id = :id", id=new_id
        )
    (users,) = (await _read(session, "SELECT count(*) FROM users"))[0]
    return {"id": new_id, "row": rows[0] if rows else None, "users": users}


def _q2_id_set(attempt: Attempt) -> str | None:
    new_id = attempt.value["id"]
    if isinstance(new_id, int) and not isinstance(new_id, bool):
        return None
    if isinstance(new_id, tuple) and new_id[:1] == ("a User object",):
        return (
            "your function returned the User object; the task asks for its id, an int: return user.id"
        )
    if new_id is None and attempt.value["users"] == attempt.expected["users"]:
        return (
            "your function returned None, but the new user is in the database: did you forget "
            "return user.id at the end?"
        )
    if new_id is None or new_id == ("pending", "User"):
        return (
            "your function returned None, not the new id: the id is assigned when the INSERT reaches "
            "the database. Call await session.flush() before you read user.id"
        )
    return f"your function returned {new_id!r}; return the new user's id (an int)"


def _q2_row(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if isinstance(got["id"], tuple) and got["id"][:1] == ("a User object",):
        return None  # the id rule says what to return
    if got["row"] is None:
        if got["users"] == want["users"] - 1:
            return "no users row was inserted"
        return None  # the id is wrong: _q2_id_set says so
    if got["row"] != want["row"]:
        return f"the new row holds {got['row']!r}; expected {want['row']!r}"
    return None


def _q2_one_user(attempt: Attempt) -> str | None:
    grew = attempt.value["users"] - (attempt.expected["users"] - 1)
    if grew == 1:
        return None
    return f"the users table grew by {grew} row(s); creating one user should add exactly one"


async def _q2_no_flush(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    return user.id  # nothing was sent yet: still None


async def _q2_refresh_instead_of_flush(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    await session.refresh(user)  # refresh reads a row that is not there yet
    return user.id


async def _q2_commits(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    await session.commit()  # the id is set, but the caller's transaction is no longer the caller's
    return user.id


async def _q2_returns_user(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    await session.flush()
    return user  # the object, not its id


async def _q2_forgot_return(session, username, email, display_name, country, created_at):
    user = User(
        username=username, email=email, display_name=display_name, country=country, created_at=created_at
    )
    session.add(user)
    await session.flush()  # the id is set... and never returned


async def _q2_ask_for_max_id(session, username, email, display_name, country, created_at):
    session.add(
        User(username=username, email=email, display_name=display_name, country=country, created_at=created_at)
    )
    await session.flush()
    return await session.scalar(select(func.max(User.id)))  # a second round trip, and racy


q2 = Exercise(
    id="01.q2",
    title="Create a user, return its new id",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    observe=_q2_observe,
    calls=(Q2_CALL,),
    rules=[
        Probe(test=_q2_id_set, name="the new id is set"),
        Probe(test=_q2_row, name="the row holds the values given"),
        Probe(test=_q2_one_user, name="exactly one new user"),
        StatementBudget(1),
        LeavesTransactionToCaller(),
    ],
    hints=[
        "Build a User(...) from the arguments and session.add() it. What is user.id right after add()?",
        "add() only puts the object in the session. await session.flush() sends the INSERT (still inside "
        "the transaction) and fills in user.id from the database.",
        "session.add(user); await session.flush(); return user.id",
    ],
    why="flush() sends pending changes inside the transaction: the id exists, nothing is committed yet.",
    counterexamples=[
        Counterexample("no flush", _q2_no_flush, "await session.flush()"),
        Counterexample("refresh instead of flush", _q2_refresh_instead_of_flush, "not persistent"),
        Counterexample("asks for max(id) afterwards", _q2_ask_for_max_id, "took 2 statements"),
        Counterexample("commits", _q2_commits, "your function committed the session"),
        Counterexample("returns the User, not its id", _q2_returns_user, "returned the User object"),
        Counterexample("flushed, forgot return", _q2_forgot_return, "did you forget return user.id"),
    ],
)


# ---------------------------------------------------------------- q3
Q3_CALLS = ({"tag_id": 3, "new_name": "asyncio"}, {"tag_id": 999, "new_name": "ghost"})


async def _q3_solution(session, tag_id, new_name):
    tag = await session.get(Tag, tag_id)
    if tag is None:
        return None
    tag.name = new_name  # the session notices the change...
    await session.flush()  # ...and sends UPDATE tags SET name=... for it
    return tag


async def _q3_expected(conn: AsyncConnection, tag_id: int, new_name: str) -> dict[str, Any]:
    found = (await conn.execute(text("SELECT id FROM tags WHERE id = :tag_id"), {"tag_id": tag_id})).all()
    rows = await conn.execute(
        text(
            "SELECT id, CASE WHEN id = :tag_id THEN CAST(:new_name AS VARCHAR(40)) ELSE name END "
            "FROM tags ORDER BY id"
        ),
        {"tag_id": tag_id, "new_name": new_name},
    )
    return {"returned": found[0][0] if found else None, "tags": [tuple(r) for r in rows.all()]}


_STATEMENT_UPDATES = "course.exercises.statement_updates"
_STATEMENT_DELETES = "course.exercises.statement_deletes"


@event.listens_for(Session, "do_orm_execute")
def _note_update_statement(state: Any) -> None:
    """Mark a session that ran an update() or delete() statement: the unit of work's own UPDATE
    and DELETE (a flush) do not pass through do_orm_execute, so 01.q3 and 01.q4 can tell the two
    apart (the SQL is the same)."""
    if state.is_update:
        state.session.info[_STATEMENT_UPDATES] = state.session.info.get(_STATEMENT_UPDATES, 0) + 1
    if state.is_delete:
        state.session.info[_STATEMENT_DELETES] = state.session.info.get(_STATEMENT_DELETES, 0) + 1


async def _q3_observe(session: AsyncSession, returned: Any, tag_id: int, new_name: str) -> dict[str, Any]:
    return {
        "returned": normalize(returned),
        "tags": await _read(session, "SELECT id, name FROM tags ORDER BY id"),
        "update_statements": session.sync_session.info.get(_STATEMENT_UPDATES, 0),
    }


def _q3_through_attribute(attempt: Attempt) -> str | None:
    if not attempt.value.get("update_statements"):
        return None
    return (
        "you sent the UPDATE yourself with an update(Tag) statement: the task asks for the rename "
        "through the ORM attribute. Set tag.name = new_name on the loaded tag and flush: the unit of "
        "work writes the UPDATE for you"
    )


def _q3_sent(attempt: Attempt) -> str | None:
    got, want = attempt.value["tags"], attempt.expected["tags"]
    if got == want:
        return None
    changed = [(g, w) for g, w in zip(got, want, strict=False) if g != w]
    if len(got) == len(want) and len(changed) == 1:
        (tag_id, old), (_, new) = changed[0]
        return (
            f"tag {tag_id} is still {old!r} in the database, not {new!r}: the change stayed in the session. "
            "await session.flush() sends the UPDATE"
        )
    return f"the tags table is not as expected ({len(changed)} row(s) differ, {len(got)} rows vs {len(want)})"


def _q3_returned(attempt: Attempt) -> str | None:
    got, want = attempt.value["returned"], attempt.expected["returned"]
    if got == want:
        return None
    if want is None:
        return f"there is no such tag, so return None (you returned {got!r})"
    return f"return the renamed Tag object (you returned {got!r})"


async def _q3_no_flush(session, tag_id, new_name):
    tag = await session.get(Tag, tag_id)
    if tag is None:
        return None
    tag.name = new_name
    return tag


async def _q3_scalar_one(session, tag_id, new_name):
    tag = (await session.execute(select(Tag).where(Tag.id == tag_id))).scalar_one()
    tag.name = new_name
    await session.flush()
    return tag


async def _q3_no_none_check(session, tag_id, new_name):
    tag = await session.get(Tag, tag_id)
    tag.name = new_name
    await session.flush()
    return tag


async def _q3_refresh_to_be_sure(session, tag_id, new_name):
    tag = await session.get(Tag, tag_id)
    if tag is None:
        return None
    tag.name = new_name
    await session.flush()
    await session.refresh(tag)  # reads back what we just wrote: one more round trip
    return tag


async def _q3_commits(session, tag_id, new_name):
    tag = await session.get(Tag, tag_id)
    if tag is None:
        return None
    tag.name = new_name
    await session.commit()  # reaches the database, and ends the caller's transaction too
    return tag


async def _q3_core_update(session, tag_id, new_name):
    await session.execute(update(Tag).where(Tag.id == tag_id).values(name=new_name))
    return await session.get(Tag, tag_id)


q3 = Exercise(
    id="01.q3",
    title="Rename a tag through the unit of work",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    observe=_q3_observe,
    calls=Q3_CALLS,
    rules=[
        Probe(test=_q3_through_attribute, name="renamed through the attribute"),
        Probe(test=_q3_sent, name="the new name reached the database"),
        Probe(test=_q3_returned, name="returns the tag, or None"),
        StatementBudget(2),
        LeavesTransactionToCaller(),
    ],
    hints=[
        "session.get(Tag, tag_id) returns the tag, or None when there is no such id.",
        "Assign the attribute (tag.name = new_name): the session tracks the change. Nothing is sent "
        "until a flush.",
        "tag = await session.get(Tag, tag_id); if tag is None: return None; tag.name = new_name; "
        "await session.flush(); return tag",
    ],
    why="Change attributes, flush: the unit of work writes an UPDATE of exactly the columns you changed.",
    counterexamples=[
        Counterexample("no flush", _q3_no_flush, "the change stayed in the session"),
        Counterexample("scalar_one on a missing id", _q3_scalar_one, "NoResultFound"),
        Counterexample("no check for a missing tag", _q3_no_none_check, "NoneType"),
        Counterexample("refresh after flush", _q3_refresh_to_be_sure, "took 3 statements"),
        Counterexample("commits", _q3_commits, "your function committed the session"),
        Counterexample("Core update() instead of the attribute", _q3_core_update, "through the ORM attribute"),
    ],
)


# ---------------------------------------------------------------- q4
Q4_CALLS = ({"post_id": 7, "comment_id": 20}, {"post_id": 12, "comment_id": 49})


async def _q4_solution(session, post_id, comment_id):
    post = await session.get(
        Post,
        post_id,
        # the flush must detach the comment's replies: load them too, or it fetches them itself
        options=[selectinload(Post.comments).selectinload(Comment.replies)],
    )
    comment = next(c for c in post.comments if c.id == comment_id)
    post.comments.remove(comment)  # delete-orphan: out of the collection means deleted
    await session.flush()
    return [c.id for c in post.comments]


async def _q4_expected(conn: AsyncConnection, post_id: int, comment_id: int) -> dict[str, Any]:
    params = {"post_id": post_id, "comment_id": comment_id}
    remaining = await conn.execute(
        text("SELECT id FROM comments WHERE post_id = :post_id AND id <> :comment_id ORDER BY id"), params
    )
    rows = await conn.execute(
        text(
            "SELECT id, CASE WHEN parent_id = :comment_id THEN NULL ELSE parent_id END FROM comments "
            "WHERE post_id = :post_id AND id <> :comment_id ORDER BY id"
        ),
        params,
    )
    total = (await conn.execute(text("SELECT count(*) FROM comments"))).scalar_one()
    return {
        "returned": [r[0] for r in remaining.all()],
        "rows": [tuple(r) for r in rows.all()],
        "posts": 1,
        "comments": total - 1,
    }


_EXPLICIT_DELETES = "course.exercises.explicit_comment_deletes"


@event.listens_for(Session, "before_flush")
def _note_explicit_delete(session: Session, flush_context: Any, instances: Any) -> None:
    """Mark the comments a flush deletes because ``session.delete()`` was called on them, not
    because they left ``Post.comments``: an orphan is not in ``session.deleted`` before the flush
    (the flush finds it), and a comment both removed and deleted has lost its parent (01.q4)."""
    for obj in session.deleted:
        if not isinstance(obj, Comment):
            continue
        try:
            in_collection = has_parent(Post, obj, "comments", optimistic=True)
        except Exception:  # an attribute API that changed: judge it as a plain delete
            in_collection = True
        if in_collection:
            session.info.setdefault(_EXPLICIT_DELETES, []).append(obj.id)


async def _q4_observe(session: AsyncSession, returned: Any, post_id: int, comment_id: int) -> dict[str, Any]:
    rows = await _read(session, "SELECT id, parent_id FROM comments WHERE post_id = :p ORDER BY id", p=post_id)
    ((posts,),) = await _read(session, "SELECT count(*) FROM posts WHERE id = :p", p=post_id)
    ((comments,),) = await _read(session, "SELECT count(*) FROM comments")
    return {"returned": normalize(returned), "rows": rows, "posts": posts, "comments": comments,
            "comment_id": comment_id,
            "explicit_deletes": list(session.sync_session.info.get(_EXPLICIT_DELETES, [])),
            "delete_statements": session.sync_session.info.get(_STATEMENT_DELETES, 0)}


_THROUGH_COLLECTION = (
    "you deleted the comment with `session.delete()`: the task asks you to delete it through the "
    "`Post.comments` collection. Load the post with its comments, remove the comment from "
    "`post.comments` and flush: the delete-orphan cascade deletes it"
)


def _q4_explicit_delete(attempt: Attempt) -> bool:
    value = attempt.value if isinstance(attempt.value, dict) else {}
    return value.get("posts") == 1 and bool(value.get("explicit_deletes"))


def _q4_through_collection(attempt: Attempt) -> str | None:
    if _q4_explicit_delete(attempt):
        return _THROUGH_COLLECTION
    value = attempt.value if isinstance(attempt.value, dict) else {}
    if value.get("posts") == 1 and value.get("delete_statements") and not attempt.extra.get("explained"):
        return (
            "you deleted the comment with a `delete(Comment)` statement: it skips the ORM (no cascades, no "
            "relationship handling), and the task asks you to delete it through the `Post.comments` "
            "collection. Remove the comment from `post.comments` (with `Comment.replies` loaded) and flush: "
            "the delete-orphan cascade deletes it, and the flush sets the replies' parent_id to NULL first"
        )
    return None


def _q4_explain(error: BaseException) -> str | None:
    """A DELETE statement the answer sent itself, refused by the replies' foreign key."""
    statement = next((str(e.statement) for e in chain(error) if getattr(e, "statement", None)), "")
    refused = any(isinstance(e, sa_exc.IntegrityError) for e in chain(error)) and any(
        "foreign key" in str(e).lower() for e in chain(error)
    )
    if not refused or not statement.lstrip().upper().startswith("DELETE") or from_flush(error):
        return None
    return (
        "your DELETE statement skipped the ORM: a `delete(Comment)` (or `text()`) statement goes straight "
        "to the database, with no cascades and no relationship handling, so the comment's replies still "
        "point at it (their parent_id) and the foreign key refused the DELETE. Remove the comment from "
        "`post.comments` (with `Comment.replies` loaded) and flush: the ORM sets the replies' parent_id "
        "to NULL first, then deletes the comment"
    )


def _q4_post_kept(attempt: Attempt) -> str | None:
    if attempt.value["posts"] == 1:
        return None
    return (
        "the post itself is gone, and with it every one of its comments: remove just the one comment "
        "from post.comments"
    )


def _q4_rows(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if attempt.extra.get("explained"):  # the answer raised, and its changes were rolled back
        return None
    if got["rows"] == want["rows"] and got["comments"] == want["comments"]:
        return None
    if got["posts"] != 1:
        return "the post's comments were deleted with it"
    ids = [r[0] for r in got["rows"]]
    if got["comment_id"] in ids:
        return (
            f"comment {got['comment_id']} is still in the database: the DELETE was never sent. "
            "await session.flush() after removing it"
        )
    lost = want["comments"] - got["comments"]
    if lost != 1:
        return f"{lost} comments were deleted; only the one asked for should go"
    return f"the post's comments in the database are {got['rows']!r}; expected {want['rows']!r}"


def _q4_collection(attempt: Attempt) -> str | None:
    got, want = attempt.value["returned"], attempt.expected["returned"]
    if got == want or attempt.extra.get("explained"):
        return None
    comment_id = attempt.value["comment_id"]
    if isinstance(got, list) and comment_id in got:
        return (
            f"post.comments still lists comment {comment_id}: session.delete() removes the row but not "
            "the object from a collection you already loaded. Remove it from post.comments instead"
        )
    return f"return the ids of the comments left in post.comments: expected {want!r}, got {got!r}"


async def _q4_delete_post(session, post_id, comment_id):
    post = await session.get(
        Post, post_id, options=[selectinload(Post.comments).selectinload(Comment.replies), selectinload(Post.tags)]
    )
    await session.delete(post)
    await session.flush()
    return []


async def _q4_core_delete(session, post_id, comment_id):
    await session.execute(delete(Comment).where(Comment.id == comment_id))
    post = await session.get(Post, post_id, options=[selectinload(Post.comments)])
    return [c.id for c in post.comments]


async def _q4_core_delete_replies_detached(session, post_id, comment_id):
    await session.execute(update(Comment).where(Comment.parent_id == comment_id).values(parent_id=None))
    await session.execute(delete(Comment).where(Comment.id == comment_id))  # right rows, around the ORM
    post = await session.get(Post, post_id, options=[selectinload(Post.comments)])
    return [c.id for c in post.comments]


async def _q4_session_delete_by_id(session, post_id, comment_id):
    # the learner trial's answer: right rows, but not through the collection the task names
    comment = await session.get(Comment, comment_id, options=[selectinload(Comment.replies)])
    await session.delete(comment)
    await session.flush()
    post = await session.get(Post, post_id, options=[selectinload(Post.comments)])
    return [c.id for c in post.comments]


async def _q4_session_delete_lazy(session, post_id, comment_id):
    comment = await session.get(Comment, comment_id)
    await session.delete(comment)
    await session.flush()  # loads comment.replies lazily to set their parent_id to NULL
    post = await session.get(Post, post_id, options=[selectinload(Post.comments)])
    return [c.id for c in post.comments]


async def _q4_session_delete(session, post_id, comment_id):
    post = await session.get(Post, post_id, options=[selectinload(Post.comments).selectinload(Comment.replies)])
    comment = next(c for c in post.comments if c.id == comment_id)
    await session.delete(comment)
    await session.flush()
    return [c.id for c in post.comments]


async def _q4_replies_not_loaded(session, post_id, comment_id):
    post = await session.get(Post, post_id, options=[selectinload(Post.comments)])
    comment = next(c for c in post.comments if c.id == comment_id)
    post.comments.remove(comment)
    await session.flush()  # the flush loads comment.replies itself: a lazy load
    return [c.id for c in post.comments]


async def _q4_comments_not_loaded(session, post_id, comment_id):
    post = await session.get(Post, post_id)  # no loader option: post.comments is a lazy load
    comment = next(c for c in post.comments if c.id == comment_id)
    post.comments.remove(comment)
    await session.flush()
    return [c.id for c in post.comments]


async def _q4_no_flush(session, post_id, comment_id):
    post = await session.get(Post, post_id, options=[selectinload(Post.comments).selectinload(Comment.replies)])
    comment = next(c for c in post.comments if c.id == comment_id)
    post.comments.remove(comment)
    return [c.id for c in post.comments]


class _NoLazyLoadsInFlush(NoLazyLoads):
    """No lazy loads, explained for a flush that deletes: it needs the collections pointing at the row."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if not result.passed:
            result.message = (
                f"{attempt.lazy_loads} relationship(s) were loaded lazily, one query each. Even if you touched "
                "none: before it deletes a comment, the flush sets its replies' parent_id to NULL, so it "
                "loads comment.replies itself. Load them up front: "
                "selectinload(Post.comments).selectinload(Comment.replies)"
            )
            if _q4_explicit_delete(attempt):  # a lazy load is always the headline: lead with the cause
                result.message = (
                    f"{_THROUGH_COLLECTION}. Load the replies too, or the flush loads them lazily: "
                    "selectinload(Post.comments).selectinload(Comment.replies)"
                )
        return result


q4 = Explaining(
    id="01.q4",
    title="Remove one comment: delete-orphan",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    observe=_q4_observe,
    explain=_q4_explain,
    calls=Q4_CALLS,
    rules=[
        EXPLAINED,
        _NoLazyLoadsInFlush(),
        Probe(test=_q4_post_kept, name="the post is kept"),
        Probe(test=_q4_through_collection, name="deleted through Post.comments"),
        Probe(test=_q4_rows, name="only that comment deleted, its replies kept"),
        Probe(test=_q4_collection, name="post.comments is up to date"),
    ],
    hints=[
        "Post.comments has cascade='all, delete-orphan': a comment taken out of post.comments is deleted "
        "at the next flush. Load the post with its comments (selectinload), then remove one.",
        "Deleting a comment that has replies means their parent_id must be set to NULL first, and the "
        "flush needs comment.replies for that. Load it up front: "
        "selectinload(Post.comments).selectinload(Comment.replies).",
        "post = await session.get(Post, post_id, options=[...]); comment = next(c for c in post.comments "
        "if c.id == comment_id); post.comments.remove(comment); await session.flush()",
    ],
    why="With delete-orphan the collection is the truth: take an object out and the flush deletes its row.",
    counterexamples=[
        Counterexample("deletes the whole post", _q4_delete_post, "the post itself is gone"),
        Counterexample("Core delete of the row", _q4_core_delete, "your DELETE statement skipped the ORM"),
        Counterexample(
            "Core delete after detaching the replies", _q4_core_delete_replies_detached,
            "with a `delete(Comment)` statement: it skips the ORM",
        ),
        Counterexample("session.delete(comment)", _q4_session_delete, "post.comments still lists"),
        Counterexample(
            "session.delete() of the comment, replies loaded", _q4_session_delete_by_id,
            "you deleted the comment with `session.delete()`: the task asks you to delete it through the "
            "`Post.comments` collection",
        ),
        Counterexample(
            "session.delete() of the comment, replies not loaded", _q4_session_delete_lazy,
            "you deleted the comment with `session.delete()`",
        ),
        Counterexample("replies not loaded", _q4_replies_not_loaded, "loaded lazily"),
        # the answer stops at the lazy load, before any result: the rules that read one are not run
        Counterexample("comments not loaded", _q4_comments_not_loaded, "loaded lazily"),
        Counterexample("no flush", _q4_no_flush, "the DELETE was never sent"),
    ],
)


# ---------------------------------------------------------------- correct answers of another form
async def _q2_insert_returning(session, username, email, display_name, country, created_at):
    from sqlalchemy import insert

    return await session.scalar(
        insert(User)
        .values(username=username, email=email, display_name=display_name, country=country, created_at=created_at)
        .returning(User.id)
    )


async def _q3_select_one_or_none(session, tag_id, new_name):
    tag = (await session.execute(select(Tag).where(Tag.id == tag_id))).scalar_one_or_none()
    if tag is None:
        return None
    tag.name = new_name
    await session.flush()
    return tag


async def _q4_select_with_options(session, post_id, comment_id):
    post = (
        await session.execute(
            select(Post)
            .where(Post.id == post_id)
            .options(selectinload(Post.comments).selectinload(Comment.replies))
        )
    ).scalar_one()
    post.comments.remove(next(c for c in post.comments if c.id == comment_id))
    await session.flush()
    return [c.id for c in post.comments]


async def _q4_reassign_collection(session, post_id, comment_id):
    post = await session.get(Post, post_id, options=[selectinload(Post.comments).selectinload(Comment.replies)])
    post.comments = [c for c in post.comments if c.id != comment_id]  # the one left out is an orphan
    await session.flush()
    return [c.id for c in post.comments]


ALTERNATIVES = {
    "01.q1": [
        ("where() with ~", lambda: select(User).where(User.country == "DE", ~User.is_active).order_by(User.id)),
        ("is_(False)", lambda: select(User).where(User.country == "DE", User.is_active.is_(False)).order_by(User.id)),
    ],
    "01.q2": [("insert().returning(User.id)", _q2_insert_returning)],
    "01.q3": [("select() and scalar_one_or_none()", _q3_select_one_or_none)],
    "01.q4": [
        ("select() with the loader options", _q4_select_with_options),
        ("the collection reassigned without the comment", _q4_reassign_collection),
    ],
}
