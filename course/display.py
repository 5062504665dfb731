"""HTML for notebooks: SQL logs, verdicts, error boxes.

Every block carries a stable class name (``course-sql-log``, ``course-verdict``,
``course-expect``, ``course-banner``, tables ``course-table``) so tests and learners'
own styles can find it, and every status is an icon plus a word, readable without colour.
Table cells are left-aligned on purpose: JupyterLab right-aligns output table cells with
a (0,2,1)-specific selector, so ours is one step more specific.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any, Protocol


class _Logged(Protocol):
    """What a SQL log row needs; ``course.recorder.Statement`` has it (display imports nothing of ours)."""

    sql: str
    params: Any
    executemany: bool
    batch_size: int
    rows: int | None


class _Log(Protocol):
    """A titled sequence of statements: ``course.recorder.SqlLog``."""

    title: str

    def __iter__(self) -> Iterator[_Logged]: ...
    def __len__(self) -> int: ...

_KEYWORDS = (
    "SELECT|FROM|WHERE|AND|OR|NOT|IN|IS|NULL|AS|JOIN|LEFT|OUTER|INNER|ON|GROUP BY|ORDER BY|"
    "HAVING|LIMIT|OFFSET|INSERT|INTO|VALUES|UPDATE|SET|DELETE|RETURNING|WITH|RECURSIVE|"
    "UNION|ALL|DISTINCT|EXISTS|BETWEEN|LIKE|ILIKE|CASE|WHEN|THEN|ELSE|END|DESC|ASC|OVER|"
    "PARTITION BY|SAVEPOINT|RELEASE|ROLLBACK|COMMIT|BEGIN|CREATE|DROP|INDEX|TABLE|ON CONFLICT|"
    "DO|NOTHING|EXPLAIN|ANALYZE|COUNT|LOWER|UPPER|ESCAPE"
)
_KEYWORD_RE = re.compile(rf"\b({_KEYWORDS})\b")
_PARAM_RUN = re.compile(r"((?:\?|\$\d+)(?:, (?:\?|\$\d+)){9,})")

STYLE = """<style>
.course-sql-log{font-family:var(--jp-code-font-family,monospace);font-size:12px;margin:4px 0;max-width:100%;overflow-x:auto}
.course-table{border-collapse:collapse}
:is(.course-sql-log,.course-box,.course-pool-table,.course-frame) table.course-table :is(td,th){border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.jp-RenderedHTMLCommon :is(.course-sql-log,.course-box) pre,:is(.course-sql-log,.course-box) pre{margin:0;padding:0;border:0;font-size:inherit;line-height:1.4;white-space:pre-wrap!important;word-break:normal!important;overflow-wrap:normal!important;background:transparent!important}
.course-sql-log .kw{color:#0b5fa5;font-weight:bold}
.course-box{border-left:4px solid;padding:6px 10px;margin:4px 0;font-family:var(--jp-ui-font-family,sans-serif)}
.course-ok{border-color:#2e7d32;background:#e8f5e9}.course-bad{border-color:#c62828;background:#ffebee}
.course-todo{border-color:#6d6d6d;background:#f3f3f3}.course-info{border-color:#0b5fa5;background:#e3f2fd}
.jp-RenderedHTMLCommon .course-box pre,.course-box pre{margin:4px 0;font-size:12px}
svg.course-icon{display:inline-block;vertical-align:-0.2em;margin-right:0.35em;flex:none}
.course-frame{max-width:100%;overflow-x:auto;margin:4px 0;font-size:13px}
.course-frame table.course-table{margin:0}
.course-frame th .course-type{display:block;font-weight:normal;font-size:11px;color:#6d6d6d}
.course-frame .course-null{color:#8a8a8a;font-style:italic}
.course-frame td{white-space:nowrap}
.course-frame .course-more{color:#6d6d6d;font-style:italic}
</style>"""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where HTML can be displayed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def show_html(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def esc(text: Any) -> str:
    return html.escape(str(text))


def _compact_params(sql: str) -> str:
    """Fold a long run of placeholders (``?, ?, ?...``) so an IN batch stays readable."""
    return _PARAM_RUN.sub(lambda m: f"{m.group(0).split(',')[0]}, … {m.group(0).count(',') + 1} parameters", sql)


_CLAUSE_INDENT = re.compile(r"\n (?=(?:LIMIT|OFFSET|FETCH)\b)")  # SQLAlchemy writes "\n LIMIT ?"
_TRAILING = re.compile(r"[ \t]+\n")


def tidy_sql(sql: str) -> str:
    """The statement as a reader wants it: no trailing blanks, no stray space before LIMIT/OFFSET.

    Indentation inside the text (a ``text()`` the learner wrote, a CTE) is kept.
    """
    return _CLAUSE_INDENT.sub("\n", _TRAILING.sub("\n", sql.strip()))


def highlight_sql(sql: str) -> str:
    return _KEYWORD_RE.sub(r'<span class="kw">\1</span>', esc(_compact_params(tidy_sql(sql))))


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sql_log_html(log: _Log) -> str:
    n = len(log)
    head = f"{esc(log.title)}: <b>{n}</b> statement{'s' if n != 1 else ''}"
    if n == 0:
        return f'{STYLE}<div class="course-sql-log"><div>{head}</div></div>'
    rows = []
    for i, s in enumerate(log, 1):
        if s.executemany and isinstance(s.params, list) and s.params:
            params = _short(s.params[:3]) + (f" … {len(s.params)} sets" if len(s.params) > 3 else "")
        else:
            params = _short(s.params)
        batch = f"executemany × {s.batch_size}" if s.executemany else ""
        rows.append(
            f"<tr><td>{i}</td><td><pre>{highlight_sql(s.sql)}</pre></td>"
            f"<td><pre>{esc(params)}</pre></td><td>{batch}</td>"
            f"<td>{'' if s.rows is None else s.rows}</td></tr>"
        )
    return (
        f'{STYLE}<div class="course-sql-log"><div>{head}</div><table class="course-table">'
        "<tr><th>#</th><th>SQL</th><th>parameters</th><th>batch</th><th>rows</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


#: Icons drawn by the browser from these shapes: no font needed (an emoji font is often missing).
_ICON_SHAPES = {
    "ok": ("#2e7d32", '<path d="M4.4 8.3l2.4 2.4 4.8-5" fill="none" stroke="#fff" stroke-width="2"'
                      ' stroke-linecap="round" stroke-linejoin="round"/>'),
    "bad": ("#c62828", '<path d="M5.2 5.2l5.6 5.6M10.8 5.2l-5.6 5.6" fill="none" stroke="#fff" stroke-width="2"'
                       ' stroke-linecap="round"/>'),
    "todo": ("#6d6d6d", '<path d="M4.5 11.5l.6-2.4 4.8-4.8 1.8 1.8-4.8 4.8z" fill="#fff"/>'),
    "info": ("#0b5fa5", '<rect x="7" y="7" width="2" height="5" rx="1" fill="#fff"/><circle cx="8" cy="4.6" r="1.2" fill="#fff"/>'),
}


def icon(kind: str, size: int = 16) -> str:
    """An inline SVG icon (ok, bad, todo, info): a coloured disc with a white mark. The word goes beside it."""
    colour, mark = _ICON_SHAPES[kind]
    return (
        f'<svg class="course-icon course-icon-{kind}" width="{size}" height="{size}" viewBox="0 0 16 16"'
        f' aria-hidden="true"><circle cx="8" cy="8" r="8" fill="{colour}"/>{mark}</svg>'
    )


def box(kind: str, title: str, body: str = "", *, css: str = "") -> str:
    """A coloured box with a leading icon and word, e.g. kind="ok" title="Correct"."""
    return (
        f'{STYLE}<div class="{" ".join(filter(None, ["course-box", f"course-{kind}", css]))}">'
        f"<b>{icon(kind)}{esc(title)}</b>{body}</div>"
    )


def log_lines_html(lines: list[str], title: str) -> str:
    """Log lines (what ``echo=True`` prints) shown the way the SQL log shows statements."""
    n = len(lines)
    head = f"{esc(title)}: <b>{n}</b> line{'s' if n != 1 else ''}"
    rows = "".join(f"<tr><td>{i}</td><td><pre>{highlight_sql(line)}</pre></td></tr>" for i, line in enumerate(lines, 1))
    table = f'<table class="course-table"><tr><th>#</th><th>line</th></tr>{rows}</table>' if n else ""
    return f'{STYLE}<div class="course-sql-log course-engine-log"><div>{head}</div>{table}</div>'
