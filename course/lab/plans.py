"""Query plans, readable: ``plan = await plans.explain(db, stmt)`` (lesson 11).

The statement is compiled by the active dialect and sent with its parameters
bound, exactly as SQLAlchemy would execute it, behind the backend's EXPLAIN:

- **SQLite**: ``EXPLAIN QUERY PLAN``. Each row is ``(id, parent, notused,
  detail)``; the rows form a tree through ``parent``. SQLite does not run the
  query and reports no row counts or times.
- **PostgreSQL**: ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``. The query *runs*
  (inside your transaction), and each node reports its actual rows, loops, time
  and buffers. ``analyze=False`` only plans it.

The result is a :class:`Plan`: a tree of :class:`PlanNode`, its text, and
properties to assert on (``plan.uses_index("ix_orders_user_id")``,
``plan.scans_table("orders")``, ``plan.full_scan``, ``plan.searches_index(...)``).
In a notebook it renders as a box with the class ``course-plan``.

What you can explain: any SQLAlchemy statement (Core or ORM, with the values it
carries or ``params`` for ``bindparam()`` names), a ``text()`` construct, a plain
SQL string with driver-style parameters, or a statement recorded by
``course.sql()`` (``log[0]``), which is then explained with the exact SQL and
parameters the database received.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import literal
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from ..display import STYLE, esc, highlight_sql
from ..engines import HIDDEN
from ..recorder import Statement

__all__ = ["Plan", "PlanNode", "explain"]

#: how a node reads its table, in words every backend shares
TABLE_SCAN = "table scan"  # every row of the table, in storage order
INDEX_SCAN = "full index scan"  # every entry of an index (no search condition on its leading column)
INDEX_SEARCH = "index search"  # a B-tree search: only the matching part of an index
ROWID_SEARCH = "rowid search"  # SQLite: straight to rows by INTEGER PRIMARY KEY

_names = itertools.count(1)


# ------------------------------------------------------------------ the EXPLAIN construct


class _Explain(Executable, ClauseElement):
    """``EXPLAIN ... <statement>``: compiled by the active dialect, parameters bound as usual."""

    inherit_cache = False  # never cached: each plan is asked for once

    def __init__(self, statement: Any, prefix: str) -> None:
        self.statement = statement
        self.prefix = prefix


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.statement, **kw)
    # The rows that come back are the plan, not the statement's columns: drop the
    # statement's result map, or its column types would be applied to the plan's
    # columns by position (a DateTime column would try to parse "SCAN orders").
    compiler._result_columns = []
    return f"{element.prefix} {inner}"


# ------------------------------------------------------------------ the data


@dataclass
class PlanNode:
    """One step of a plan."""

    label: str  # the one-line description, as the backend words it
    operation: str  # SQLite: SCAN, SEARCH, USE TEMP B-TREE, ...; PostgreSQL: the node type
    table: str | None = None  # the table read (SQLite shows an alias when there is one)
    index: str | None = None  # the index used, if any
    access: str | None = None  # TABLE_SCAN, INDEX_SCAN, INDEX_SEARCH, ROWID_SEARCH or None
    condition: str | None = None  # what the index is searched with ("user_id=?", "(user_id = 7)")
    filter: str | None = None  # PostgreSQL: the condition checked row by row after reading
    rows: float | None = None  # PostgreSQL, actual rows per loop (estimated without ANALYZE)
    loops: int | None = None
    time_ms: float | None = None  # PostgreSQL: actual total time per loop
    estimated_rows: float | None = None
    width: int | None = None  # PostgreSQL: estimated bytes per row
    buffers: dict[str, int] = field(default_factory=dict)  # PostgreSQL: shared hit / read ...
    details: list[str] = field(default_factory=list)  # extra lines (join keys, sort keys ...)
    children: list[PlanNode] = field(default_factory=list)
    raw: Any = None

    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def metrics(self) -> str:
        """Rows, loops, time and buffers in one short string (PostgreSQL)."""
        parts = []
        if self.rows is not None:
            parts.append(f"rows={_num(self.rows)}")
        if self.loops is not None:
            parts.append(f"loops={self.loops}")
        if self.time_ms is not None:
            parts.append(f"time={self.time_ms:.3f} ms")
        if self.buffers:
            parts.append("buffers " + " ".join(f"{k}={v}" for k, v in self.buffers.items()))
        return ", ".join(parts)


@dataclass
class Plan:
    """A query plan: a tree of :class:`PlanNode`, and what it says about indexes and scans."""

    backend: str
    sql: str
    params: Any
    roots: list[PlanNode]
    raw: Any = None
    analyzed: bool = False
    generic: bool = False
    planning_ms: float | None = None
    execution_ms: float | None = None

    @property
    def nodes(self) -> list[PlanNode]:
        """Every node, parents before children."""
        return [node for root in self.roots for node in root.walk()]

    # ------------------------------------------------------------ questions to assert on
    @property
    def indexes(self) -> list[str]:
        """Names of the indexes the plan reads, in order of appearance."""
        return list(dict.fromkeys(n.index for n in self.nodes if n.index))

    @property
    def tables(self) -> list[str]:
        return list(dict.fromkeys(n.table for n in self.nodes if n.table))

    def uses_index(self, name: str) -> bool:
        """The plan reads index ``name`` (to search it, or to scan all of it)."""
        return any(n.index == name for n in self.nodes)

    def searches_index(self, name: str) -> bool:
        """The plan *searches* index ``name``: it jumps to the matching entries, a condition
        on the index's leading column(s), instead of reading all of it."""
        return any(n.index == name and n.access == INDEX_SEARCH for n in self.nodes)

    def scans_table(self, table: str) -> bool:
        """The plan reads every row of ``table`` (SQLite ``SCAN table``, PostgreSQL ``Seq Scan``)."""
        return any(n.table == table and n.access == TABLE_SCAN for n in self.nodes)

    @property
    def full_scan(self) -> bool:
        """Some table is read from start to end."""
        return any(n.access == TABLE_SCAN for n in self.nodes)

    def find(self, words: str) -> list[PlanNode]:
        """Nodes whose label contains ``words``."""
        return [n for n in self.nodes if words in n.label]

    def __contains__(self, words: str) -> bool:
        return any(words in line for line in self.outline.splitlines())

    @property
    def rows(self) -> float | None:
        """Rows the top node returned (PostgreSQL with ANALYZE)."""
        return self.roots[0].rows if self.roots else None

    @property
    def shared_buffers(self) -> int | None:
        """PostgreSQL: 8 KB pages the query touched (shared hit + read); None on SQLite."""
        if not self.analyzed or not self.roots or self.backend != "postgresql":
            return None
        return sum(self.roots[0].buffers.get(k, 0) for k in ("hit", "read"))

    # ------------------------------------------------------------ text
    @property
    def outline(self) -> str:
        """The tree with labels only: no times or buffers, the same on every run."""
        return "\n".join(self._lines(with_metrics=False))

    @property
    def brief(self) -> str:
        """One line: the nodes' labels, parents first (for tables of plans)."""
        return " > ".join(n.label for n in self.nodes)

    @property
    def text(self) -> str:
        """The tree with everything the backend reported."""
        lines = self._lines(with_metrics=True)
        if self.planning_ms is not None or self.execution_ms is not None:
            bits = []
            if self.planning_ms is not None:
                bits.append(f"planning {self.planning_ms:.3f} ms")
            if self.execution_ms is not None:
                bits.append(f"execution {self.execution_ms:.3f} ms")
            lines.append(" · ".join(bits))
        return "\n".join(lines)

    def _lines(self, *, with_metrics: bool) -> list[str]:
        out: list[str] = []

        def add(node: PlanNode, depth: int) -> None:
            lead = "" if depth == 0 else "   " * (depth - 1) + "-> "
            line = lead + node.label
            if with_metrics and node.metrics:
                line += f"  ({node.metrics})"
            out.append(line)
            pad = "   " * depth + ("   " if depth else "  ")
            if self.backend == "postgresql":
                if node.condition:
                    cond_name = "Index Cond" if node.index else "Cond"
                    out.append(f"{pad}{cond_name}: {node.condition}")
                if node.filter:
                    out.append(f"{pad}Filter: {node.filter}")
                for extra in node.details:
                    if with_metrics or not extra.startswith("Rows Removed"):
                        out.append(f"{pad}{extra}")
            for child in node.children:
                add(child, depth + 1)

        for root in self.roots:
            add(root, 0)
        return out

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<Plan {self.backend}: {' | '.join(n.label for n in self.nodes)[:200]}>"

    def _repr_html_(self) -> str:
        return plan_html(self)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


# ------------------------------------------------------------------ SQLite

_SQLITE_NODE = re.compile(r"^(?P<op>SCAN|SEARCH) (?P<table>\S+)(?P<rest>.*)$")
_SQLITE_USING = re.compile(
    r" USING (?P<auto>AUTOMATIC (?:PARTIAL )?)?(?P<covering>COVERING )?INDEX(?: (?P<index>(?!\()\S+))?"
)


def _sqlite_node(detail: str) -> PlanNode:
    node = PlanNode(label=detail, operation=detail, raw=detail)
    m = _SQLITE_NODE.match(detail)
    if m is None:
        # USE TEMP B-TREE FOR ORDER BY, CORRELATED SCALAR SUBQUERY 1, COMPOUND QUERY, ...
        node.operation = re.sub(r"\s+\d+$", "", detail)
        return node
    op, rest = m.group("op"), m.group("rest")
    node.operation, node.table = op, m.group("table")
    cond = re.search(r"\((?P<cond>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*$", rest)
    node.condition = cond.group("cond") if cond else None
    using = _SQLITE_USING.search(rest)
    if using:
        node.index = using.group("index") or "(automatic index)"
        node.access = INDEX_SEARCH if op == "SEARCH" else INDEX_SCAN
    elif "PRIMARY KEY" in rest:
        node.access = ROWID_SEARCH if op == "SEARCH" else TABLE_SCAN
    elif "VIRTUAL TABLE" in rest:
        node.access = None
    else:
        node.access = TABLE_SCAN if op == "SCAN" else None
    if node.table == "CONSTANT":  # SCAN CONSTANT ROW
        node.table, node.access = None, None
    return node


def _sqlite_tree(rows: Sequence[Sequence[Any]]) -> list[PlanNode]:
    by_id: dict[int, PlanNode] = {}
    roots: list[PlanNode] = []
    for row in rows:
        node_id, parent, _notused, detail = row[0], row[1], row[2], row[3]
        node = _sqlite_node(str(detail))
        node.raw = tuple(row)
        by_id[node_id] = node
        (by_id[parent].children if parent in by_id else roots).append(node)
    return roots


# ------------------------------------------------------------------ PostgreSQL

_PG_DETAILS = (
    "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter", "One-Time Filter", "Sort Key",
    "Group Key", "Rows Removed by Filter", "Rows Removed by Index Recheck", "Heap Fetches",
    "Heap Blocks", "Strategy",
)


def _pg_node(data: Mapping[str, Any]) -> PlanNode:
    kind = data["Node Type"]
    relation, alias, index = data.get("Relation Name"), data.get("Alias"), data.get("Index Name")
    label = kind
    if index:
        label += f" using {index}"
    if relation:
        label += f" on {relation}" + (f" {alias}" if alias and alias != relation else "")
    elif kind == "Aggregate":
        label = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate"}.get(data.get("Strategy"), kind)
    analyzed = "Actual Rows" in data
    node = PlanNode(
        label=label,
        operation=kind,
        table=alias or relation,
        index=index,
        condition=data.get("Index Cond"),
        filter=data.get("Filter"),
        rows=data.get("Actual Rows") if analyzed else data.get("Plan Rows"),
        loops=data.get("Actual Loops"),
        time_ms=data.get("Actual Total Time"),
        estimated_rows=data.get("Plan Rows"),
        width=data.get("Plan Width"),
        raw=dict(data),
    )
    if kind == "Seq Scan":
        node.access = TABLE_SCAN
    elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
        node.access = INDEX_SEARCH if node.condition else INDEX_SCAN
    for key, short in (("Shared Hit Blocks", "hit"), ("Shared Read Blocks", "read"),
                       ("Temp Read Blocks", "temp read"), ("Temp Written Blocks", "temp written")):
        value = data.get(key)
        if value:
            node.buffers[short] = value
    for key in _PG_DETAILS:
        if key in data and key != "Strategy" and data[key] not in (None, 0, []):
            value = data[key]
            node.details.append(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    node.children = [_pg_node(child) for child in data.get("Plans", [])]
    return node


async def _pg_leading_columns(conn: AsyncConnection, names: set[str]) -> dict[str, str | None]:
    """The first column of each index (None for an expression index)."""
    out: dict[str, str | None] = {}
    for name in sorted(names):
        result = await conn.exec_driver_sql(
            "SELECT a.attname FROM pg_index i LEFT JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            f"WHERE i.indexrelid = to_regclass('{_quote_ident(name)}')",
            execution_options={HIDDEN: True},
        )
        out[name] = result.scalar()
    return out


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _refine_pg_searches(roots: list[PlanNode], leading: Mapping[str, str | None]) -> None:
    """An index node is a search only when its condition constrains the index's first column."""
    for node in (n for root in roots for n in root.walk()):
        if node.access != INDEX_SEARCH or not node.index:
            continue
        column = leading.get(node.index)
        if column is None or not node.condition:
            continue
        qualifier = rf"(?:\b{re.escape(node.table)}\.)?" if node.table else ""
        if not re.search(rf"(?<![\w.]){qualifier}\(?{re.escape(column)}\b", node.condition):
            node.access = INDEX_SCAN


# ------------------------------------------------------------------ explain()


async def explain(
    where: Any,
    statement: Any,
    params: Mapping[str, Any] | Sequence[Any] | None = None,
    *,
    analyze: bool = True,
    generic: bool = False,
) -> Plan:
    """Explain ``statement`` on ``where`` (a session, connection, engine or course database).

    ``params`` fills ``bindparam()`` names (a dict), or the placeholders of a plain
    SQL string (a tuple). PostgreSQL runs the query (``analyze=True``) inside the
    current transaction; use ``analyze=False`` for a statement that writes.
    ``generic=True`` (PostgreSQL only) shows the plan PostgreSQL would cache for the
    statement as a prepared statement, chosen without looking at the parameter values.
    """
    if isinstance(where, AsyncSession):
        return await _explain_on(await where.connection(), statement, params, analyze, generic)
    if isinstance(where, AsyncConnection):
        return await _explain_on(where, statement, params, analyze, generic)
    engine = getattr(where, "engine", where)
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            "explain() takes an AsyncSession, an AsyncConnection, an AsyncEngine or the course "
            f"database handle first; got {type(where).__name__}"
        )
    async with engine.connect() as conn:
        try:
            return await _explain_on(conn, statement, params, analyze, generic)
        finally:
            await conn.rollback()


def _prefix(backend: str, analyze: bool) -> str:
    if backend == "sqlite":
        return "EXPLAIN QUERY PLAN"
    return "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)" if analyze else "EXPLAIN (FORMAT JSON)"


async def _explain_on(conn: AsyncConnection, statement: Any, params: Any, analyze: bool, generic: bool) -> Plan:
    backend = conn.dialect.name
    if backend not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"plans are read for SQLite and PostgreSQL, not {backend}")
    if generic:
        if backend != "postgresql":
            raise NotImplementedError(
                "SQLite keeps no generic plans: it plans a statement when it is prepared, and "
                "prepares it again when a bound value could change the plan (a partial index, LIKE)."
            )
        return await _explain_generic(conn, statement, params, analyze)
    prefix = _prefix(backend, analyze)
    if isinstance(statement, Statement):
        if statement.executemany:
            raise ValueError("an executemany statement has many parameter sets: explain one of them")
        sql, bound = statement.sql, statement.params
        result = await conn.exec_driver_sql(f"{prefix} {sql}", _driver_params(bound))
    elif isinstance(statement, str):
        sql, bound = statement, params
        result = await conn.exec_driver_sql(f"{prefix} {sql}", _driver_params(params))
    elif isinstance(statement, ClauseElement):
        compiled = statement.compile(dialect=conn.dialect)
        sql, bound = str(compiled), {**compiled.params, **dict(params or {})}
        result = await conn.execute(_Explain(statement, prefix), dict(params or {}))
    else:
        raise TypeError(f"cannot explain a {type(statement).__name__}: pass a statement, text() or SQL")
    rows = [tuple(r) for r in result.all()]
    return await _build(conn, backend, sql, bound, rows, analyze)


def _driver_params(params: Any) -> Any:
    if params is None:
        return ()
    if isinstance(params, list):
        return tuple(params)
    return params


async def _build(conn: AsyncConnection, backend: str, sql: str, bound: Any, rows: list[tuple[Any, ...]],
                 analyze: bool, generic: bool = False) -> Plan:
    if backend == "sqlite":
        return Plan(backend, sql, bound, _sqlite_tree(rows), raw=rows)
    document = rows[0][0]
    if isinstance(document, str):
        document = json.loads(document)
    top = document[0]
    roots = [_pg_node(top["Plan"])]
    names = {n.index for root in roots for n in root.walk() if n.index}
    if names:
        _refine_pg_searches(roots, await _pg_leading_columns(conn, names))
    return Plan(
        backend, sql, bound, roots, raw=document, analyzed=analyze, generic=generic,
        planning_ms=top.get("Planning Time"), execution_ms=top.get("Execution Time"),
    )


async def _explain_generic(conn: AsyncConnection, statement: Any, params: Any, analyze: bool) -> Plan:
    """PREPARE the statement, force a generic plan, and explain its EXECUTE."""
    if not isinstance(statement, ClauseElement):
        raise TypeError("generic=True explains a SQLAlchemy statement (select(...) or text())")
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params(dict(params or {}))
    names = list(compiled.positiontup or [])
    args = []
    for name in names:
        bind = compiled.binds.get(name)
        type_ = bind.type if bind is not None else None
        args.append(str(literal(values[name], type_).compile(dialect=dialect, compile_kwargs={"literal_binds": True})))
    name = f"course_generic_{next(_names)}"
    hidden = {HIDDEN: True}
    await conn.exec_driver_sql(f"PREPARE {name} AS {compiled}")
    try:
        await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan", execution_options=hidden)
        call = f"EXECUTE {name}" + (f"({', '.join(args)})" if args else "")
        result = await conn.exec_driver_sql(f"{_prefix('postgresql', analyze)} {call}")
        rows = [tuple(r) for r in result.all()]
    finally:
        await conn.exec_driver_sql("RESET plan_cache_mode", execution_options=hidden)
        await conn.exec_driver_sql(f"DEALLOCATE {name}", execution_options=hidden)
    return await _build(conn, "postgresql", str(compiled), values, rows, analyze, generic=True)


# ------------------------------------------------------------------ HTML

_PLAN_STYLE = """<style>
.course-plan{font-family:var(--jp-ui-font-family,sans-serif);border-left:4px solid #6a1b9a;background:#f6f0fa;padding:6px 10px;margin:4px 0}
.course-plan pre{margin:4px 0;white-space:pre-wrap;font-size:12px;font-family:var(--jp-code-font-family,monospace)}
.course-plan .ix{color:#2e7d32;font-weight:bold}.course-plan .scan{color:#c62828;font-weight:bold}
.course-plan details{font-size:12px}
</style>"""


def plan_html(plan: Plan) -> str:
    how = {
        "sqlite": "SQLite · EXPLAIN QUERY PLAN",
        "postgresql": "PostgreSQL · EXPLAIN (ANALYZE, BUFFERS)" if plan.analyzed else "PostgreSQL · EXPLAIN",
    }[plan.backend]
    if plan.generic:
        how += " · generic plan"
    tree = esc(plan.text)
    for name in sorted(set(plan.indexes), key=len, reverse=True):
        tree = tree.replace(esc(name), f'<span class="ix">{esc(name)}</span>')
    tree = re.sub(r"\b(Seq Scan|SCAN)\b(?! \S+ USING)", r'<span class="scan">\1</span>', tree)
    summary = []
    scanned = [n.table for n in plan.nodes if n.access == TABLE_SCAN]
    if scanned:
        summary.append("reads every row of " + ", ".join(esc(t) for t in dict.fromkeys(scanned)))
    if plan.indexes:
        summary.append("indexes: " + ", ".join(esc(i) for i in plan.indexes))
    return (
        f'{STYLE}{_PLAN_STYLE}<div class="course-plan"><b>Query plan</b> · {esc(how)}'
        + (f"<div>{' · '.join(summary)}</div>" if summary else "")
        + f"<pre>{tree}</pre>"
        + f"<details><summary>statement explained</summary><pre>{highlight_sql(plan.sql)}</pre>"
        + f"<div>parameters: {esc(_short(plan.params))}</div></details></div>"
    )


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
