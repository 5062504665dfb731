"""Relationship loader strategies, measured (lesson 06).

- :func:`statements_for` loads ``parents`` rows of an entity, follows one
  relationship path (``"posts.comments"``) with one strategy, and returns what it
  cost: the recorded SQL, the number of statements and rows, or the error.
- :func:`measure` runs several ways of doing the same task, each in a fresh
  session, and gives a pandas table and a matplotlib chart of statements, rows
  and time.
- :func:`explorer` is an ipywidgets explorer: choose the entity, the path and the
  strategy, and see the statements update live.

pandas, matplotlib and ipywidgets are imported inside the functions that use
them, so importing this module (and ``course``) stays quick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import immediateload, joinedload, raiseload, selectinload, subqueryload

from ..display import esc, sql_log_html
from ..recorder import SqlLog
from ..recorder import record as _record
from ..schema import Comment, Post, Tag, User
from .plots import Chart  # re-exported: lessons build charts from here

#: The entities the explorer offers, and the relationship paths from each one.
ENTITIES: dict[str, type] = {"User": User, "Post": Post, "Comment": Comment, "Tag": Tag}
PATHS: dict[str, tuple[str, ...]] = {
    "User": ("posts", "posts.comments", "posts.tags", "orders", "invited_by", "invitees"),
    "Post": ("author", "comments", "tags", "comments.author"),
    "Comment": ("author", "post", "replies", "post.author"),
    "Tag": ("posts", "posts.author"),
}

#: Strategy name -> loader option function (``lazy`` is the mapping's default: no option).
STRATEGIES: dict[str, Callable[..., Any] | None] = {
    "lazy": None,
    "selectinload": selectinload,
    "joinedload": joinedload,
    "subqueryload": subqueryload,
    "immediateload": immediateload,
    "raiseload": raiseload,
}

#: Statements shown in the explorer's SQL table; the count always covers all of them.
SHOWN_STATEMENTS = 12


@dataclass
class LoaderRun:
    """What loading one path with one strategy cost."""

    entity: str
    path: str
    strategy: str
    parents: int
    code: str
    log: SqlLog
    related: int = 0  # related objects reached at the end of the path
    error: str | None = None
    seconds: float = 0.0

    @property
    def statements(self) -> int:
        """Queries sent (transaction control left out)."""
        return len(self.log.queries)

    @property
    def rows(self) -> int:
        """Rows the database sent back, over all statements."""
        return self.log.rows

    def summary_html(self) -> str:
        """One line with the count; ``class="course-loader-count"`` for tests and styles."""
        outcome = (
            f" · <span class='course-loader-error'>raised: {esc(self.error)}</span>"
            if self.error
            else f" · {self.related:,} related objects reached"
        )
        return (
            f'<div class="course-loader-count" data-statements="{self.statements}">'
            f"<b>{self.statements}</b> statement{'s' if self.statements != 1 else ''} · "
            f"{self.rows:,} rows{outcome}</div>"
            f"<div><code>{esc(self.code)}</code></div>"
        )

    def sql_html(self, limit: int = SHOWN_STATEMENTS) -> str:
        """The recorder's table (``class="course-sql-log"``), cut after ``limit`` statements."""
        queries = self.log.queries
        shown = SqlLog(title=self.log.title, statements=queries[:limit])
        more = len(queries) - limit
        tail = f"<div>… and {more:,} more statement{'s' if more != 1 else ''}</div>" if more > 0 else ""
        return sql_log_html(shown) + tail

    def _repr_html_(self) -> str:
        return self.summary_html() + self.sql_html()

    def __repr__(self) -> str:
        return (
            f"<LoaderRun {self.entity}.{self.path} {self.strategy}: {self.statements} statements, "
            f"{self.rows} rows{', raised' if self.error else ''}>"
        )


def loader_option(entity: str, path: str, strategy: str) -> tuple[Any, str]:
    """(the loader option for ``entity`` along ``path`` with ``strategy``, its code as text).

    The option is ``None`` for ``"lazy"``: the mapping's default, ``lazy="select"``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    fn = STRATEGIES[strategy]
    cls = ENTITIES[entity]
    option: Any = None
    parts = []
    for name in path.split("."):
        attr = getattr(cls, name)
        parts.append(f"{strategy}({cls.__name__}.{name})")
        if fn is not None:
            option = fn(attr) if option is None else getattr(option, strategy)(attr)
        cls = attr.property.mapper.class_
    return option, ".".join(parts) if fn is not None else "(no option: the default lazy='select')"


def _statement(entity: str, path: str, strategy: str, parents: int) -> tuple[Any, str]:
    cls = ENTITIES[entity]
    option, code = loader_option(entity, path, strategy)
    stmt = select(cls).order_by(cls.id).limit(parents)
    text_ = f"select({entity})"
    if option is not None:
        stmt = stmt.options(option)
        text_ += f".options({code})"
    text_ += f".order_by({entity}.id).limit({parents})"
    if strategy == "joinedload":
        text_ += "  # then result.unique()"
    return stmt, text_ if option is not None else f"{text_}  # {code}"


async def _follow(objects: list[Any], names: Sequence[str]) -> int:
    """Touch each relationship along ``names`` (``awaitable_attrs``: a lazy load is allowed)."""
    for name in names:
        reached: list[Any] = []
        for obj in objects:
            value = await getattr(obj.awaitable_attrs, name)
            if value is None:
                continue
            reached.extend(value if isinstance(value, list) else [value])
        objects = reached
    return len(objects)


async def statements_for(
    entity: str,
    path: str,
    strategy: str,
    *,
    parents: int = 10,
    db: Any = None,
) -> LoaderRun:
    """Load the first ``parents`` rows of ``entity`` (by id), follow ``path`` with ``strategy``.

    Each relationship is then read with ``await obj.awaitable_attrs.name`` (what a
    lazy load needs in async code; free when the loader already filled it). The
    result says what it cost; an error (raiseload) is caught and named.
    """
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; choose one of {', '.join(ENTITIES)}")
    if path not in PATHS[entity]:
        raise ValueError(f"{entity} has no path {path!r} here; choose one of {', '.join(PATHS[entity])}")
    if db is None:
        from ..database import current

        db = current()
    stmt, code = _statement(entity, path, strategy, parents)
    run = LoaderRun(entity, path, strategy, parents, code, SqlLog())
    began = time.perf_counter()
    with _record(f"{entity}.{path} with {strategy}", show=False) as log:
        run.log = log
        async with db.session() as session:
            try:
                result = await session.scalars(stmt)
                if strategy == "joinedload":
                    result = result.unique()
                objects = list(result.all())
                run.related = await _follow(objects, path.split("."))
            except Exception as exc:  # raiseload, by design: named in the summary
                run.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    run.seconds = time.perf_counter() - began
    return run


# ------------------------------------------------------------------ measuring


@dataclass
class Measurement:
    name: str
    statements: int
    rows: int
    seconds: float  # best of the runs
    result: Any = None
    log: SqlLog = field(default_factory=SqlLog)


@dataclass
class Comparison:
    """Several ways of doing one task: statements, rows and time of each."""

    measurements: list[Measurement]

    def __getitem__(self, name: str) -> Measurement:
        return next(m for m in self.measurements if m.name == name)

    @property
    def results(self) -> dict[str, Any]:
        return {m.name: m.result for m in self.measurements}

    def table(self) -> Any:
        """A DataFrame: one row per approach (time in milliseconds, best of the runs)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {"approach": m.name, "statements": m.statements, "rows": m.rows, "ms": round(m.seconds * 1000, 1)}
                for m in self.measurements
            ]
        ).set_index("approach")

    def chart(self, title: str = "") -> Chart:
        """Statements, rows and time side by side (statements on a log scale).

        Returns a :class:`Chart`: it displays as a PNG whatever the matplotlib backend,
        and ``.figure`` is the matplotlib Figure, to adjust or save.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter

        names = [m.name for m in self.measurements]
        metrics = [
            ("statements", [m.statements for m in self.measurements], True),
            ("rows transferred", [m.rows for m in self.measurements], False),
            ("time (ms, best run)", [m.seconds * 1000 for m in self.measurements], False),
        ]
        fig = Figure(figsize=(11, 0.45 * len(names) + 1.4), layout="constrained")
        axes = fig.subplots(1, 3, sharey=True)
        for ax, (label, values, log_scale) in zip(axes, metrics, strict=True):
            bars = ax.barh(names, values, color="#0b5fa5")
            if log_scale:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.set_title(label)
            whole = all(float(v).is_integer() for v in values)
            ax.bar_label(bars, labels=[f"{v:,.0f}" if whole or v >= 10 else f"{v:.1f}" for v in values],
                         padding=2)
            ax.margins(x=0.25)
        axes[0].invert_yaxis()  # first approach on top (the y axis is shared)
        if title:
            fig.suptitle(title)
        return Chart(fig)

    def _repr_html_(self) -> str:
        return self.table().to_html()


async def measure(
    approaches: dict[str, Callable[[AsyncSession], Awaitable[Any]]],
    *,
    db: Any = None,
    repeat: int = 3,
) -> Comparison:
    """Run each ``async def approach(session)`` ``repeat`` times, each in a fresh session.

    Statements and rows come from the first run (they are the same every run);
    the time is the best run. ``result`` is what the approach returned.
    """
    if db is None:
        from ..database import current

        db = current()
    out = []
    for name, approach in approaches.items():
        best = float("inf")
        first: Measurement | None = None
        for _ in range(max(1, repeat)):
            with _record(name, show=False) as log:
                began = time.perf_counter()
                async with db.session() as session:
                    result = await approach(session)
                elapsed = time.perf_counter() - began
            best = min(best, elapsed)
            if first is None:
                first = Measurement(name, len(log.queries), log.rows, 0.0, result, log)
        assert first is not None
        first.seconds = best
        out.append(first)
    return Comparison(out)


# ------------------------------------------------------------------ the explorer


class LoaderExplorer:
    """Widgets to pick (entity, path, strategy, parents) and the SQL that choice costs.

    Widget callbacks are synchronous; each change schedules :meth:`refresh` as a
    task on the notebook's event loop. Runs are serialised (the SQL recorder is
    shared) and only the latest choice is rendered.
    """

    def __init__(self, db: Any, loop: asyncio.AbstractEventLoop, *, entity: str, path: str,
                 strategy: str, parents: int) -> None:
        import ipywidgets as w

        self.db = db
        self._loop = loop
        self._lock = asyncio.Lock()
        self._generation = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._suspended = False
        self.run: LoaderRun | None = None

        self.entity = w.Dropdown(options=list(ENTITIES), value=entity, description="entity")
        self.path = w.Dropdown(options=list(PATHS[entity]), value=path, description="path")
        self.strategy = w.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy")
        self.parents = w.IntSlider(value=parents, min=1, max=50, description="parents", continuous_update=False)
        self.summary = w.HTML()
        self.sql = w.HTML()
        for name, widget in [("entity", self.entity), ("path", self.path), ("strategy", self.strategy),
                             ("parents", self.parents), ("summary", self.summary), ("sql", self.sql)]:
            widget.add_class(f"course-loader-{name}")
        self.widget = w.VBox(
            [w.HBox([self.entity, self.path]), w.HBox([self.strategy, self.parents]), self.summary, self.sql]
        )
        self.widget.add_class("course-loader-explorer")
        self.entity.observe(self._entity_changed, names="value")
        for widget in (self.path, self.strategy, self.parents):
            widget.observe(self._changed, names="value")

    # the choice -------------------------------------------------------------
    @property
    def choice(self) -> tuple[str, str, str, int]:
        return self.entity.value, self.path.value, self.strategy.value, self.parents.value

    @property
    def count(self) -> int | None:
        """Statements of the last rendered run."""
        return None if self.run is None else self.run.statements

    def _entity_changed(self, change: Any) -> None:
        self._suspended = True
        try:
            self.path.options = list(PATHS[change["new"]])
            self.path.value = PATHS[change["new"]][0]
        finally:
            self._suspended = False
        self._changed(change)

    def _changed(self, _change: Any) -> None:
        if self._suspended:
            return
        self._generation += 1
        self.summary.value = "<div class='course-loader-busy'>running…</div>"
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._spawn()
        else:  # a callback from another thread: hand the work to the notebook's loop
            self._loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        task = self._loop.create_task(self._refresh_if_latest(self._generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_if_latest(self, generation: int) -> None:
        async with self._lock:
            if generation != self._generation:
                return  # a newer choice is queued behind us
            await self._render()

    # running ----------------------------------------------------------------
    async def refresh(self) -> LoaderRun:
        """Run the current choice now and render it; returns the run."""
        async with self._lock:
            return await self._render()

    async def settled(self) -> LoaderRun | None:
        """Wait until every scheduled refresh has finished (for tests and notebooks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return self.run

    async def _render(self) -> LoaderRun:
        entity, path, strategy, parents = self.choice
        try:
            run = await statements_for(entity, path, strategy, parents=parents, db=self.db)
        except Exception as exc:  # e.g. the notebook's database was reset: say so in the widget
            self.summary.value = f"<div class='course-loader-error'>{esc(type(exc).__name__)}: {esc(exc)}</div>"
            raise
        self.run = run
        self.summary.value = run.summary_html()
        self.sql.value = run.sql_html()
        return run

    # display ------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        # without a live widget manager (a static view of the notebook) show the last run
        if self.run is not None:
            bundle["text/html"] = (
                f"<div class='course-loader-explorer'><div>{esc(' · '.join(map(str, self.choice)))}</div>"
                f"{self.run.summary_html()}{self.run.sql_html()}</div>"
            )
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        entity, path, strategy, parents = self.choice
        return f"<LoaderExplorer {entity}.{path} {strategy} x{parents}: {self.count} statements>"


async def explorer(
    db: Any = None,
    *,
    entity: str = "User",
    path: str = "posts",
    strategy: str = "lazy",
    parents: int = 10,
) -> LoaderExplorer:
    """Build the explorer and render its first choice (so the cell shows a result at once).

    Call it from a notebook cell (``await``): widget changes later run their queries on
    this same event loop.
    """
    if db is None:
        from ..database import current

        db = current()
    explorer_ = LoaderExplorer(db, asyncio.get_running_loop(), entity=entity, path=path,
                               strategy=strategy, parents=parents)
    await explorer_.refresh()
    return explorer_
