"""``python -m course reset [LESSON]``: a lesson's notebook back to pristine, your work kept.

The pristine notebook is the learner version generated from ``solutions/`` (what
``python -m course build`` writes), or, without ``solutions/``, the one in git's HEAD.
Your current notebook is first copied to ``notebooks/.backup/NN_name.<timestamp>.ipynb``:
nothing you wrote is ever lost. Then the lesson's database goes: the namespace a kernel
started in ``notebooks/`` uses (its discriminator is the kernel's working directory,
which Jupyter sets to the notebook's folder), and its scratch copy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import config as cfg

BACKUP_DIR = ".backup"
_START = re.compile(r"""course\.start\(\s*["']([^"']+)["']""")


@dataclass
class Lesson:
    number: str  # "03"
    notebook: Path  # notebooks/03_topic.ipynb (may not exist)
    pristine: str  # the learner notebook's text as generated

    @property
    def lesson_id(self) -> str:
        """What the notebook passes to ``course.start()`` (the namespace is built from it)."""
        match = _START.search(self.pristine)
        return match.group(1) if match else self.number

    def namespaces(self) -> list[str]:
        folder = self.notebook.parent
        return [cfg.namespace_for(self.lesson_id, cwd=folder),
                cfg.namespace_for(self.lesson_id, cwd=folder, variant="scratch")]

    def state(self) -> str:
        if not self.notebook.exists():
            return "missing"
        return "pristine" if self.notebook.read_text(encoding="utf-8") == self.pristine else "changed"


def _from_solutions(path: Path) -> str:
    from .authoring import _split_lines, dumps, learner_notebook

    nb = json.loads(path.read_text(encoding="utf-8"))
    return dumps(_split_lines(learner_notebook(nb, where=str(path))))


def _from_git(root: Path, name: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), "show", f"HEAD:notebooks/{name}"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def lessons(root: Path) -> list[Lesson]:
    """Every lesson that has a pristine version: from solutions/ or, failing that, git."""
    from .authoring import LESSON_FILE

    notebooks = root / "notebooks"
    found: dict[str, Lesson] = {}
    for path in sorted((root / "solutions").glob("*.ipynb")):
        if LESSON_FILE.match(path.name):
            found[path.name] = Lesson(path.name[:2], notebooks / path.name, _from_solutions(path))
    for path in sorted(notebooks.glob("*.ipynb")):
        if LESSON_FILE.match(path.name) and path.name not in found:
            text = _from_git(root, path.name)
            if text is not None:
                found[path.name] = Lesson(path.name[:2], path, text)
    return sorted(found.values(), key=lambda lesson: lesson.notebook.name)


def pick(all_lessons: list[Lesson], wanted: str) -> Lesson | None:
    """``3``, ``03``, ``03_aggregation_and_pagination`` or a path to the notebook."""
    name = Path(wanted).name
    number = name.zfill(2) if name.isdigit() else name[:2] if name[:2].isdigit() else None
    for lesson in all_lessons:
        if number and lesson.number == number:
            return lesson
    return None


def backup(notebook: Path, now: dt.datetime | None = None) -> Path:
    """Copy the notebook to notebooks/.backup/NN_name.<timestamp>.ipynb (never overwriting one)."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder = notebook.parent / BACKUP_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{notebook.stem}.{stamp}.ipynb"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{notebook.stem}.{stamp}-{n}.ipynb"
    shutil.copy2(notebook, target)
    return target


def reset_notebook(lesson: Lesson) -> Path | None:
    """Write the pristine notebook; returns the backup made of the learner's copy (None if none was needed)."""
    saved = None
    if lesson.state() == "changed":
        saved = backup(lesson.notebook)
    if lesson.state() != "pristine":
        lesson.notebook.parent.mkdir(parents=True, exist_ok=True)
        lesson.notebook.write_text(lesson.pristine, encoding="utf-8")
    return saved


def main(root: Path, wanted: str | None) -> int:
    from ..errors import CourseError
    from .admin import drop_namespaces

    all_lessons = lessons(root)
    if not all_lessons:
        print(f"no lessons found under {root} (looked for solutions/NN_*.ipynb and notebooks/NN_*.ipynb)")
        return 1
    if wanted is None:
        print("Reset restores one lesson's notebook and database. It would reset one of:")
        for lesson in all_lessons:
            print(f"  {lesson.number}  {lesson.notebook.relative_to(root)}  ({lesson.state()})")
        print("Name one, for example: python -m course reset 03")
        return 2
    lesson = pick(all_lessons, wanted)
    if lesson is None:
        print(f"no lesson {wanted!r}; lessons: {', '.join(x.number for x in all_lessons)}")
        return 2

    rel = lesson.notebook.relative_to(root)
    state = lesson.state()
    saved = reset_notebook(lesson)
    if saved is not None:
        print(f"your work is saved in {saved.relative_to(root)}")
    print(f"{rel}: {'already pristine' if state == 'pristine' else 'restored to pristine'}")
    if state != "pristine":
        print("  (open in JupyterLab? use File > Reload Notebook from Disk, and do not save the old copy)")

    try:
        config = cfg.resolve_backend()
        results = asyncio.run(drop_namespaces(config, lesson.namespaces()))
    except CourseError as exc:
        print(f"the notebook is reset, but not its database: {exc}")
        return 1
    failed = [(name, why) for name, why in results if why not in (None, "no such file", "no such schema")]
    for name, why in results:
        if why is None:
            print(f"dropped {name} ({config.label})")
    for name, why in failed:
        print(f"NOT dropped {name}: {why}")
    if not failed:
        print(f"database reset: the setup cell will make a fresh one (course.start({lesson.lesson_id!r}))")
    return 1 if failed else 0
