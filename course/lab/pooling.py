"""Lesson 09's instruments: watch a connection pool, load it, draw what happened.

- :class:`PoolWatch` listens to a pool's events (``connect``, ``checkout``,
  ``checkin``, ``close``, ``invalidate``) and keeps counts, the peak number of
  connections checked out at once, and which task held which connection when.
- :func:`run_burst` starts N tasks at once, each opening a session, running one
  statement and holding its connection for ``hold`` seconds; it returns a
  :class:`BurstResult` (counts, a per-task table, a timeline chart).
- :func:`scenario` does the same on a fresh engine with the pool settings you
  give, and disposes of it afterwards.
- :func:`playground` is an ipywidgets panel around :func:`scenario`.
- :func:`drop_idle_connection` ends a pooled connection behind the pool's back
  (``pg_terminate_backend`` on PostgreSQL; on SQLite, which has no server, the
  driver connection is closed), and :class:`PingCounter` counts pre-pings.

Everything a lesson asserts comes from the order of pool events (how many
tasks succeeded, timed out, waited for a returned connection; the peak), never
from wall-clock durations, which only feed tables and charts.

pandas, matplotlib and ipywidgets are imported inside the functions that use them.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import Pool

from .plots import MIN_FONT_PT, Chart

#: Which burst task is running (a context variable reaches pool events through SQLAlchemy's greenlets).
_TASK: contextvars.ContextVar[int | None] = contextvars.ContextVar("course_pool_task", default=None)
#: The code a scoped :class:`PoolWatch` follows (tasks it starts inherit the value).
SCOPE: contextvars.ContextVar[object | None] = contextvars.ContextVar("course_pool_scope", default=None)

_RECORD_KEYS = itertools.count(1)


def _record_key(record: Any) -> int | None:
    """A number that names a pool's connection record for good (``id()`` can be reused)."""
    if record is None:
        return None
    return record.info.setdefault("course_record", next(_RECORD_KEYS))


@dataclass
class PoolEvent:
    """One pool event: when (seconds since the watch started), what, for which task, on which connection."""

    at: float
    kind: str
    task: int | None
    connection: int | None
    record: int | None = None  # which of the pool's connection records


class PoolWatch:
    """Count a pool's events while it is attached: ``with PoolWatch(engine) as watch: ...``.

    ``target`` is an engine (async or sync) or a pool; ``connects``, ``checkouts``,
    ``checkins``, ``closes`` and ``invalidations`` count events, ``checked_out`` is
    the number of connections out right now and ``peak`` the most at once.

    ``scope``: count only events from code running with ``SCOPE`` set to this
    object (and the tasks it started), e.g. when watching every pool (the ``Pool``
    class) while other code may still be using pools of its own.
    """

    def __init__(self, target: Any, *, scope: object | None = None) -> None:
        self.target = getattr(target, "sync_engine", target)
        self.scope = scope
        self.events: list[PoolEvent] = []
        self.checked_out = 0
        self.peak = 0
        self._started = time.perf_counter()
        self._next_number = 0
        self._listeners = {
            "connect": self._on_connect,
            "checkout": self._on_checkout,
            "checkin": self._on_checkin,
            "close": self._on_close,
            "invalidate": self._on_invalidate,
        }
        self._attached = False

    # ------------------------------------------------------------- attach / detach
    def attach(self) -> PoolWatch:
        if not self._attached:
            for name, fn in self._listeners.items():
                event.listen(self.target, name, fn)
            self._attached = True
        return self

    def detach(self) -> None:
        if self._attached:
            for name, fn in self._listeners.items():
                event.remove(self.target, name, fn)
            self._attached = False

    def __enter__(self) -> PoolWatch:
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    # ------------------------------------------------------------- counts
    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    @property
    def connects(self) -> int:
        """New DBAPI connections opened (a pool that reuses well opens few)."""
        return self.count("connect")

    @property
    def checkouts(self) -> int:
        return self.count("checkout")

    @property
    def checkins(self) -> int:
        return self.count("checkin")

    @property
    def closes(self) -> int:
        """Connections the pool closed (overflow returned to a full pool, recycled, disposed, ...)."""
        return self.count("close")

    @property
    def invalidations(self) -> int:
        return self.count("invalidate")

    def summary(self) -> dict[str, int]:
        return {
            "connects": self.connects,
            "checkouts": self.checkouts,
            "checkins": self.checkins,
            "closes": self.closes,
            "invalidations": self.invalidations,
            "peak": self.peak,
        }

    def __repr__(self) -> str:
        return "<PoolWatch " + " ".join(f"{k}={v}" for k, v in self.summary().items()) + ">"

    # ------------------------------------------------------------- listeners
    def _ours(self) -> bool:
        return self.scope is None or SCOPE.get() is self.scope

    def _add(self, kind: str, record: Any) -> None:
        number = record.info.get("course_connection") if record is not None else None
        self.events.append(
            PoolEvent(time.perf_counter() - self._started, kind, _TASK.get(), number, _record_key(record))
        )

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        if not self._ours():
            return
        self._next_number += 1
        record.info["course_connection"] = self._next_number
        self._add("connect", record)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not self._ours():
            return
        record.info.setdefault("course_watched", set()).add(id(self))
        self.checked_out += 1
        self.peak = max(self.peak, self.checked_out)
        self._add("checkout", record)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        # a checkin counts when this watch saw the checkout (it may happen in another context)
        watched = record.info.get("course_watched", set()) if record is not None else set()
        if id(self) not in watched:
            return
        watched.discard(id(self))
        self.checked_out -= 1
        self._add("checkin", record)

    def _on_close(self, dbapi_connection: Any, record: Any) -> None:
        if self._ours():
            self._add("close", record)

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        if self._ours():
            self._add("invalidate", record)


# ----------------------------------------------------------------- one burst


@dataclass
class TaskRun:
    """What happened to one task of a burst (times in seconds since the burst started)."""

    task: int
    requested: float
    outcome: str = "ok"  # "ok", "timeout" or an exception's class name
    acquired: float | None = None
    released: float | None = None
    failed: float | None = None
    connection: int | None = None
    waited_for_return: bool = False  # got a connection another task had returned during the burst
    error: BaseException | None = field(default=None, repr=False)


@dataclass
class BurstResult:
    """Counts, per-task rows and a timeline of one burst against one pool."""

    settings: dict[str, Any]
    tasks: list[TaskRun]
    pool: dict[str, int]  # PoolWatch.summary() for the burst
    seconds: float
    backend: str = ""

    @property
    def succeeded(self) -> int:
        return sum(1 for t in self.tasks if t.outcome == "ok")

    @property
    def timed_out(self) -> int:
        return sum(1 for t in self.tasks if t.outcome == "timeout")

    @property
    def failed(self) -> int:
        """Tasks that failed for another reason than a pool timeout."""
        return len(self.tasks) - self.succeeded - self.timed_out

    @property
    def waited(self) -> int:
        """Tasks that got their connection only when another task returned one."""
        return sum(1 for t in self.tasks if t.outcome == "ok" and t.waited_for_return)

    @property
    def peak(self) -> int:
        """The most connections checked out at the same time."""
        return self.pool["peak"]

    @property
    def connects(self) -> int:
        return self.pool["connects"]

    @property
    def overflow(self) -> int:
        """Connections beyond ``pool_size`` that were in use at the peak."""
        size = self.settings.get("pool_size")
        return max(0, self.peak - size) if isinstance(size, int) else 0

    def counts(self) -> dict[str, int]:
        return {
            "tasks": len(self.tasks),
            "succeeded": self.succeeded,
            "waited": self.waited,
            "timeouts": self.timed_out,
            "other errors": self.failed,
            "peak checked out": self.peak,
            "overflow used": self.overflow,
            "connections opened": self.connects,
            "closed by the pool": self.pool["closes"],
        }

    def frame(self) -> Any:
        """One row per task: when it asked, how long it waited and held, which connection, the outcome."""
        import pandas as pd

        rows = []
        for t in self.tasks:
            end_wait = t.acquired if t.acquired is not None else t.failed
            rows.append(
                {
                    "task": t.task,
                    "waited (ms)": None if end_wait is None else round((end_wait - t.requested) * 1000),
                    "held (ms)": None if t.acquired is None or t.released is None
                    else round((t.released - t.acquired) * 1000),
                    "connection": f"#{t.connection}" if t.connection else "",
                    "outcome": t.outcome,
                }
            )
        return pd.DataFrame(rows).astype({"waited (ms)": "Int64", "held (ms)": "Int64"}).set_index("task")

    def chart(self) -> Chart:
        return timeline(self)

    def describe(self) -> str:
        s = self.settings
        limits = ", ".join(f"{k}={s[k]}" for k in ("pool_size", "max_overflow", "pool_timeout") if k in s)
        return f"{len(self.tasks)} tasks holding a connection {s.get('hold')} s each; pool: {limits or s.get('pool')}"

    def _summary_html(self) -> str:
        counts = " · ".join(
            f'<span class="course-pool-count">{html.escape(k)}: {v}</span>' for k, v in self.counts().items()
        )
        return (
            f'<div class="course-pool-result"><div>{html.escape(self.describe())}</div>'
            f"<div>{counts}</div></div>"
        )

    def _table_html(self) -> str:
        from ..display import STYLE

        table = self.frame().to_html(border=0, na_rep="–", classes="course-table")
        return f'{STYLE}<div class="course-pool-table">{table}</div>'

    def _repr_html_(self) -> str:
        return f"{self._summary_html()}{self._table_html()}"

    def __repr__(self) -> str:
        return f"<BurstResult {self.counts()}>"


async def run_burst(
    engine: AsyncEngine,
    tasks: int,
    hold: float,
    *,
    settings: dict[str, Any] | None = None,
    statement: str = "SELECT 1",
) -> BurstResult:
    """Start ``tasks`` tasks at once; each opens a session, runs ``statement`` and keeps
    its connection for ``hold`` seconds. Pool timeouts and other errors are caught
    and reported per task, never raised."""
    watch = PoolWatch(engine)
    runs = [TaskRun(task=i, requested=0.0) for i in range(tasks)]

    async def one(run: TaskRun) -> None:
        _TASK.set(run.task)
        run.requested = time.perf_counter() - watch._started
        try:
            async with AsyncSession(engine) as session:
                await session.execute(text(statement))  # checks a connection out of the pool
                await asyncio.sleep(hold)  # ...and keeps it while the task does other work
        except sa_exc.TimeoutError as error:
            run.outcome, run.error = "timeout", error
            run.failed = time.perf_counter() - watch._started
        except Exception as error:  # reported in the table, not raised
            run.outcome, run.error = type(error).__name__, error
            run.failed = time.perf_counter() - watch._started

    began = time.perf_counter()
    with watch:
        await asyncio.gather(*(one(r) for r in runs))
    seconds = time.perf_counter() - began

    returned: set[int | None] = set()  # connection records checked in so far
    for e in watch.events:
        if e.kind == "checkin":
            returned.add(e.record)
        if e.task is None or not 0 <= e.task < tasks:
            continue
        run = runs[e.task]
        if e.kind == "checkout" and run.acquired is None:
            run.acquired, run.connection = e.at, e.connection
            # a connection another task gave back: this task had to wait for it
            run.waited_for_return = e.record in returned
        elif e.kind == "checkin" and run.released is None:
            run.released = e.at
    pool = engine.pool
    info = dict(settings or {})
    info.setdefault("pool", type(pool).__name__)
    info.setdefault("hold", hold)
    if hasattr(pool, "size") and "pool_size" not in info:
        info.update(pool_size=pool.size(), max_overflow=pool._max_overflow, pool_timeout=pool.timeout())
    return BurstResult(info, runs, watch.summary(), seconds, engine.dialect.name)


async def scenario(
    db: Any,
    *,
    pool_size: int = 2,
    max_overflow: int = 1,
    pool_timeout: float = 1.0,
    tasks: int = 5,
    hold: float = 0.4,
    **engine_kw: Any,
) -> BurstResult:
    """A burst on a fresh engine with these pool settings (``db.create_engine``), disposed of afterwards."""
    engine = db.create_engine(
        pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout, **engine_kw
    )
    settings = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    try:
        return await run_burst(engine, tasks, hold, settings=settings)
    finally:
        await engine.dispose()


# ----------------------------------------------------------------- the chart


def timeline(result: BurstResult) -> Chart:
    """One row per task: grey while it waits for a connection, blue while it holds one
    (labelled with the connection's number), red where the pool gave up on it. Below,
    how many connections were checked out over time, against the pool's limits."""
    from matplotlib.figure import Figure

    tasks = result.tasks
    end = max(
        [result.seconds]
        + [t.released or 0 for t in tasks]
        + [t.failed or 0 for t in tasks]
    )
    fig = Figure(figsize=(10, 0.36 * len(tasks) + 3.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[max(len(tasks), 3), 2.2])
    for t in tasks:
        y = t.task
        wait_end = t.acquired if t.acquired is not None else t.failed
        if wait_end is not None and wait_end > t.requested:
            top.broken_barh([(t.requested, wait_end - t.requested)], (y - 0.35, 0.7), color="#bdbdbd")
        if t.acquired is not None:
            released = t.released if t.released is not None else end
            top.broken_barh([(t.acquired, released - t.acquired)], (y - 0.35, 0.7), color="#0b5fa5")
            if t.connection:
                top.text(t.acquired + 0.01, y, f"#{t.connection}", va="center", color="white", fontsize=MIN_FONT_PT)
        if t.outcome != "ok" and t.failed is not None:
            top.plot([t.failed], [y], marker="X", color="#c62828", markersize=9)
            top.text(t.failed + 0.02, y, t.outcome, va="center", color="#c62828", fontsize=MIN_FONT_PT)
    top.set_yticks(range(len(tasks)), [f"task {t.task}" for t in tasks])
    top.invert_yaxis()
    top.set_title(
        f"{result.describe()} ({result.backend})\n"
        "grey: waiting for a connection · blue: holding connection #n · X: gave up",
        fontsize=MIN_FONT_PT,
    )

    # checked-out connections over time, from the checkout/checkin events
    steps_t, steps_n, n = [0.0], [0], 0
    for t in sorted(
        [(x.acquired, 1) for x in tasks if x.acquired is not None]
        + [(x.released, -1) for x in tasks if x.released is not None]
    ):
        n += t[1]
        steps_t.append(t[0])
        steps_n.append(n)
    steps_t.append(end)
    steps_n.append(n)
    bottom.step(steps_t, steps_n, where="post", color="#0b5fa5")
    size = result.settings.get("pool_size")
    overflow = result.settings.get("max_overflow")
    if isinstance(size, int):
        limits = {size: f"pool_size ({size})"}
        bottom.axhline(size, color="#2e7d32", linestyle="--", linewidth=1)
        if isinstance(overflow, int) and overflow > 0:
            bottom.axhline(size + overflow, color="#c62828", linestyle=":", linewidth=1)
            limits[size + overflow] = f"+ max_overflow ({size + overflow})"
        right = bottom.secondary_yaxis("right")
        right.set_yticks(list(limits), list(limits.values()))
        right.tick_params(labelsize=MIN_FONT_PT)
    bottom.set_ylabel("checked out")
    bottom.set_ylim(0, max(result.peak, (size or 0) + (overflow or 0)) + 1.2)
    bottom.set_xlabel("seconds since the burst started (timings vary from run to run)")
    chart = Chart(fig)
    chart.fit_texts(top)  # a late 'timeout' label stays inside the chart
    return chart


# ----------------------------------------------------------------- the playground


class PoolPlayground:
    """Sliders for the pool settings and the load, a Run button, and the result.

    Widget descriptions are stable (``pool_size``, ``max_overflow``, ``pool_timeout``,
    ``tasks``, ``hold``; the button says ``Run``) and so are the classes (the panel
    ``course-pool-playground``, each slider ``course-pool-<name>``, the button
    ``course-pool-run``); the result carries ``class="course-pool-result"``, so a
    browser test can drive it. ``result`` is the last :class:`BurstResult`;
    ``pending`` the run a click started.
    """

    def __init__(self, db: Any, **values: Any) -> None:
        import ipywidgets as w

        self.db = db
        self.result: BurstResult | None = None
        self.pending: asyncio.Future[Any] | None = None
        style = {"description_width": "100px"}
        layout = w.Layout(width="420px")
        self.controls = {
            "pool_size": w.IntSlider(values.get("pool_size", 2), min=1, max=10, description="pool_size"),
            "max_overflow": w.IntSlider(values.get("max_overflow", 1), min=0, max=10, description="max_overflow"),
            "pool_timeout": w.FloatSlider(
                values.get("pool_timeout", 1.0), min=0.1, max=3.0, step=0.1, description="pool_timeout"
            ),
            "tasks": w.IntSlider(values.get("tasks", 5), min=1, max=20, description="tasks"),
            "hold": w.FloatSlider(values.get("hold", 0.4), min=0.1, max=2.0, step=0.1, description="hold"),
        }
        for name, control in self.controls.items():
            control.style = style
            control.layout = layout
            # the value only matters when Run is pressed. A slider that updates continuously
            # sends its value snapped to the step grid (0.3 -> 0.30000000000000004) as soon as
            # it is drawn, with Run All while the next (async) cell runs; ipykernel 7.4 handles
            # such a message without a busy/idle status, and ipywidgets then holds back every
            # later change of that slider: Run would use a stale value
            control.continuous_update = False
            control.add_class(f"course-pool-{name}")
        self.run_button = w.Button(description="Run", button_style="primary", tooltip="run the burst")
        self.run_button.add_class("course-pool-run")
        self.run_button.on_click(self._clicked)
        # the sliders in a row that wraps, the result below them with the notebook's whole width,
        # so its chart is as wide (and its text as large) as a chart in an output cell
        self.output = w.HTML(value="<i>not run yet</i>", layout=w.Layout(width="100%", overflow="auto"))
        controls = w.HBox(
            [*self.controls.values(), self.run_button],
            layout=w.Layout(flex_flow="row wrap", align_items="center", grid_gap="2px 16px"),
        )
        self.widget = w.VBox([controls, self.output], layout=w.Layout(width="100%"))
        self.widget.add_class("course-pool-playground")

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    async def run(self) -> BurstResult:
        """Run the burst with the sliders' values and show the result."""
        self.run_button.disabled = True
        self.output.value = "<i>running…</i>"
        try:
            result = await scenario(self.db, **self.values())
        except Exception as error:  # shown in the panel: a callback has nowhere else to report
            self.output.value = (
                f'<div class="course-pool-result course-pool-error"><b>{html.escape(type(error).__name__)}</b>: '
                f"{html.escape(str(error)[:300])}</div>"
            )
            raise
        finally:
            self.run_button.disabled = False
        self.result = result
        self.output.value = result._summary_html() + result.chart().html("pool timeline") + result._table_html()
        return result

    def _clicked(self, _button: Any) -> None:
        # widget callbacks are plain functions: schedule the run on the kernel's loop
        if self.pending is not None and not self.pending.done():
            return
        self.pending = asyncio.ensure_future(self.run())
        self.pending.add_done_callback(_quiet)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _quiet(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # already shown in the panel; do not log it again


async def playground(db: Any, **values: Any) -> PoolPlayground:
    """The pool playground, after one run with its starting values (so the cell shows a result)."""
    panel = PoolPlayground(db, **values)
    await panel.run()
    return panel


# ----------------------------------------------------------------- dropping a connection


async def drop_idle_connection(engine: AsyncEngine, *, killer: AsyncEngine | None = None) -> None:
    """End the connection ``engine``'s pool hands out next, behind the pool's back.

    A connection is checked out, identified and returned to the pool (idle, as a
    connection is between two requests); then it is ended the way a server restart, a
    proxy or a firewall would end it. On PostgreSQL another engine (``killer``) runs
    ``pg_terminate_backend`` aimed at that connection's pid only; on SQLite there is no
    server, so the driver connection is closed under the pool's feet.
    """
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        else:
            driver = (await conn.get_raw_connection()).driver_connection
    if engine.dialect.name == "postgresql":
        if killer is None:
            raise ValueError("on PostgreSQL, pass killer=: another engine on the same server")
        await terminate_backend(killer, pid)
    else:
        await driver.close()


async def terminate_backend(engine: AsyncEngine, pid: int) -> None:
    """PostgreSQL: ``pg_terminate_backend(pid)`` from ``engine``, then wait until that backend is gone."""
    from ..engines import HIDDEN

    async with engine.connect() as conn:
        conn = await conn.execution_options(**{HIDDEN: True})
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await conn.commit()
    await backend_gone(engine, pid)


async def backend_gone(engine: AsyncEngine, pid: int, *, timeout: float = 5.0) -> bool:
    """PostgreSQL: wait until the backend ``pid`` has left ``pg_stat_activity`` (True), or ``timeout``."""
    from ..engines import HIDDEN

    deadline = time.perf_counter() + timeout
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{HIDDEN: True})
        while True:
            left = (
                await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
            ).scalar_one()
            await conn.rollback()  # pg_stat_activity is a snapshot per transaction: take a new one
            if not left:
                return True
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.01)


async def close_discarded_pool(pool: Pool) -> None:
    """Close the connections parked in a pool that ``engine.dispose()`` replaced.

    A connection checked out during ``dispose()`` goes back to the old pool and stays open;
    garbage collection closes it eventually, with a ResourceWarning. A pool is synchronous
    code whose driver calls are awaited inside, so it runs in SQLAlchemy's greenlet bridge.
    """
    from sqlalchemy.util import greenlet_spawn

    await greenlet_spawn(pool.dispose)


# ----------------------------------------------------------------- counting pre-pings


class PingCounter:
    """Count the pings ``pool_pre_ping`` sends: ``with PingCounter(engine) as pings: ... pings.count``.

    A ping is not a statement SQLAlchemy's cursor events see (the dialect sends it on
    the raw connection), so this wraps the engine's own dialect's ``do_ping`` for the
    duration of the block. A teaching instrument, not something to ship.
    """

    def __init__(self, engine: Any) -> None:
        self.dialect = getattr(engine, "sync_engine", engine).dialect
        self.count = 0
        self.failed = 0

    def __enter__(self) -> PingCounter:
        original = type(self.dialect).do_ping

        def counting(dbapi_connection: Any) -> bool:
            self.count += 1
            try:
                return original(self.dialect, dbapi_connection)
            except Exception:
                self.failed += 1
                raise

        self.dialect.do_ping = counting  # an attribute on this engine's dialect only
        return self

    def __exit__(self, *exc: Any) -> None:
        self.dialect.__dict__.pop("do_ping", None)
