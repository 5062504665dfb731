"""Results as pandas DataFrames, for readable tables in a notebook.

``course.frame(...)`` returns a DataFrame that shows itself as a database client shows a
result: no pandas index column, NULL for a missing value (not ``<NA>``, ``None`` or ``NaN``),
each column's type under its name, and a wide table scrolling inside its own box. It is a
pandas DataFrame in every other way. pandas is imported inside the functions: ``import
course`` stays quick.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Result, Row

from .display import STYLE, esc

MAX_ROWS = 60  # longer results show their first and last rows, as pandas does
HEAD_ROWS, TAIL_ROWS = 10, 5


def _entity_dict(obj: Any) -> dict[str, Any] | None:
    try:
        state = sa_inspect(obj)
    except Exception:
        return None
    mapper = getattr(state, "mapper", None)
    if mapper is None:
        return None
    # only attributes already loaded: building a table never triggers a lazy load
    return {
        attr.key: state.dict[attr.key]
        for attr in mapper.column_attrs
        if attr.key in state.dict
    }


def frame(rows: Result[Any] | Iterable[Any], *, columns: list[str] | None = None) -> Any:
    """A DataFrame from a Result, a list of Rows, a list of ORM objects or of scalars.

    It shows itself like a database client's result (see the module's docstring).
    """
    return _tidy(_plain_frame(rows, columns=columns))


def _plain_frame(rows: Result[Any] | Iterable[Any], *, columns: list[str] | None = None) -> Any:
    import pandas as pd

    if isinstance(rows, Result):
        keys = list(rows.keys())
        data = rows.all()
        if len(keys) == 1 and data and _entity_dict(data[0][0]) is not None:
            return _plain_frame([r[0] for r in data], columns=columns)
        return pd.DataFrame([tuple(r) for r in data], columns=columns or keys)
    items = list(rows)
    if not items:
        return pd.DataFrame(columns=columns or [])
    first = items[0]
    if isinstance(first, Row):
        return pd.DataFrame([tuple(r) for r in items], columns=columns or list(first._fields))
    if _entity_dict(first) is not None:
        return pd.DataFrame([_entity_dict(o) for o in items], columns=columns)
    if isinstance(first, dict):
        return pd.DataFrame(items, columns=columns)
    if isinstance(first, tuple):
        return pd.DataFrame(items, columns=columns)
    return pd.DataFrame({(columns or ["value"])[0]: items})


def _tidy(df: Any) -> Any:
    """The frame as a :class:`CourseFrame`; an integer column with NULLs stays integer (not 1.0)."""
    for name in df.columns:
        column = df[name]
        if column.dtype.kind == "f" and column.isna().any():
            present = column.dropna()
            if len(present) and (present == present.round()).all():
                df[name] = column.astype("Int64")
    return course_frame_class()(df)


_FRAME_CLASS: Any = None


def course_frame_class() -> type:
    """The DataFrame subclass ``course.frame`` returns (made on first use: pandas loads late)."""
    global _FRAME_CLASS
    if _FRAME_CLASS is None:
        import pandas as pd

        class CourseFrame(pd.DataFrame):
            """A pandas DataFrame that renders as a database client's result table."""

            @property
            def _constructor(self) -> type:
                return CourseFrame

            def _repr_html_(self) -> str:
                return frame_html(self)

        CourseFrame.__module__ = __name__
        CourseFrame.__qualname__ = "CourseFrame"
        globals()["CourseFrame"] = _FRAME_CLASS = CourseFrame  # importable by name: frames pickle
    return _FRAME_CLASS


def __getattr__(name: str) -> Any:  # ``from course.frames import CourseFrame`` (pickle) works too
    if name == "CourseFrame":
        return course_frame_class()
    raise AttributeError(name)


def is_null(value: Any) -> bool:
    """None, NaN, NaT and pandas' NA: what a database calls NULL."""
    if value is None:
        return True
    if isinstance(value, list | tuple | dict | set | str | bytes):
        return False
    import pandas as pd

    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if getattr(result, "ndim", 0) == 0 else False


def type_name(column: Any) -> str:
    """A column's type in a reader's words: integer, float, text, boolean, datetime, date, numeric..."""
    kind = column.dtype.kind
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "float"
    if kind == "b":
        return "boolean"
    if kind == "M":
        return "datetime"
    if kind == "m":
        return "interval"
    present = [v for v in column if not is_null(v)]
    kinds = {_value_type(v) for v in present}
    if not kinds:
        return "null"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, decimal.Decimal):
        return "numeric"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, bytes):
        return "bytes"
    return type(value).__name__


def _cell(value: Any) -> str:
    if is_null(value):
        return '<span class="course-null">NULL</span>'
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return esc(f"{value:.1f}")
    if isinstance(value, dt.datetime):
        return esc(value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds"))
    return esc(value)


def frame_html(df: Any) -> str:
    """The table a database client would show: no index, NULL, types under the names, scrolling when wide."""
    import pandas as pd

    shown = df
    if not (isinstance(df.index, pd.RangeIndex) and df.index.name is None and df.index.start == 0
            and df.index.step == 1):
        shown = df.reset_index()  # a meaningful index (set_index, groupby) is data: show it as columns
    names = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in shown.columns]
    head = "".join(
        f'<th>{esc(name)}<span class="course-type">{esc(type_name(shown.iloc[:, i]))}</span></th>'
        for i, name in enumerate(names)
    )
    n = len(shown)
    parts = [shown.iloc[:HEAD_ROWS], None, shown.iloc[n - TAIL_ROWS:]] if n > MAX_ROWS else [shown]
    rows = []
    for part in parts:
        if part is None:
            rows.append(f'<tr><td class="course-more" colspan="{len(names)}">… {n - HEAD_ROWS - TAIL_ROWS:,} more rows …</td></tr>')
            continue
        for values in part.itertuples(index=False, name=None):
            rows.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in values) + "</tr>")
    summary = f"{n:,} row{'s' if n != 1 else ''}"
    return (
        f'{STYLE}<div class="course-frame"><table class="course-table"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table><div class="course-more">{summary}</div></div>'
    )
