"""Errors and warnings in the lesson's terms: what the learner did, and what to change.

:func:`explain_error` reads an exception an answer raised (both backends' drivers,
SQLAlchemy 2.0 and 2.1) and returns a sentence naming the mistake, or None when it
has nothing better than the raw text. The checker puts that sentence first and
quotes the raw error after it. Decided by SQLSTATE / SQLite result codes and by
exception class first; by the message text only where the driver gives nothing
else (SQLite's ``OperationalError`` covers every syntax and name error).

Message strings mark code with backticks (see :mod:`course.exercises.verdict`).
"""

from __future__ import annotations

import builtins
import linecache
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import exc as sa_exc

from ..engines import _chain as _wrapped

# Python 3.11+ (asyncio.TaskGroup raises it); a name ruff's older target does not know
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", ())
_QUOTED = re.compile(r'"([^"]+)"')


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (``.orig``), its cause and context, each once."""
    return iter(_wrapped(error))


def first_leaf(error: BaseException) -> tuple[BaseException, int]:
    """An ExceptionGroup's first real cause (depth first) and how many failures it held."""
    if isinstance(error, _GROUP):
        leaves = _leaves(error)
        return (leaves[0] if leaves else error), len(leaves)
    return error, 1


def _leaves(group: Any) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, _GROUP) else [e]
    return out


def _code(error: BaseException) -> str:
    for item in chain(error):
        code = getattr(item, "sqlstate", None) or getattr(item, "sqlite_errorname", None)
        if code:
            return str(code)
    return ""


def _texts(error: BaseException) -> str:
    return "\n".join(str(item) for item in chain(error)).lower()


CONCURRENT = (
    "one session used by several tasks at once (asyncio.gather or a TaskGroup sharing it): a session "
    "and its connection run one statement at a time. Give each task its own session: open "
    "`async with db.session() as session:` inside the task"
)

PENDING_ROLLBACK = (
    "an earlier statement in this transaction failed, and the session refuses more work until the "
    "transaction is rolled back. Roll back after the failure, or wrap the statement that may fail in "
    "`async with session.begin_nested():` so that only it is undone"
)


def explain_error(error: BaseException) -> str | None:
    """The mistake behind ``error`` in the lesson's terms, or None when there is nothing to add."""
    error, _ = first_leaf(error)
    code = _code(error)
    text = _texts(error)
    kinds = {type(item).__name__ for item in chain(error)}

    if "MissingGreenlet" in kinds or "greenlet_spawn has not been called" in text:
        return (
            "an attribute was loaded lazily (implicit IO outside `await`, MissingGreenlet): load the "
            "relationship up front with `selectinload()` / `joinedload()`, or read it through "
            "`await obj.awaitable_attrs.name`"
        )
    if isinstance(error, sa_exc.PendingRollbackError) or "PendingRollbackError" in kinds:
        original = re.search(r"original exception was: (.+)", str(error), re.I)
        cause = f" (the statement that failed: {original.group(1).split(chr(10))[0][:200]})" if original else ""
        return PENDING_ROLLBACK + cause
    if (
        isinstance(error, sa_exc.InvalidRequestError) and "is not present in this session" in str(error).lower()
        and any(isinstance(item, sa_exc.IntegrityError) for item in chain(error))
    ):
        return (
            "the failed flush had already taken the refused object out of the session (a failed flush rolls "
            "back: the savepoint it ran in, or else the session's whole transaction), so `session.expunge()` "
            "found nothing to remove and raised InvalidRequestError. Drop the expunge, and give each row a "
            "savepoint: `try:`, then `async with session.begin_nested(): session.add(...)` inside it, then "
            "`except IntegrityError:` level with the `try`"
        )
    if code == "25P02" or "current transaction is aborted" in text:
        return (
            "an earlier statement in this transaction failed, and PostgreSQL aborts the whole transaction at "
            "the first error: every later statement fails until it is rolled back (SQLite would have let you "
            "carry on). Wrap the statement that may fail in `async with session.begin_nested():` so that "
            "only it is undone"
        )
    if (
        "IllegalStateChangeError" in kinds
        or "another operation is in progress" in text
        or "concurrent operations are not permitted" in text
        or "session is already flushing" in text
        or "is already in progress" in text and "method" in text
    ):
        return CONCURRENT
    if code == "42803" and "aggregate functions are not allowed in where" in text or "misuse of aggregate" in text:
        return (
            "an aggregate (`count()`, `sum()`, ...) in WHERE: WHERE filters rows before they are grouped, "
            "so it cannot see a group's total. Filter groups with `.having(...)` after `.group_by(...)`"
        )
    if code == "42803" or "must appear in the group by clause" in text:
        column = _QUOTED.search(str(error))
        what = f"`{column.group(1)}`" if column else "a column"
        return (
            f"{what} is selected but neither grouped nor aggregated: with GROUP BY, each selected column must "
            f"be in `.group_by(...)` or inside an aggregate such as `func.count()` (SQLite lets this pass and "
            f"picks a value from any row of the group; PostgreSQL refuses)"
        )
    if code == "42702" or "ambiguous column name" in text:
        name = _name_after(str(error), "ambiguous column name:") or _quoted(error)
        return (
            f"the column {name} is in more than one table of your FROM and joins, and the SQL does not say "
            f"which: name it through its model or alias (`User.id`, not `text(\"id\")`)"
        )
    if code == "42703" or "no such column" in text:
        name = _name_after(str(error), "no such column:") or _quoted(error)
        return (
            f"there is no column {name} in the tables your statement reads: check the spelling, and that the "
            f"table it belongs to is in the FROM clause (joined)"
        )
    if "missing from-clause entry" in text:
        return (
            f"the table {_quoted(error)} is used but not in the FROM clause: join it (`.join(...)`), or refer "
            f"to the alias you gave it"
        )
    if code == "42P01" or "no such table" in text:
        name = _name_after(str(error), "no such table:") or _quoted(error)
        return f"there is no table {name} in this database: check the name (the models' tables are users, posts, comments, tags, orders)"
    if _injected(error):
        return (
            "the database ran part of a value as SQL: your SQL text has a value pasted into it (an f-string "
            "or +), and a quote in that value closed the string so the rest ran as SQL (SQL injection; an "
            "error message is one way it leaks data). Pass values as bound parameters (`text(\"... :name\")` "
            "with a dict, or compare columns with `==`)"
        )
    if code in ("42601", "SQLITE_ERROR") and (
        "syntax error" in text or "unterminated quoted string" in text or "unrecognized token" in text
        or "incomplete input" in text
    ) or code == "42601":
        return _syntax(error, text)
    if isinstance(error, sa_exc.IntegrityError) or code.startswith("23") or "SQLITE_CONSTRAINT" in code:
        return _integrity(error, code, text)
    if isinstance(error, sa_exc.TimeoutError) or "queuepool limit" in text:
        return (
            "no connection came free in the pool within its timeout: more sessions were open at once than "
            "the pool holds (`pool_size + max_overflow`), or one was never closed. Close each session "
            "(`async with`), or limit how many run at once (an `asyncio.Semaphore`)"
        )
    if isinstance(error, sa_exc.MultipleResultsFound):
        return "`scalar_one()` / `one()` found more than one row: filter to one row, or use `.first()` / `.all()`"
    if isinstance(error, sa_exc.NoResultFound):
        return "`scalar_one()` / `one()` found no row: use `scalar_one_or_none()` when a row may be missing"
    if isinstance(error, TypeError) and "boolean value of this clause is not defined" in text:
        return (
            "Python's `and` / `or` / `not` on SQL expressions: Python cannot turn them into SQL. Use "
            "`and_()`, `or_()`, `~` / `not_()`, or pass several conditions to `.where(a, b)`"
        )
    if "they are the same entity" in text or "can't construct a join from" in text and "same" in text:
        return (
            "a join of a table to itself needs an alias: `inviter = aliased(User)`, then "
            "`.join(inviter, User.invited_by_id == inviter.id)`"
        )
    if "can't determine which from clause to join from" in text:
        return (
            "several tables in your statement could be the left side of this join. A common cause: each "
            "`aliased(User)` call makes a new, separate alias, so writing it twice puts two different tables "
            "in the statement. Make the alias once (`inviter = aliased(User)`) and use that name everywhere; "
            "otherwise say where to start with `.select_from(...)` and give the ON condition"
        )
    if "don't know how to join to" in text:
        return (
            "SQLAlchemy cannot tell where to join from: start from one table with `.select_from(...)` and give "
            "the ON condition; a table joined to itself needs an alias (`inviter = aliased(User)`)"
        )
    if "does not apply to any of the root entities" in text:
        return (
            "a loader option is a path from the entity you select: chain it from the relationship that "
            "reaches it, e.g. `selectinload(Post.comments).joinedload(Comment.author)`"
        )
    if "is not persistent within this session" in text:
        return (
            "`refresh()` reloads an object that is already in the database; a new one gets there only when "
            "the session flushes: `await session.flush()` first"
        )
    if isinstance(error, (AttributeError, TypeError)) and "'coroutine' object" in text:
        return (
            "you forgot `await`: an async call (`session.execute()`, `session.scalars()`, `session.get()`, "
            "...) without `await` gives a coroutine, not its result, so the next step failed on it. Await "
            "the call first: `(await session.execute(stmt)).scalars().all()`"
        )
    if isinstance(error, AttributeError) and "'nonetype' object has no attribute" in text:
        return (
            "your code used None as an object: a lookup found nothing (`session.get()`, `scalar()`, "
            "`scalar_one_or_none()` and `first()` return None when no row matches). Check for None first"
        )
    if isinstance(error, sa_exc.InvalidRequestError) and "unique()" in text:
        return (
            "a joined eager load of a collection repeats each parent once per child: call `.unique()` on "
            "the result before `.all()` (or load the collection with `selectinload()`)"
        )
    return None


#: ``col NULLS LAST DESC``: ``.nulls_last().desc()`` chained the wrong way round
_NULLS_BEFORE_DIRECTION = re.compile(r"([\w.\"]+)\s+NULLS\s+(FIRST|LAST)\s+(ASC|DESC)\b", re.I)
#: where the database stopped: SQLite's 'near "X": syntax error', PostgreSQL's 'at or near "X"'
_NEAR = re.compile(r'near "([^"]*)"', re.I)


def _syntax(error: BaseException, text: str) -> str:
    """A syntax error: a modifier in the wrong order, a value pasted into the SQL text (a quote in
    it ended the string: injection), or else malformed SQL, shown where the database stopped."""
    statement = _failed_statement(error)
    wrong = _NULLS_BEFORE_DIRECTION.search(statement)
    if wrong:
        column, nulls, direction = wrong.group(1), wrong.group(2).upper(), wrong.group(3).upper()
        return (
            f"your ORDER BY says `{column} NULLS {nulls} {direction}`: in SQL the direction comes first, then "
            f"where the NULLs go, so the database refuses it (a syntax error). Chain them in that order: "
            f"`.{direction.lower()}().nulls_{nulls.lower()}()`, not `.nulls_{nulls.lower()}().{direction.lower()}()`"
        )
    if "'" in statement or "unterminated quoted string" in text or "unrecognized token" in text:
        # a value written into the SQL text: a quote inside it ends the string early
        return (
            "the SQL text itself is broken (a syntax error), and it has a value written into it: if you built "
            "it from a value with an f-string or +, a quote inside the value ended the string early: that is "
            "SQL injection. Pass values as bound parameters (`text(\"... :name\")` with a dict, or compare "
            "columns with `==`)"
        )
    near = _NEAR.search(str(first_leaf(error)[0]))
    where = ""
    if near:
        token = near.group(1)
        at = _error_position(error, statement, token)
        if at >= 0:
            before = " ".join(statement[max(0, at - 50):at].split())
            where = f': the database stopped at "{token}", in `...{before} {token}`'
        else:
            where = f': the database stopped near "{token}"'
    elif "end of input" in text or "incomplete input" in text:
        where = ": it ends before the statement is complete"
    return (
        f"the SQL your statement sent is malformed (a syntax error){where}. Check the statement there: a "
        "clause or modifier in the wrong place, or a missing part"
    )


def _error_position(error: BaseException, statement: str, token: str) -> int:
    """Where in ``statement`` the database stopped: PostgreSQL reports the position (asyncpg's
    ``position``, 1-based); SQLite only the token, which locates it when it occurs once."""
    for item in chain(error):
        position = getattr(item, "position", None)
        if isinstance(position, (int, str)) and str(position).isdigit() and statement:
            at = int(position) - 1
            if statement[at:at + len(token)].lower() == token.lower():
                return at
    if token and statement.count(token) == 1:
        return statement.find(token)
    return -1


_INJECTED = re.compile(r"'\s*(?:OR|AND|UNION)\b|'\s*\)?\s*--|'\s*;", re.I)


def _injected(error: BaseException) -> bool:
    """A failed statement with no bound parameters whose text closes a string and goes on as SQL."""
    for item in chain(error):
        statement = getattr(item, "statement", None)
        if isinstance(item, sa_exc.DBAPIError) and statement and not getattr(item, "params", None):
            return bool(_INJECTED.search(statement))
    return False


def from_flush(error: BaseException) -> bool:
    """Whether ``error`` was raised inside a flush (the unit of work wrote the statement), not by a
    statement the code executed itself (``session.execute(delete(...))``, ``text()``)."""
    for item in chain(error):
        tb = item.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("/orm/unitofwork.py"):
                return True
            tb = tb.tb_next
    return False


def _failed_statement(error: BaseException) -> str:
    for item in chain(error):
        statement = getattr(item, "statement", None)
        if isinstance(item, sa_exc.StatementError) and statement:
            return str(statement)
    return ""


def _integrity(error: BaseException, code: str, text: str) -> str:
    foreign_key = code in ("23503", "SQLITE_CONSTRAINT_FOREIGNKEY") or "foreign key" in text
    if foreign_key and _failed_statement(error).lstrip().upper().startswith("DELETE"):
        # the row deleted is the one pointed at: "points at a row that does not exist" would be false
        how = "" if from_flush(error) else (
            " A `delete()` (or `text()`) statement goes straight to the database and skips the ORM: no "
            "cascades, no relationship handling."
        )
        return (
            "other rows still point at the row you deleted (a foreign key refused the DELETE)." + how
            + " Update or delete the rows that point at it first, or delete it through the session: the "
            "flush does that for the rows a relationship of the object holds (load it up front)"
        )
    if code in ("23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY") or "unique" in text:
        what = "a row with the same unique value already exists (a unique constraint refused a duplicate)"
    elif foreign_key:
        what = "the row points at a row that does not exist (a foreign key refused it)"
    elif code in ("23502", "SQLITE_CONSTRAINT_NOTNULL") or "not null" in text:
        empty = _empty_insert(error)
        if empty:
            return empty
        what = "a required column was left empty (NOT NULL refused the row)"
    elif code in ("23514", "SQLITE_CONSTRAINT_CHECK") or "check constraint" in text:
        what = "a value broke a CHECK constraint (the table refuses it)"
    else:
        what = "a constraint refused the row"
    leaving = _raised_leaving_block(error)
    if leaving is not None:
        block, try_inside = leaving
        which = f"`async with session.{block}():`" if block else "`async with session.begin_nested():` (or `begin()`)"
        fix = (
            f"Put the `try` around the whole block: `try:`, then `async with session.{block or 'begin_nested'}():` "
            "indented inside it, then `except IntegrityError:` level with the `try`"
        )
        if try_inside:
            return (
                f"your `try` inside the {which} block never saw the IntegrityError: it was raised when the block "
                "ended, after your `try` had ended. `session.add()` sends nothing; the INSERT runs at the flush "
                f"that leaving the block does, and that is where the database refused it: {what}. {fix}"
            )
        return (
            f"{what}. The IntegrityError was raised when your {which} block ended: `session.add()` sends "
            f"nothing, the INSERT runs at the flush that leaving the block does. {fix}"
        )
    return (
        f"{what}. Where the database may refuse a row and your code carries on, catch `IntegrityError` "
        "around the whole `async with session.begin_nested():` block (after `session.add()` the INSERT runs "
        "at the flush when the block ends, so a `try` inside the block misses it), so that only the savepoint "
        "is undone and the rest of the transaction survives"
    )


def _raised_leaving_block(error: BaseException) -> tuple[str, bool] | None:
    """When ``error`` came from the flush an ``async with session.begin...()`` block runs as it ends (read
    from the traceback: AsyncSessionTransaction.__aexit__, then a flush): which block (``"begin_nested"``,
    ``"begin"``, or ``""`` when the learner's line cannot be read) and whether a ``try`` sits inside it.
    None when the error came from elsewhere."""
    learner: tuple[str, int] | None = None
    for item in chain(error):
        leaving = False
        tb = item.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            filename = code.co_filename.replace("\\", "/")
            if code.co_name == "__aexit__" and filename.endswith("ext/asyncio/session.py"):
                leaving = True
            elif leaving and code.co_name in ("flush", "_flush"):
                return _block_at(*learner) if learner else ("", False)
            elif not leaving and "/sqlalchemy/" not in filename:
                learner = (code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if leaving:
            return None
    return None


def _block_at(filename: str, lineno: int) -> tuple[str, bool]:
    """The ``async with`` block at ``filename:lineno``: begin_nested or begin, and whether it holds a ``try``."""
    lines = linecache.getlines(filename)
    head = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    match = re.search(r"\.(begin_nested|begin)\(", head)
    if not match:
        return "", False
    indent = len(head) - len(head.lstrip())
    for line in lines[lineno:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        if re.match(r"\s*try\s*:", line):
            return match.group(1), True
    return match.group(1), False


def _empty_insert(error: BaseException) -> str | None:
    """An INSERT executed with an empty list of parameters: SQLAlchemy sends it once, with no values."""
    for item in chain(error):
        statement = getattr(item, "statement", None)
        if isinstance(item, sa_exc.DBAPIError) and statement and statement.lstrip().upper().startswith("INSERT"):
            if getattr(item, "params", None):
                return None
            table = re.match(r'\s*INSERT\s+INTO\s+"?(\w+)', statement, re.I)
            name = f"`{table.group(1)}`" if table else "the table"
            return (
                f"an INSERT into {name} ran with no values at all (`{' '.join(statement.split())[:60]}`): "
                "`session.execute(insert(...), [])` with an empty list means no parameters, so SQLAlchemy sends "
                "the INSERT once, with no row of values, and NOT NULL refused it (SQLAlchemy 2.1 also warns that "
                "an empty list will become an error). Skip the call when the list is empty (`if rows:`)"
            )
    return None


def _quoted(error: BaseException) -> str:
    for item in chain(error):
        match = _QUOTED.search(str(item))
        if match:
            return f"`{match.group(1)}`"
    return "named in the error"


def _name_after(message: str, marker: str) -> str:
    index = message.lower().find(marker)
    if index < 0:
        return ""
    word = message[index + len(marker):].strip().split()
    return f"`{word[0].rstrip('.,;')}`" if word else ""


def explain_warning(message: str) -> str:
    """A SQLAlchemy warning in the lesson's terms (the cartesian product linter, mostly)."""
    if "cartesian product" in message:
        names = _QUOTED.findall(message)
        if len(names) > 2:
            # 'FROM element(s) "posts", "users" and FROM element "tags"': posts and users may well be
            # joined to each other; what the linter says is that none of them is linked to tags
            quoted = [f"`{n}`" for n in names[:-1]]
            others = ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
            return (
                f"a cartesian product: your statement reads `{names[-1]}` with no condition linking it to "
                f"{others}, so every row of one side is paired with every row of the other. Join them on "
                f"their key: `.join()` along a relationship (such as `Post.author`) or with an explicit ON "
                f"condition"
            )
        between = " and ".join(f"`{n}`" for n in names[:2]) if names else "two tables"
        return (
            f"a cartesian product: your statement reads {between} with no condition linking them, so every "
            f"row of one is paired with every row of the other. Join them on their key: `.join()` along a "
            f"relationship (such as `Post.author`) or with an explicit ON condition"
        )
    return f"SQLAlchemy warned: {message}"
