"""``db = await course.start("06")``: a fresh, seeded database for one notebook.

The handle carries what a lesson needs: the engine, a session factory, the
backend's name, and helpers to make more engines on the same database (for the
pooling lesson) or to reset it. Calling ``start`` again resets everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import config as cfg
from . import seed as seeding
from .engines import check_reachable, make_engine, sqlite_path
from .recorder import instrument
from .schema import TABLES_IN_LOAD_ORDER, Base

_open: dict[str, CourseDB] = {}
_current: CourseDB | None = None


@dataclass
class CourseDB:
    """One notebook's database: engine, sessions, and what it was seeded with."""

    lesson: str
    namespace: str
    config: cfg.BackendConfig
    engine: AsyncEngine
    session: async_sessionmaker[AsyncSession]
    sqlite_file: Path | None = None
    seeded: dict[str, int] = field(default_factory=dict)
    seed_seconds: float = 0.0
    scale: float = 1.0
    _extra_engines: list[AsyncEngine] = field(default_factory=list, repr=False)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.config.backend

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.backend == "postgresql"

    def create_engine(self, **engine_kw: Any) -> AsyncEngine:
        """Another engine on this notebook's database, with your own pool settings.

        It is configured like the course's engine (SQLite pragmas and real
        transactions, PostgreSQL ``search_path``), recorded by ``course.sql()``,
        and disposed of when the notebook is reset.
        """
        engine = make_engine(
            self.config, self.namespace, sqlite_file=self.sqlite_file, **engine_kw
        )
        instrument(engine)
        self._extra_engines.append(engine)
        return engine

    async def counts(self) -> dict[str, int]:
        """Rows per table, read from the database now."""
        out = {}
        async with self.engine.connect() as conn:
            for table in TABLES_IN_LOAD_ORDER:
                out[table] = (await conn.execute(select(func.count()).select_from(text(table)))).scalar_one()
        return out

    async def frame(self, statement: Any, **params: Any) -> Any:
        """Run a statement in a short-lived session and return the rows as a DataFrame."""
        from .frames import frame

        async with self.session() as session:
            return frame(await session.execute(statement, params or None))

    async def reset(self, *, scale: float | None = None) -> CourseDB:
        """Drop and re-seed this notebook's database; returns the new handle."""
        return await start(self.lesson, scale=self.scale if scale is None else scale)

    async def discard(self) -> None:
        """Close this database and remove it (schema or file) for good."""
        await drop(self.namespace)

    async def close(self) -> None:
        for engine in [*self._extra_engines, self.engine]:
            await engine.dispose()
        self._extra_engines.clear()

    def _repr_html_(self) -> str:
        from .display import box, esc

        counts = ", ".join(f"{n:,} {t}" for t, n in self.seeded.items())
        body = (
            f"<div>{esc(self.config.label)} · namespace <code>{esc(self.namespace)}</code></div>"
            f"<div>seeded {esc(counts)}</div>"
        )
        return box("ok", f"Lesson {self.lesson} is ready", body, css="course-banner")

    def __repr__(self) -> str:
        return f"<CourseDB lesson={self.lesson!r} backend={self.backend!r} namespace={self.namespace!r}>"


async def _prepare_schema(engine: AsyncEngine, backend: str, namespace: str) -> None:
    from .engines import HIDDEN

    async with engine.begin() as conn:
        conn = await conn.execution_options(**{HIDDEN: True})
        if backend == "postgresql":
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
            await conn.exec_driver_sql(f'CREATE SCHEMA "{namespace}"')
            # whose it is, for `python -m course admin` (the name alone is ambiguous: course_ann_b_...
            # may be ann's or ann_b's); the comment holds only [a-z0-9_=] and a space
            await conn.exec_driver_sql(f"""COMMENT ON SCHEMA "{namespace}" IS '{cfg.owner_comment()}'""")
        await conn.run_sync(Base.metadata.create_all)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def start(lesson: str = "00", *, scale: float = 1.0, seed: bool = True) -> CourseDB:
    """Give this notebook a fresh, seeded database and return its handle.

    ``lesson`` names the notebook ("00", "06", ...). ``scale`` multiplies the
    sample data (1 = 500 users, 5,000 posts, 20,000 comments). Running it
    again resets everything: engines from the previous run are disposed of.
    """
    global _current
    db = await _build(lesson, cfg.namespace_for(lesson), scale=scale, seed=seed)
    _current = db
    return db


async def open_scratch(lesson: str, *, scale: float = 1.0) -> CourseDB:
    """A throwaway seeded database beside the notebook's (for checking answers that
    open their own sessions); it does not replace the notebook's handle."""
    return await _build(lesson, cfg.namespace_for(lesson, variant="scratch"), scale=scale, seed=True)


async def _build(lesson: str, namespace: str, *, scale: float, seed: bool) -> CourseDB:
    config = cfg.resolve_backend()
    previous = _open.pop(namespace, None)
    if previous is not None:
        await previous.close()

    sqlite_file = None
    if config.backend == "sqlite":
        sqlite_file = sqlite_path(namespace, cfg.data_dir())
        _remove_sqlite_files(sqlite_file)
    engine = make_engine(config, namespace, sqlite_file=sqlite_file)
    if config.backend == "postgresql":
        await check_reachable(engine, config)
    instrument(engine)

    began = time.perf_counter()
    await _prepare_schema(engine, config.backend, namespace)
    seeded: dict[str, int] = {}
    if seed:
        async with engine.connect() as conn:
            seeded = await seeding.load(conn, config.backend, namespace, scale)
    db = CourseDB(
        lesson=lesson,
        namespace=namespace,
        config=config,
        engine=engine,
        session=async_sessionmaker(engine, expire_on_commit=False),
        sqlite_file=sqlite_file,
        seeded=seeded,
        seed_seconds=time.perf_counter() - began,
        scale=scale,
    )
    _open[namespace] = db
    return db


def current() -> CourseDB:
    """The handle of the last ``start()`` in this kernel."""
    if _current is None:
        from .errors import CourseError

        raise CourseError(
            "No course database has been started in this notebook yet.",
            hint='Run the setup cell at the top: db = await course.start("NN")',
        )
    return _current


async def drop(namespace: str) -> None:
    """Remove one namespace's schema or file (used by tests and instructors)."""
    config = cfg.resolve_backend()
    db = _open.pop(namespace, None)
    if db is not None:
        await db.close()
    if config.backend == "sqlite":
        _remove_sqlite_files(sqlite_path(namespace, cfg.data_dir()))
        return
    engine = make_engine(config, "public")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    finally:
        await engine.dispose()
