"""Results as pandas DataFrames, for readable tables in a notebook.

pandas is imported inside the function: ``import course`` stays quick.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Result, Row


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
    """A DataFrame from a Result, a list of Rows, a list of ORM objects or of scalars."""
    import pandas as pd

    if isinstance(rows, Result):
        keys = list(rows.keys())
        data = rows.all()
        if len(keys) == 1 and data and _entity_dict(data[0][0]) is not None:
            return frame([r[0] for r in data], columns=columns)
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
