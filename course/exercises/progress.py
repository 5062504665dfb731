"""Learner progress: every ``check()`` leaves one line in a small local file (``course.progress()`` shows it).

The record is ``progress.jsonl`` in the course's data folder (``COURSE_DATA_DIR``, else
``~/.cache/async-sqlalchemy-course``): one JSON line per checked answer with the lesson,
the exercise, the status and the time, never the answer's code. Appending a line is all a
check does, so two notebooks checking at once do not overwrite each other, and the record
survives a kernel restart, ``course.start()`` again and ``python -m course reset NN``.

Nothing is recorded for a notebook running from ``solutions/`` (the authors' copies, the
site build) or when ``COURSE_PROGRESS=0``; the test suite points ``COURSE_DATA_DIR`` at a
temporary folder. A check whose answer is still the stub ("not attempted") is not recorded.

``course.progress()`` shows the overview (lesson x exercise: correct, not yet, not attempted),
the next exercise to do and a small chart; ``course.progress("06")`` one lesson's line;
``python -m course progress`` the same in a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .record import (
    CORRECT,
    FILE,
    MARK,
    NOT_YET,
    TODO,
    clear,
    not_recording_because,
    on_binder,
    read_record,
    record_path,
)

LESSONS = {
    "00": "Start here", "01": "Async ORM essentials", "02": "Filtering",
    "03": "Aggregation, columns and pagination", "04": "Joins", "05": "Subqueries and CTEs",
    "06": "Loader strategies", "07": "Bulk operations", "08": "Sessions, transactions and testing",
    "09": "Connection pooling", "10": "Error handling and security",
    "11": "Indexes, plans and the statement cache", "12": "Capstone",
}


@dataclass
class ExerciseState:
    id: str
    title: str
    status: str = TODO
    attempts: int = 0
    last: str = ""


@dataclass
class Overview:
    """What ``course.progress()`` returns: shows as a table and chart in a notebook, text elsewhere."""

    lessons: dict[str, list[ExerciseState]]
    only: str | None = None
    path: Path = field(default_factory=record_path)

    def states(self) -> list[ExerciseState]:
        return [s for row in self.lessons.values() for s in row]

    def status(self) -> dict[str, str]:
        """``{"02.q1": "correct", ...}`` for every exercise shown."""
        return {s.id: s.status for s in self.states()}

    def counts(self) -> dict[str, int]:
        states = [s.status for s in self.states()]
        return {k: states.count(k) for k in (CORRECT, NOT_YET, TODO)}

    def next_exercise(self) -> ExerciseState | None:
        """The first exercise, in course order, not answered correctly yet."""
        return next((s for s in self.states() if s.status != CORRECT), None)

    def _headline(self) -> str:
        c = self.counts()
        what = f"lesson {self.only}" if self.only else "the course"
        return (f"Your progress in {what}: {c[CORRECT]} of {sum(c.values())} exercises correct, "
                f"{c[NOT_YET]} not yet, {c[TODO]} not attempted")

    def _next_line(self) -> str:
        nxt = self.next_exercise()
        if nxt is None:
            where = f"lesson {self.only}" if self.only else "the course"
            return f"Next: nothing left in {where}: every exercise is correct."
        return f"Next: {nxt.id} {nxt.title} (lesson {nxt.id[:2]} · {LESSONS.get(nxt.id[:2], '')})"

    def _notes(self) -> list[str]:
        notes = []
        why = not_recording_because()
        if why:
            notes.append(f"Checks run here are not recorded: {why}.")
        if on_binder():
            notes.append(
                "On Binder this record lives only as long as the session and is lost when it stops. "
                f"To keep it, copy it next to your notebooks (`!cp {self.path} ~/`) and download "
                f"{FILE} from the file browser (right-click › Download); in a new session, upload "
                f"it and copy it back to {self.path}."
            )
        return notes

    def __str__(self) -> str:
        width = max(len(f"{n} {LESSONS.get(n, '')}") for n in self.lessons) + 2
        lines = [self._headline(), ""]
        for number, row in self.lessons.items():
            label = f"{number} {LESSONS.get(number, '')}".ljust(width)
            marks = " ".join(MARK[s.status] for s in row)
            done = sum(s.status == CORRECT for s in row)
            bar = "#" * done + "x" * sum(s.status == NOT_YET for s in row)
            lines.append(f"{label}{marks.ljust(12)} {done}/{len(row)}  {bar}")
        lines += ["", f"{MARK[CORRECT]} correct   {MARK[NOT_YET]} not yet   {MARK[TODO]} not attempted",
                  self._next_line(), f"Record: {self.path}"]
        lines += self._notes()
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ..display import STYLE, esc, icon

        width = max(len(r) for r in self.lessons.values())
        head = "".join(f"<th>q{i}</th>" for i in range(1, width + 1))
        rows = []
        for number, row in self.lessons.items():
            cells = "".join(
                f'<td class="course-progress-{s.status.replace(" ", "-")}" title="{esc(s.id)} {esc(s.title)}'
                f'{f" · {s.attempts} checks, last {s.last[:16]}" if s.attempts else ""}">'
                f"{MARK[s.status]}{' ' + esc(s.status) if s.status != TODO else ''}</td>"
                for s in row
            )
            done = sum(s.status == CORRECT for s in row)
            rows.append(f"<tr><th>{number} {esc(LESSONS.get(number, ''))}</th>{cells}"
                        f"{'<td></td>' * (width - len(row))}<td>{done}/{len(row)}</td></tr>")
        table = (f'<table class="course-table course-progress-table"><tr><th>lesson</th>{head}<th>done</th></tr>'
                 + "".join(rows) + "</table>")
        chart = "" if self.only else self._chart_img()
        notes = "".join(f"<div><i>{esc(n)}</i></div>" for n in self._notes())
        return (f'{STYLE}<style>.course-progress td.course-progress-correct{{background:#e8f5e9}}'
                f'.course-progress td.course-progress-not-yet{{background:#ffebee}}'
                f'.course-progress td.course-progress-not-attempted{{color:#6d6d6d}}'
                f'.course-progress-table td{{white-space:nowrap}}</style>'
                f'<div class="course-box course-info course-progress"><b>{icon("info")}{esc(self._headline())}</b>'
                f"{table}<div>{MARK[CORRECT]} correct&emsp;{MARK[NOT_YET]} not yet&emsp;{MARK[TODO]} not attempted</div>"
                f"<div><b>{esc(self._next_line())}</b></div>{chart}{notes}</div>")

    def _chart_img(self) -> str:
        import base64
        import io

        from matplotlib.figure import Figure  # no pyplot: the kernel's backend is left alone

        labels = list(self.lessons)
        fig = Figure(figsize=(6, 1.8), dpi=100)
        ax = fig.subplots()
        left = [0] * len(labels)
        for status, colour in ((CORRECT, "#2e7d32"), (NOT_YET, "#c62828"), (TODO, "#bdbdbd")):
            values = [sum(s.status == status for s in row) for row in self.lessons.values()]
            ax.bar(labels, values, bottom=left, color=colour, label=status, width=0.7)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_ylabel("exercises")
        ax.set_xlabel("lesson")
        ax.legend(loc="upper left", fontsize=7, frameon=False, ncols=3)
        ax.set_ylim(0, max(left or [1]) + 2.5)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = base64.b64encode(buf.getvalue()).decode()
        return f'<img class="course-progress-chart" alt="exercises per lesson by status" src="data:image/png;base64,{data}">'


def overview(lesson: str | None = None) -> Overview:
    """Every exercise of the course (or of one lesson) with its best status so far."""
    from . import exercises_of, lesson_modules

    only = None
    if lesson is not None:
        only = str(lesson).strip()[:2].zfill(2)
    lessons: dict[str, list[ExerciseState]] = {}
    by_id: dict[str, ExerciseState] = {}
    for number, module in lesson_modules().items():
        if only is not None and number != only:
            continue
        row = [ExerciseState(ex.id, ex.title) for ex in exercises_of(module)]
        row.sort(key=lambda s: int(s.id.split(".q")[-1]) if s.id.split(".q")[-1].isdigit() else 0)
        lessons[number] = row
        by_id.update({s.id: s for s in row})
    if only is not None and not lessons:
        from ..errors import CourseError

        raise CourseError(f"There is no lesson {lesson!r} with exercises.",
                          hint="Name one of " + ", ".join(LESSONS) + ", for example course.progress(\"03\").")
    for item in read_record():
        state = by_id.get(item["exercise"])
        if state is None:
            continue
        state.attempts += 1
        state.last = str(item.get("time", ""))
        if state.status != CORRECT:  # once correct, an exercise stays done
            state.status = item["status"]
    return Overview(lessons, only)


def progress(lesson: str | None = None) -> Overview:
    """Your progress: ``course.progress()`` for the whole course, ``course.progress("06")`` for a lesson."""
    return overview(lesson)


def main(lesson: str | None, *, reset: bool, yes: bool) -> int:
    """``python -m course progress [LESSON] [--reset [--yes]]``."""
    import sys

    from ..errors import CourseError

    try:
        view = overview(lesson)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not reset:
        print(view)
        return 0
    n = len([i for i in read_record() if view.only is None or i["exercise"].split(".")[0] == view.only])
    what = f"lesson {view.only}'s" if view.only else "your whole"
    if n == 0:
        print(f"Nothing to clear: {what} progress record is empty ({view.path}).")
        return 0
    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            print(f"Not cleared: clearing {what} progress record ({n} checks) needs a yes, and there is "
                  "no terminal here to ask. Run it again with --yes to clear it without asking:\n"
                  f"  python -m course progress{' ' + view.only if view.only else ''} --reset --yes",
                  file=sys.stderr)
            return 1
        answer = input(f"Clear {what} progress record ({n} checks, {view.path})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Not cleared.")
            return 1
    cleared = clear(view.only)
    print(f"Cleared {cleared} recorded checks from {what} progress record.")
    return 0
