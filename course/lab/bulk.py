"""Bulk writes, measured (lesson 07).

- :func:`user_rows` makes any number of new, unique ``users`` rows as dicts
  (deterministic: no clock, no randomness), :func:`iter_user_rows` the same lazily;
  :func:`iter_order_rows` makes new ``orders`` rows.
- :func:`race` runs several ways of inserting rows, each in a transaction it rolls
  back, checks that each one really inserted its rows, and returns a :class:`Race`:
  a pandas table and a matplotlib chart of rows per second.
- :func:`chunks` and :class:`Progress` feed a large input to the database in pieces
  with a progress bar (an ipywidgets bar in a notebook, a line of text elsewhere).
- :func:`engine_log` captures what ``echo=True`` would print, to read SQLAlchemy's
  own notes on a statement (such as "batch not supported").

pandas, matplotlib and ipywidgets are imported inside the functions that use
them, so importing this module (and ``course``) stays quick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..display import in_notebook, log_lines_html
from ..engines import HIDDEN
from ..recorder import record
from ..schema import User
from ..seed import COUNTRIES, REFERENCE_DATE
from .plots import Chart

#: The columns :func:`user_rows` fills, in table order (everything but ``id``).
USER_COLUMNS = (
    "email", "username", "display_name", "role", "country", "is_active",
    "created_at", "last_login", "phone", "invited_by_id",
)

#: What a contender in :func:`race` looks like: ``async def insert_rows(session, rows)``.
Inserter = Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[Any]]


def iter_user_rows(n: int, *, prefix: str = "bulk", start: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` new users as dicts, one at a time; emails and usernames start with ``prefix``.

    The values are fixed by the row number, so two runs make the same rows.
    Every row has the same keys (the ten columns of :data:`USER_COLUMNS`): a batch
    with mixed keys would be split into several statements.
    """
    for i in range(start, start + n):
        yield {
            "email": f"{prefix}{i}@example.com",
            "username": f"{prefix}_{i}",
            "display_name": f"{prefix.title()} User {i}",
            "role": "member",
            "country": COUNTRIES[i % len(COUNTRIES)],
            "is_active": i % 10 != 0,
            "created_at": REFERENCE_DATE - timedelta(days=1 + i % 700, seconds=i % 86_400),
            "last_login": None if i % 7 == 0 else REFERENCE_DATE - timedelta(hours=1 + i % 5_000),
            "phone": None if i % 3 == 0 else f"+1-555-{i % 10_000:04d}",
            "invited_by_id": None,
        }


def user_rows(n: int, *, prefix: str = "bulk", start: int = 1) -> list[dict[str, Any]]:
    """A list of ``n`` new users as dicts (see :func:`iter_user_rows`)."""
    return list(iter_user_rows(n, prefix=prefix, start=start))


def iter_order_rows(n: int, *, users: int = 500) -> Iterator[dict[str, Any]]:
    """``n`` new orders as dicts, one at a time, spread over users ``1..users``.

    Nothing refers to an order, so imported orders are cheap to delete again
    (deleting users is not: every deleted user is looked up in ``invited_by_id``).
    """
    statuses = ("paid", "shipped", "pending", "cancelled")
    for i in range(1, n + 1):
        yield {
            "user_id": 1 + (i * 7) % users,
            "status": statuses[i % len(statuses)],
            "total_cents": 500 + (i * 37) % 49_500,
            "created_at": REFERENCE_DATE - timedelta(minutes=i),
        }


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of at most ``size`` items from any iterable (a generator stays lazy)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Progress:
    """A progress bar: ``bar = Progress(total, "users")``, then ``bar.update(n)`` per chunk.

    In a notebook it is an ipywidgets ``IntProgress`` with a label; elsewhere it
    prints one line per update. ``done`` counts what was reported so far.
    """

    def __init__(self, total: int, label: str = "rows") -> None:
        self.total, self.label, self.done = total, label, 0
        self._bar: Any = None
        self._text: Any = None
        if in_notebook():
            import ipywidgets as w
            from IPython.display import display

            self._bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=label)
            self._text = w.Label(self._caption())
            display(w.HBox([self._bar, self._text]))

    def _caption(self) -> str:
        return f"{self.done:,} of {self.total:,}"

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.value = min(self.done, self.total)
            self._text.value = self._caption()
        else:
            print(f"{self.label}: {self._caption()}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.bar_style = "success" if self.done >= self.total else "warning"


class EngineLog(list[str]):
    """Lines of the engine's own log: a list, shown in a notebook the way the SQL log is."""

    title = "Engine log (what echo=True prints)"

    def matching(self, text: str) -> EngineLog:
        """Only the lines that contain ``text`` (still shown as a log)."""
        return EngineLog(line for line in self if text in line)

    def _repr_html_(self) -> str:
        return log_lines_html(list(self), self.title)


@contextmanager
def engine_log() -> Iterator[EngineLog]:
    """Collect the lines ``echo=True`` would print (logger ``sqlalchemy.engine.Engine``).

    Only connections opened inside the block log: SQLAlchemy decides whether to
    echo when a connection is checked out.
    """
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    lines = EngineLog()

    class _Collect(logging.Handler):
        def emit(self, record_: logging.LogRecord) -> None:
            lines.append(record_.getMessage())

    handler = _Collect(level=logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # keep the lines out of the notebook's stderr
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


# ---------------------------------------------------------------------------- the race


@dataclass
class Timing:
    """One contender's run: rows inserted, statements SQLAlchemy saw, seconds taken."""

    name: str
    rows: int
    seconds: float
    statements: int
    verbs: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Race(Mapping[str, Timing]):
    """The results of :func:`race`, by contender name, in the order they ran."""

    backend: str
    timings: dict[str, Timing]

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.timings)

    def __len__(self) -> int:
        return len(self.timings)

    def frame(self) -> Any:
        """A pandas table: rows, statements, seconds, rows per second, speed against the slowest."""
        import pandas as pd

        slowest = min(t.rows_per_second for t in self.timings.values())
        return pd.DataFrame(
            [
                {
                    "method": t.name,
                    "rows": t.rows,
                    "statements": t.statements,
                    "seconds": round(t.seconds, 3),
                    "rows/s": round(t.rows_per_second),
                    "x slowest": round(t.rows_per_second / slowest, 1),
                }
                for t in self.timings.values()
            ]
        ).set_index("method")

    def chart(self) -> Chart:
        """Rows per second for each contender, as a bar chart on a log scale."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter

        items = list(self.timings.values())
        fig = Figure(figsize=(10, 0.6 * len(items) + 1.6), layout="constrained")
        ax = fig.subplots()
        names = [t.name for t in items][::-1]
        speeds = [t.rows_per_second for t in items][::-1]
        bars = ax.barh(names, speeds, color="#0b5fa5")
        ax.set_xscale("log")
        ax.set_xlim(min(speeds) / 2, max(speeds) * 12)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("rows per second (log scale, longer is faster)")
        for bar, t in zip(bars, items[::-1], strict=True):
            what = f"{t.statements:,} statement{'s' if t.statements != 1 else ''}" if t.statements else "not seen by SQLAlchemy"
            ax.text(
                bar.get_width() * 1.1, bar.get_y() + bar.get_height() / 2,
                f"{t.rows_per_second:,.0f}/s · {t.rows:,} rows · {what}", va="center",
            )
        ax.set_title(f"Inserting users on {self.backend}: one run each, rolled back (timings vary)")
        chart = Chart(fig)
        chart.fit_texts(ax)  # the labels beside the bars stay inside the chart
        return chart


async def _count_users(conn: Any) -> int:
    result = await conn.execute(select(func.count()).select_from(User), execution_options={HIDDEN: True})
    return int(result.scalar_one())


async def time_insert(db: Any, name: str, insert_rows: Inserter, rows: list[dict[str, Any]]) -> Timing:
    """Run ``insert_rows(session, rows)`` once, timed, in a transaction rolled back afterwards.

    The session is bound to a connection whose transaction has already run a
    statement (the count before), so even a driver-level COPY joins it. The rows
    are counted before and after: a contender that did not insert all its rows
    raises ``AssertionError`` instead of winning the race.
    """
    async with db.engine.connect() as conn:
        await conn.begin()
        try:
            before = await _count_users(conn)
            session = AsyncSession(bind=conn, expire_on_commit=False)
            with record(show=False) as log:
                started = time.perf_counter()
                await insert_rows(session, rows)
                await session.flush()
                seconds = time.perf_counter() - started
            inserted = await _count_users(conn) - before
            await session.close()
        finally:
            await conn.rollback()
    if inserted != len(rows):
        raise AssertionError(f"{name}: {inserted:,} rows landed, {len(rows):,} were given")
    return Timing(name, len(rows), seconds, len(log.queries), [s.verb for s in log.queries])


async def race(
    db: Any,
    contenders: Sequence[tuple[str, Inserter, int]],
    *,
    warm_up: int = 20,
) -> Race:
    """Time each ``(name, insert_rows, number_of_rows)`` on fresh rows; nothing is kept.

    Each contender first inserts ``warm_up`` rows (untimed, rolled back), so
    statement compilation and the driver's prepared statements do not count
    against the first one to run.
    """
    timings: dict[str, Timing] = {}
    for name, insert_rows, n in contenders:
        if warm_up:
            await time_insert(db, name, insert_rows, user_rows(warm_up, prefix="warmup"))
        timings[name] = await time_insert(db, name, insert_rows, user_rows(n, prefix="race"))
    return Race(db.backend, timings)
