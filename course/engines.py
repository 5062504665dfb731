"""Async engines set up to teach the truth on each backend.

SQLite gets foreign keys, WAL, a busy timeout and real transactions: the
sqlite3 driver's own transaction handling does not emit BEGIN before SELECT or
SAVEPOINT, which breaks ``begin_nested()``; the recipe from SQLAlchemy's SQLite
dialect docs (driver-level autocommit plus our own BEGIN) fixes that, so
savepoints behave as on PostgreSQL. PostgreSQL gets a ``search_path`` pointing
at the notebook's own schema, so the SQL learners read carries no schema names.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util.concurrency import in_greenlet

from .config import BackendConfig, hide_secret
from .errors import DatabaseUnavailable

#: Seconds to wait for a server that accepted the connection but never answers.
CONNECT_TIMEOUT = 5.0

#: Execution option marking statements the course emits for its own plumbing;
#: the SQL recorder leaves them out so both backends show the same statements.
HIDDEN = "course_hidden"

#: Execution option for SQLite: how the course's BEGIN starts a transaction.
#: ``engine.execution_options(sqlite_begin="IMMEDIATE")`` takes the write lock at BEGIN,
#: so a transaction that reads and then writes cannot lose its snapshot to another
#: writer (SQLITE_BUSY_SNAPSHOT); the BEGIN is then recorded, to be seen. PostgreSQL ignores it.
SQLITE_BEGIN = "sqlite_begin"
_BEGIN_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def sqlite_path(namespace: str, folder: Path) -> Path:
    return folder / f"{namespace}.sqlite3"


def make_engine(
    config: BackendConfig,
    namespace: str,
    *,
    sqlite_file: Path | None = None,
    **engine_kw: Any,
) -> AsyncEngine:
    """An engine on the notebook's own database; ``engine_kw`` go to ``create_async_engine``."""
    if config.backend == "sqlite":
        assert sqlite_file is not None
        return _sqlite_engine(sqlite_file, **engine_kw)
    assert config.url is not None
    return _postgresql_engine(config.url, namespace, **engine_kw)


def _sqlite_engine(path: Path, **engine_kw: Any) -> AsyncEngine:
    connect_args = dict(engine_kw.pop("connect_args", {}))
    connect_args.setdefault("timeout", CONNECT_TIMEOUT)
    busy_ms = int(float(connect_args["timeout"]) * 1000)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", connect_args=connect_args, **engine_kw
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the driver, decide where transactions begin
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL",
            # the same wait as the driver's own timeout (connect_args={"timeout": seconds}),
            # so an engine made with a short timeout really gives up that soon
            f"PRAGMA busy_timeout = {busy_ms}",
            "PRAGMA synchronous = NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Outside the greenlet (an implicit IO such as touching an expired attribute)
        # nothing can run: skip the BEGIN so the statement itself raises MissingGreenlet,
        # as on a plain engine, instead of this BEGIN failing and the pool then logging
        # a traceback while it discards the connection.
        if not in_greenlet():
            return
        if conn._is_autocommit_isolation():
            # asked for no transaction (on the connection, on the engine, or in create_engine()'s
            # isolation_level=, which execution options do not show): a BEGIN here would leave its
            # writes uncommitted. SQLAlchemy's own test for it, present in 2.0 and 2.1.
            return
        options = conn.get_execution_options()
        mode = options.get(SQLITE_BEGIN)
        if mode is None:
            conn.exec_driver_sql("BEGIN", execution_options={HIDDEN: True})
            return
        if str(mode).upper() not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN}={mode!r}: SQLite begins a transaction as one of {', '.join(_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {str(mode).upper()}")

    return engine


def _postgresql_engine(url: URL, namespace: str, **engine_kw: Any) -> AsyncEngine:
    connect_args = dict(engine_kw.pop("connect_args", {}))
    settings = dict(connect_args.pop("server_settings", {}))
    settings.setdefault("search_path", namespace)
    settings.setdefault("application_name", f"course:{namespace}"[:63])
    connect_args["server_settings"] = settings
    connect_args.setdefault("timeout", CONNECT_TIMEOUT)
    poolclass = engine_kw.get("poolclass")
    if engine_kw.get("pool") is None and (poolclass is None or issubclass(poolclass, QueuePool)):
        # the course's own small pool; NullPool and StaticPool take no size (a TypeError)
        engine_kw.setdefault("pool_size", 2)
        engine_kw.setdefault("max_overflow", 3)
    return create_async_engine(url, connect_args=connect_args, **engine_kw)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (``orig``, ``__cause__``, ``__context__``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


_WRAPPER_PREFIX = re.compile(r"^\([\w.]+\) ")  # SQLAlchemy's "(sqlalchemy.dialects....Error) " prefix
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)", re.S)


def _causes(chain: list[BaseException]) -> str:
    """Each distinct cause once: SQLAlchemy's wrapper, the driver's error and the server's
    exception usually carry the same message (``role "x" does not exist`` three times)."""
    seen: list[str] = []
    for e in chain:
        message = _WRAPPER_PREFIX.sub("", _BACKGROUND.sub("", str(e))).strip()
        if message and not any(message in other or other in message for other in seen):
            seen.append(message)
    return " | ".join(seen)


def explain_connect_failure(exc: BaseException, config: BackendConfig) -> DatabaseUnavailable:
    """Turn whatever the driver raised while connecting into one friendly error."""
    url = config.url
    where = config.safe_url
    host = (url.query.get("host") if url is not None else None) or (url.host if url else None)
    server = f"{host or 'localhost'}:{(url.port if url else None) or 5432}"
    chain = _chain(exc)
    states = {getattr(e, "sqlstate", None) for e in chain}
    text = hide_secret(_causes(chain))

    if any(isinstance(e, (asyncio.TimeoutError, TimeoutError)) for e in chain):
        return DatabaseUnavailable(
            f"The server at {server} accepted the connection but did not answer within "
            f"{CONNECT_TIMEOUT:.0f} seconds ({where}).",
            hint="Check that this host and port are a PostgreSQL server (not another service)\n"
            "and that it is not overloaded; or unset COURSE_DATABASE_URL to use SQLite.",
        )
    if states & {"28000", "28P01"}:
        return DatabaseUnavailable(
            f"PostgreSQL at {server} refused the login ({where}): {text}",
            hint="Check the user name and password in COURSE_DATABASE_URL, or create the role:\n"
            "  createuser --createdb YOUR_NAME",
        )
    if "53300" in states:  # too_many_connections: the server's max_connections or the role's limit
        return DatabaseUnavailable(
            f"PostgreSQL at {server} has no connection left for you ({where}): {text}",
            hint="Every open notebook keeps a few connections. Shut down the kernels of lessons you\n"
            "have finished (Kernel > Shut Down All Kernels). Instructors: raise max_connections\n"
            "(docs/instructors.md, 'Connections') or the role's CONNECTION LIMIT.",
        )
    if "3D000" in states:
        db = url.database if url else "?"
        return DatabaseUnavailable(
            f"PostgreSQL at {server} has no database named {db!r} ({where}).",
            hint=f"Create it (for example `createdb {db}`) or name an existing database in the URL.",
        )
    if any(isinstance(e, OSError) for e in chain):
        return DatabaseUnavailable(
            f"Could not reach a PostgreSQL server at {server} ({where}): {text}",
            hint="Is the server running and listening there? Start it, fix the host and port in\n"
            "COURSE_DATABASE_URL, or unset COURSE_DATABASE_URL to use SQLite.",
        )
    return DatabaseUnavailable(
        f"Connecting to {where} failed: {type(exc).__name__}: {text}",
        hint="Check COURSE_DATABASE_URL, or unset it to use SQLite.",
    )


async def check_reachable(engine: AsyncEngine, config: BackendConfig) -> None:
    """Open one connection, failing within seconds with a friendly error."""

    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1", execution_options={HIDDEN: True})

    try:
        await asyncio.wait_for(probe(), CONNECT_TIMEOUT + 2)
    except Exception as exc:  # every driver error becomes one explained error
        await engine.dispose()
        raise explain_connect_failure(exc, config) from None
