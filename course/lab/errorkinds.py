"""Which database error is it? Decided by codes, never by the message text.

Lesson 10 builds these functions step by step; later lessons (and your own apps)
import them from here. Both work on SQLite (aiosqlite) and PostgreSQL (asyncpg),
on SQLAlchemy 2.0 and 2.1:

- PostgreSQL errors carry a five-character SQLSTATE: ``exc.orig.sqlstate``.
- SQLite errors carry an extended result name: ``exc.orig.sqlite_errorname``
  (``"SQLITE_CONSTRAINT_UNIQUE"``, ``"SQLITE_BUSY"``, ...), Python 3.11+.
- A connection that broke is flagged by SQLAlchemy itself: ``exc.connection_invalidated``.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

#: Integrity errors by code: PostgreSQL SQLSTATE, or SQLite's extended result name.
CONSTRAINT_KINDS = {
    "23505": "unique",  # unique_violation (a primary key too)
    "23503": "foreign_key",  # foreign_key_violation
    "23502": "not_null",  # not_null_violation
    "23514": "check",  # check_violation
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_NOTNULL": "not_null",
    "SQLITE_CONSTRAINT_CHECK": "check",
}

#: Errors that may well not happen again: another attempt, in a new transaction, can succeed.
TRANSIENT_CODES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
    "57P01",  # admin_shutdown (the server is restarting)
    "53300",  # too_many_connections
    "SQLITE_BUSY",  # "database is locked": another connection holds the write lock
    "SQLITE_LOCKED",
})


def error_code(exc: BaseException) -> str | None:
    """The driver's code for a database error: a SQLSTATE or a SQLite result name."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)


def constraint_kind(exc: BaseException) -> str | None:
    """``"unique"``, ``"foreign_key"``, ``"not_null"``, ``"check"``, or None for anything else."""
    if not isinstance(exc, IntegrityError):
        return None
    return CONSTRAINT_KINDS.get(error_code(exc) or "")


def is_transient(exc: BaseException) -> bool:
    """True when running the whole unit of work again, later, may succeed."""
    if isinstance(exc, PoolTimeoutError):  # no connection free in the pool within pool_timeout
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:  # the connection broke: network, server restart, killed backend
        return True
    code = error_code(exc) or ""
    # SQLite's extended names refine the primary one: SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE...
    return code in TRANSIENT_CODES or code.startswith(("SQLITE_BUSY_", "SQLITE_LOCKED_"))
