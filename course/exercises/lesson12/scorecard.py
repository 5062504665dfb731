"""The capstone scorecard: four verdicts, one line per requirement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import (
    ExerciseFailed,
    strict,
)
from ..verdict import Verdict
from .feed import q1, q2
from .writes import q3, q4

_ICONS = {"correct": "✅", "incorrect": "❌", "not attempted": "✏️", "error": "⚠️"}  # plain text (a terminal)
_ICON_KINDS = {"correct": "ok", "incorrect": "bad", "not attempted": "todo", "error": "bad"}  # HTML: SVG, no font


@dataclass
class Scorecard:
    """The four capstone verdicts, one line per requirement: rules passed and the first problem."""

    name: str
    verdicts: list[Verdict]

    @property
    def score(self) -> tuple[int, int]:
        """(exercises correct, exercises)."""
        return sum(v.correct for v in self.verdicts), len(self.verdicts)

    def lines(self) -> list[tuple[Verdict, str, int, int, str]]:
        """(verdict, requirement, rules passed, rules, first problem) per requirement."""
        out = []
        for verdict in self.verdicts:
            groups: dict[str, list[Any]] = {}
            for rule in verdict.rules:
                groups.setdefault(rule.rule.split(" · ", 1)[0], []).append(rule)
            if not groups:
                out.append((verdict, "", 0, 0, verdict.message if verdict.status != "correct" else ""))
            for group, rules in groups.items():
                failed = [r for r in rules if not r.passed]
                problem = failed[0].message.split(": ", 1)[-1] if failed else ""
                out.append((verdict, group, len(rules) - len(failed), len(rules), problem))
        return out

    def __str__(self) -> str:
        got, total = self.score
        rules = [(p, n) for _, _, p, n, _ in self.lines()]
        n_rules = sum(n for _, n in rules)
        text_ = [f"{self.name}: {got}/{total} exercises correct"
                 + (f", {sum(p for p, _ in rules)}/{n_rules} rules pass" if n_rules else "")]
        shown = None
        for verdict, group, passed, n, problem in self.lines():
            if verdict is not shown:
                text_.append(f"  {_ICONS.get(verdict.status, '?')} {verdict.exercise} {verdict.title}: {verdict.status}")
                shown = verdict
            if group:
                text_.append(f"       {passed}/{n}  {group}" + (f": {problem}" if problem else ""))
            elif problem:
                text_.append(f"       {problem}")
        return "\n".join(text_)

    def _repr_html_(self) -> str:
        from ...display import box, esc, icon

        rows = []
        shown = None
        for verdict, group, passed, n, problem in self.lines():
            first = verdict is not shown
            shown = verdict
            head = f"{icon(_ICON_KINDS.get(verdict.status, 'info'))}{esc(verdict.exercise)} {esc(verdict.title)}" if first else ""
            count = f"{passed}/{n}" if n else ""
            rows.append(
                f"<tr><td>{head}</td><td>{esc(group)}</td><td>{count}</td><td>{esc(problem)}</td></tr>"
            )
        got, total = self.score
        table = (
            "<table class=\"course-table\"><tr><th>exercise</th><th>requirement</th><th>rules</th><th>first problem</th></tr>"
            + "".join(rows) + "</table>"
        )
        kind = "ok" if got == total else "todo" if all(v.status == "not attempted" for v in self.verdicts) else "bad"
        return box(kind, f"Scorecard · {esc(self.name)}: {got}/{total} exercises correct", table, css="course-verdict")


async def scorecard(answer: Any, *, db: Any = None, fresh: bool = False) -> Scorecard:
    """Judge ``answer`` on every capstone exercise and show one scorecard, requirement by requirement.

    An exercise just checked with this very object is not run again (``fresh=True`` runs all
    four). ``card.score`` is ``(correct, total)``; ``card.verdicts`` holds each exercise's
    verdict with every rule. In strict mode (the test suite) a wrong answer raises, as
    ``check()`` does.
    """
    from ...display import in_notebook

    verdicts = []
    for exercise in (q1, q2, q3, q4):
        known = None if fresh else exercise.last_verdict(answer)
        verdicts.append(known or await exercise.evaluate(answer, db=db))
    card = Scorecard(getattr(answer, "__name__", type(answer).__name__), verdicts)
    if in_notebook():
        from IPython.display import display

        display(card)
    else:
        print(card)
    bad = [v for v in verdicts if v.status in ("incorrect", "error")]
    if strict() and bad:
        raise ExerciseFailed(str(bad[0]))
    return card
