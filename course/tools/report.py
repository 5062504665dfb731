"""``python -m course grade ... --html report.html``: one self-contained page about a class.

Built from the same scorecards as ``--json`` (so the numbers agree), for an instructor after a
session: the pass rate per exercise as a chart, the rule that failed most often per exercise with
an example message, a learner x exercise table that sorts by any column, and the notebooks that
crashed or ran out of time with the cell that did. Learners are named by the folder their notebook
came from (``submissions/ann/06_loader_strategies.ipynb`` is ann's), as nbgrader lays out
submissions. The page needs no server and no network: styles, chart (SVG) and sorting are inline.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..exercises.verdict import rich

#: what an exercise's status means in the class table
CELL = {
    "correct": "correct",
    "incorrect": "not yet",
    "error": "not yet",
    "not attempted": "not attempted",
}
CRASHED = "crashed"
_COLOURS = {"correct": "#2e7d32", "not yet": "#c62828", "not attempted": "#757575", CRASHED: "#6a1b9a"}


def learner_of(notebook: str) -> str:
    """The learner a submission belongs to: the name of the folder it sits in."""
    return Path(notebook).parent.name or "(no folder)"


def cell_status(card: dict[str, Any], exercise: dict[str, Any]) -> str:
    """One learner's state on one exercise, as the table shows it."""
    status = exercise["status"]
    if status in CELL:
        return CELL[status]
    # "not run": the check never displayed a verdict; because the notebook stopped, or never got there
    return CRASHED if card.get("crashed_cells") or card.get("timed_out") else "not attempted"


def summarise(cards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report's numbers, from scorecards as ``--json`` writes them (tests compare the two)."""
    exercises: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, str]] = {}
    for card in cards:
        if card.get("no_exercises"):
            continue
        row = table.setdefault(learner_of(card["notebook"]), {})
        for exercise in card["exercises"]:
            ex_id = exercise["exercise"]
            entry = exercises.setdefault(
                ex_id, {"title": exercise.get("title", ""), "counts": Counter(), "rules": Counter(), "example": {}}
            )
            state = cell_status(card, exercise)
            row[ex_id] = state
            entry["counts"][state] += 1
            if exercise["status"] == "incorrect":
                for rule in exercise.get("rules", []):
                    if not rule.get("passed", True):
                        entry["rules"][rule["rule"]] += 1
                        entry["example"].setdefault(rule["rule"], rule.get("message", ""))
            elif exercise["status"] == "error":
                entry["rules"]["error"] += 1
                entry["example"].setdefault("error", exercise.get("message", ""))
    for entry in exercises.values():
        attempted = sum(entry["counts"].values())
        entry["learners"] = attempted
        entry["pass_rate"] = entry["counts"]["correct"] / attempted if attempted else 0.0
        top = entry["rules"].most_common(1)
        entry["top_rule"] = (top[0][0], top[0][1], entry["example"][top[0][0]]) if top else None
    crashed = [
        {"learner": learner_of(c["notebook"]), "notebook": c["notebook"],
         "cells": list(c.get("crashed_cells", [])), "timed_out": bool(c.get("timed_out"))}
        for c in cards if c.get("crashed_cells") or c.get("timed_out")
    ]
    return {"exercises": dict(sorted(exercises.items())), "table": dict(sorted(table.items())), "crashed": crashed}


def _chart(exercises: dict[str, dict[str, Any]]) -> str:
    """Pass rate per exercise as horizontal bars (inline SVG: no image file, no script)."""
    row, label_w, bar_w = 26, 230, 420
    height = row * len(exercises) + 30
    parts = [f'<svg class="chart" role="img" aria-label="pass rate per exercise" width="{label_w + bar_w + 70}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="14">']
    for i, (ex_id, entry) in enumerate(exercises.items()):
        y = 10 + i * row
        width = round(bar_w * entry["pass_rate"])
        label = html.escape(f"{ex_id} {entry['title']}"[:30])
        parts.append(f'<text x="0" y="{y + 16}">{label}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="18" fill="#eee"/>')
        parts.append(f'<rect class="bar" data-exercise="{html.escape(ex_id)}" x="{label_w}" y="{y + 3}" '
                     f'width="{width}" height="18" fill="#2e7d32"/>')
        parts.append(f'<text x="{label_w + bar_w + 8}" y="{y + 16}">{entry["pass_rate"]:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f5f5f5;user-select:none}th:after{content:" \\2195";color:#999}
td.s{font-weight:600}.muted{color:#666}code{font-family:ui-monospace,monospace;font-size:13px}
.wrap{overflow-x:auto}
"""

_SORT = """
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => {
  const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  const rows = Array.from(body.rows).sort((a, b) => a.cells[col].innerText.localeCompare(
    b.cells[col].innerText, undefined, {numeric: true}) * dir);
  rows.forEach(r => body.appendChild(r));
}));
"""


def render(cards: Sequence[dict[str, Any]], *, title: str = "Class report") -> str:
    """The whole page as one HTML string."""
    esc = html.escape
    data = summarise(cards)
    exercises, table = data["exercises"], data["table"]
    learners = len(table)
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>{esc(title)}</h1>",
           f"<p class='muted'>{learners} learner{'s' if learners != 1 else ''}, {len(cards)} notebook"
           f"{'s' if len(cards) != 1 else ''}, graded {datetime.now():%Y-%m-%d %H:%M}.</p>"]
    out.append("<h2>Pass rate per exercise</h2>")
    out.append(_chart(exercises) if exercises else "<p>No exercise was graded.</p>")

    out.append("<h2>What went wrong most often</h2><div class='wrap'><table class='sortable' id='rules'>"
               "<thead><tr><th>exercise</th><th>correct</th><th>not yet</th><th>not attempted</th>"
               "<th>crashed</th><th>most frequent failing rule</th><th>example message</th></tr></thead><tbody>")
    for ex_id, entry in exercises.items():
        counts = entry["counts"]
        rule, times, example = entry["top_rule"] or ("", 0, "")
        out.append(
            f"<tr data-exercise='{esc(ex_id)}'><td>{esc(ex_id)} {esc(entry['title'])}</td>"
            + "".join(f"<td>{counts[k]}</td>" for k in ("correct", "not yet", "not attempted", CRASHED))
            + f"<td>{esc(rule)}{f' ({times}x)' if times else ''}</td><td>{rich(example)}</td></tr>"
        )
    out.append("</tbody></table></div>")

    ids = list(exercises)
    out.append("<h2>Learners</h2><div class='wrap'><table class='sortable' id='learners'><thead><tr>"
               "<th>learner</th><th>correct</th>" + "".join(f"<th>{esc(i)}</th>" for i in ids)
               + "</tr></thead><tbody>")
    for learner, row in table.items():
        correct = sum(1 for state in row.values() if state == "correct")
        cells = "".join(
            f"<td class='s' style='color:{_COLOURS.get(row.get(i, ''), '#999')}'>{esc(row.get(i, '-'))}</td>"
            for i in ids
        )
        out.append(f"<tr data-learner='{esc(learner)}'><td>{esc(learner)}</td><td>{correct}</td>{cells}</tr>")
    out.append("</tbody></table></div>")

    out.append("<h2>Notebooks that crashed or ran out of time</h2>")
    if data["crashed"]:
        out.append("<table class='sortable' id='crashed'><thead><tr><th>learner</th><th>notebook</th><th>what stopped it</th>"
                   "</tr></thead><tbody>")
        for crash in data["crashed"]:
            what = ["ran out of time"] if crash["timed_out"] else []
            what += crash["cells"]
            out.append(f"<tr><td>{esc(crash['learner'])}</td><td><code>{esc(crash['notebook'])}</code></td>"
                       f"<td>{'<br>'.join(esc(w) for w in what)}</td></tr>")
        out.append("</tbody></table>")
    else:
        out.append("<p>None.</p>")
    out.append(f"<script>{_SORT}</script></body></html>")
    return "\n".join(out)


def write(cards: Sequence[dict[str, Any]], path: Path) -> None:
    path.write_text(render(cards), encoding="utf-8")
