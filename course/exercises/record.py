"""The learner's progress record: ``check()`` appends one line per verdict (see :mod:`.progress`).

Kept apart from the overview so the checker depends on nothing but this small file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from .. import config as cfg

FILE = "progress.jsonl"
ENV_PROGRESS = "COURSE_PROGRESS"  # "0" / "off": record nothing
BINDER_ENV = ("BINDER_SERVICE_HOST", "BINDER_LAUNCH_HOST", "BINDER_REPO_URL")

CORRECT, NOT_YET, TODO = "correct", "not yet", "not attempted"
MARK = {CORRECT: "✔", NOT_YET: "✘", TODO: "·"}


def record_path() -> Path:
    return cfg.data_dir() / FILE


def on_binder() -> bool:
    return any(os.environ.get(name) for name in BINDER_ENV)


def not_recording_because() -> str | None:
    """Why checks here are not recorded (None: they are)."""
    if os.environ.get(ENV_PROGRESS, "").strip().lower() in ("0", "off", "false", "no"):
        return f"{ENV_PROGRESS}=0 is set"
    here = Path.cwd()
    if here.name == "solutions" and (here.parent / "notebooks").is_dir():
        return "this notebook runs from solutions/ (the reference copies)"
    return None


def record_verdict(verdict: Any) -> None:
    """Append one line for ``verdict`` (a :class:`~course.exercises.Verdict`); never raises."""
    if verdict.status == TODO or not_recording_because():
        return
    line = {
        "lesson": verdict.exercise.split(".")[0],
        "exercise": verdict.exercise,
        "status": CORRECT if verdict.status == CORRECT else NOT_YET,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with record_path().open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    except OSError:  # a read-only data folder must never break a check
        pass


def read_record(path: Path | None = None) -> list[dict[str, str]]:
    """Every recorded check, oldest first (lines that are not a check are skipped)."""
    path = path or record_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("exercise"), str) and item.get("status") in (CORRECT, NOT_YET):
            out.append(item)
    return out


def clear(lesson: str | None = None) -> int:
    """Forget the record (or one lesson's lines); returns how many checks were forgotten."""
    items = read_record()
    keep = [] if lesson is None else [i for i in items if i["exercise"].split(".")[0] != lesson]
    path = record_path()
    if keep:
        path.write_text("".join(json.dumps(i) + "\n" for i in keep), encoding="utf-8")
    else:
        path.unlink(missing_ok=True)
    return len(items) - len(keep)
