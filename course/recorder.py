"""Capture every SQL statement a block of code emits.

One pair of cursor events per engine feeds every open :class:`SqlLog`. Each
insertmanyvalues batch and each selectinload IN batch is its own statement, as
the database sees it. Statement and parameters are taken in
``before_cursor_execute``: on SQLAlchemy 2.0 ``after_cursor_execute`` receives
the template and full parameter list for insertmanyvalues batches, on 2.1 the
batch; ``before`` is right on both.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .engines import HIDDEN

_SECRET_KEY = re.compile(r"pass(word)?|secret|token", re.I)
_active: list[SqlLog] = []
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})


@dataclass
class Statement:
    """One statement as the database received it."""

    sql: str
    params: Any
    executemany: bool = False
    batch_size: int = 1
    rows: int | None = None
    duration_ms: float = 0.0
    failed: bool = False  # the database (or driver) raised for this statement

    @property
    def verb(self) -> str:
        """The first keyword: SELECT, INSERT, UPDATE, DELETE, WITH, SAVEPOINT, ..."""
        word = self.sql.lstrip().split(None, 1)
        return word[0].upper() if word else ""

    def __str__(self) -> str:
        batch = f"  [executemany x{self.batch_size}]" if self.executemany else ""
        return f"{self.sql}{batch}"


@dataclass
class SqlLog(Sequence[Statement]):
    """The statements captured inside one ``with course.sql():`` block.

    A list for code (``len(log)``, ``log[0].sql``, ``log.count("SELECT")``) and a
    highlighted table in a notebook.
    """

    title: str = "SQL emitted"
    statements: list[Statement] = field(default_factory=list)
    active: bool = False

    def __len__(self) -> int:
        return len(self.statements)

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        return self.statements[index]

    def __iter__(self) -> Iterator[Statement]:
        return iter(self.statements)

    def count(self, verb: str | None = None) -> int:  # type: ignore[override]
        """Number of statements, or of those starting with ``verb`` (e.g. ``"SELECT"``)."""
        if verb is None:
            return len(self.statements)
        return sum(1 for s in self.statements if s.verb == verb.upper())

    @property
    def queries(self) -> list[Statement]:
        """Statements that read or write data: transaction control (BEGIN, SAVEPOINT,
        RELEASE, ROLLBACK, COMMIT) left out."""
        return [s for s in self.statements if s.verb not in _TRANSACTION_CONTROL]

    @property
    def sql(self) -> list[str]:
        return [s.sql for s in self.statements]

    @property
    def rows(self) -> int:
        """Rows the database sent back (SELECT and RETURNING), summed over statements."""
        return sum(s.rows or 0 for s in self.statements if s.rows is not None)

    def clear(self) -> None:
        self.statements.clear()

    def __str__(self) -> str:
        lines = [f"{self.title}: {len(self)} statement{'s' if len(self) != 1 else ''}"]
        lines += [f"  {i}. {s}" for i, s in enumerate(self.statements, 1)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<SqlLog {len(self)} statements>"

    def _repr_html_(self) -> str:
        from .display import sql_log_html

        return sql_log_html(self)


def _redact(params: Any, context: Any, *, many: bool = False) -> Any:
    """Hide values bound to anything named like a password (``many``: a list of parameter sets).

    Both course drivers take positional parameters, so the names come from the
    compiled statement: by position when the parameters line up with its names
    (one row, or the rows of an insertmanyvalues batch), and in any case by
    value, which also covers expanded ``IN`` lists.
    """
    compiled = getattr(context, "compiled", None)
    names = getattr(compiled, "positiontup", None) or ()
    first = (params[0] if len(params) else None) if many else params
    if not isinstance(first, dict):
        joined = " ".join(names).lower()  # the common case, no secret: substring tests are quickest
        if "pass" not in joined and "secret" not in joined and "token" not in joined:
            return params
    names = list(names)
    width = len(names)
    expanded = bool(
        getattr(compiled, "post_compile_params", None) or getattr(compiled, "literal_execute_params", None)
    )
    imv = getattr(getattr(context, "execute_style", None), "name", "") == "INSERTMANYVALUES"
    secrets: set[Any] = set()
    for bound in getattr(context, "compiled_parameters", None) or ():
        for key, value in bound.items():
            if _SECRET_KEY.search(str(key)):
                for v in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(v, (str, bytes)) and v:
                        secrets.add(v)

    def one(row: Any) -> Any:
        if isinstance(row, dict):
            return {k: ("***" if _SECRET_KEY.search(str(k)) else v) for k, v in row.items()}
        if not isinstance(row, (list, tuple)):
            return row
        out = list(row)
        if width and not expanded and (len(out) == width or (imv and len(out) % width == 0)):
            out = ["***" if _SECRET_KEY.search(names[i % width]) else v for i, v in enumerate(out)]
        if secrets:
            out = ["***" if isinstance(v, (str, bytes)) and v in secrets else v for v in out]
        return tuple(out) if isinstance(row, tuple) else out

    return [one(r) for r in params] if many else one(params)


def _rows_of(cursor: Any) -> int | None:
    if getattr(cursor, "description", None) is None:
        count = getattr(cursor, "rowcount", -1)
        return count if isinstance(count, int) and count >= 0 else None
    buffered = getattr(cursor, "_rows", None)
    try:
        return len(buffered) if buffered is not None else None
    except TypeError:
        return None


def _insertmanyvalues_rows(params: Any, context: Any) -> int:
    """Rows in one insertmanyvalues batch, counted from its parameters (0: cannot tell).

    Not from the rows it RETURNs: ``ON CONFLICT DO NOTHING`` returns fewer rows than it was
    sent. The batch's parameters are each row's parameters one after another, plus those
    outside VALUES (an upsert's SET or WHERE) once.
    """
    compiled = getattr(context, "compiled", None)
    per_row = getattr(getattr(compiled, "_insertmanyvalues", None), "num_positional_params_counted", 0)
    if not per_row or not isinstance(params, (list, tuple)):
        return 0
    extra = len(getattr(compiled, "positiontup", None) or ()) - per_row
    return max(1, (len(params) - max(extra, 0)) // per_row)


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    if not _active:
        return
    if context is not None and context.execution_options.get(HIDDEN):
        return
    batch = len(parameters) if executemany and isinstance(parameters, (list, tuple)) else 1
    style = getattr(getattr(context, "execute_style", None), "name", "")
    imv = style == "INSERTMANYVALUES"
    record = Statement(
        sql=statement,
        params=_redact(parameters, context, many=bool(executemany) and not imv),
        executemany=bool(executemany),
        batch_size=_insertmanyvalues_rows(parameters, context) if imv else batch,
    )
    conn.info.setdefault("course_pending", []).append((record, time.perf_counter(), imv))


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    pending = conn.info.get("course_pending")
    if not pending:
        return
    record, started, imv = pending.pop()
    record.duration_ms = (time.perf_counter() - started) * 1000
    record.rows = _rows_of(cursor)
    if imv and not record.batch_size:
        # rows in the batch unknown from its parameters: the rows it RETURNed are the best guess
        record.batch_size = record.rows or 1
    for log in _active:
        log.statements.append(record)


def _error(exception_context: Any) -> None:
    conn = getattr(exception_context, "connection", None)
    pending = conn.info.get("course_pending") if conn is not None else None
    if pending:
        record, started, _ = pending.pop()
        record.duration_ms = (time.perf_counter() - started) * 1000
        record.failed = True
        for log in _active:
            log.statements.append(record)


def instrument(engine: Any) -> None:
    """Attach the recorder to an engine (sync or async); harmless to call twice."""
    sync: Engine = getattr(engine, "sync_engine", engine)
    if event.contains(sync, "before_cursor_execute", _before):
        return
    event.listen(sync, "before_cursor_execute", _before)
    event.listen(sync, "after_cursor_execute", _after)
    event.listen(sync, "handle_error", _error)


@contextmanager
def record(title: str = "SQL emitted", *, show: bool | None = None) -> Iterator[SqlLog]:
    """Capture statements from every course engine while the block runs.

    In a notebook the log is displayed when the block ends (``show=False``
    turns that off); a statement that failed is recorded too.
    """
    log = SqlLog(title=title, active=True)
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)
        log.active = False
        if show is None:
            from .display import in_notebook

            show = in_notebook()
        if show:
            from .display import show_html

            show_html(log._repr_html_())
