"""The workshop kit: doctor, reset, admin (one server for a class) and a quick import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import course
from course import config as cfg
from course.tools import admin

ROOT = Path(__file__).resolve().parent.parent


def run_course(*argv: str, cwd: Path | None = None, **env_changes: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-m", "course", *argv], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


# --- fast start ---


def test_import_course_keeps_heavy_libraries_off() -> None:
    """The first cell imports course: pandas, matplotlib and ipywidgets load only when used."""
    heavy = ("pandas", "matplotlib", "ipywidgets", "IPython", "numpy", "nbformat", "nbclient")
    code = f"import sys, course; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# --- doctor ---


def test_doctor_passes_on_a_working_setup() -> None:
    done = run_course("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("Python", "SQLAlchemy", "aiosqlite", "asyncpg", "Jupyter kernel", "backend", "seeding"):
        assert f"✔ ok    {name}" in done.stdout, done.stdout
    assert "✘" not in done.stdout and "All good" in done.stdout


@pytest.mark.parametrize(
    ("url", "says", "fix"),
    [
        ("postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/test", "Could not reach a PostgreSQL server at 127.0.0.1:1",
         "Is the server running"),
        ("mysql://root:s3cret@db.example.com/shop", "names the backend 'mysql'", "Use a PostgreSQL URL"),
        ("postgresql://me:s3cret@127.0.0.1/test", "asyncpg", "postgresql+asyncpg://"),
    ],
    ids=["dead-port", "other-backend", "no-driver"],
)
def test_doctor_names_a_broken_setting_and_its_fix(url: str, says: str, fix: str) -> None:
    done = run_course("doctor", COURSE_DATABASE_URL=url)
    out = done.stdout + done.stderr
    assert done.returncode == 1
    assert "✘ FAIL  backend" in done.stdout and says in done.stdout
    assert "fix: " in done.stdout and fix in done.stdout
    assert "- skip  seeding" in done.stdout
    assert "Traceback" not in out and "s3cret" not in out


# --- reset ---


@pytest.fixture
def course_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A learner's copy of the course: lesson 00's solution, and their notebook with work in it."""
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "solutions" / "00_start_here.ipynb", tmp_path / "solutions")
    nb = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text(encoding="utf-8"))
    nb["cells"].append({"cell_type": "code", "execution_count": 3, "id": "mywork", "metadata": {},
                        "outputs": [], "source": ["my_answer = 42  # my own work"]})
    (tmp_path / "notebooks" / "00_start_here.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    monkeypatch.delenv(cfg.ENV_NAMESPACE, raising=False)  # the kernel's discriminator: its folder
    return tmp_path


def test_reset_without_a_lesson_lists_and_changes_nothing(course_copy: Path) -> None:
    before = (course_copy / "notebooks" / "00_start_here.ipynb").read_text()
    done = run_course("reset", cwd=course_copy / "notebooks", COURSE_NAMESPACE=None)
    assert done.returncode == 2
    assert "00  notebooks/00_start_here.ipynb  (changed)" in done.stdout
    assert "python -m course reset 03" in done.stdout
    assert (course_copy / "notebooks" / "00_start_here.ipynb").read_text() == before
    assert not (course_copy / "notebooks" / ".backup").exists()


async def test_reset_restores_the_notebook_keeps_the_work_and_drops_the_database(
    course_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = course_copy / "notebooks"
    mine = (notebooks / "00_start_here.ipynb").read_text()
    monkeypatch.chdir(notebooks)  # where Jupyter starts the lesson's kernel
    db = await course.start("00")
    await db.close()
    config = cfg.resolve_backend()
    assert db.namespace in {ns.name for ns in await admin.namespaces(config)}

    done = run_course("reset", "0", cwd=notebooks, COURSE_NAMESPACE=None)
    assert done.returncode == 0, done.stdout + done.stderr
    backups = list((notebooks / ".backup").glob("00_start_here.*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text() == mine
    assert f"your work is saved in notebooks/.backup/{backups[0].name}" in done.stdout
    assert (notebooks / "00_start_here.ipynb").read_text() == (ROOT / "notebooks" / "00_start_here.ipynb").read_text()
    assert f"dropped {db.namespace}" in done.stdout
    assert db.namespace not in {ns.name for ns in await admin.namespaces(config)}

    again = run_course("reset", "00_start_here", cwd=notebooks, COURSE_NAMESPACE=None)
    assert again.returncode == 0 and "already pristine" in again.stdout
    assert len(list((notebooks / ".backup").glob("*.ipynb"))) == 1  # nothing new to keep


# --- admin: one server, many learners ---


def test_admin_drop_refuses_without_a_user() -> None:
    done = run_course("admin", "drop")
    assert done.returncode == 2 and "refusing to drop without --user" in done.stdout


@pytest.mark.postgresql
async def test_two_learners_share_one_server_without_seeing_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sqlalchemy import insert, select

    from course.schema import Tag

    ann = f"ann{uuid.uuid4().hex[:8]}"
    ann_b = f"{ann}_b"  # ann's schemas' names are a prefix of ann_b's: only the comment tells them apart
    monkeypatch.delenv(cfg.ENV_NAMESPACE, raising=False)
    handles = {}
    try:
        for user in (ann, ann_b):
            monkeypatch.setenv(cfg.ENV_USER, user)
            handles[user] = await course.start("06")
        a, b = handles[ann], handles[ann_b]
        assert a.namespace.startswith(f"course_{ann}_06_") and b.namespace.startswith(f"course_{ann_b}_06_")

        async def work(db: course.CourseDB, tag: str) -> set[str]:
            async with db.engine.begin() as conn:
                await conn.execute(insert(Tag).values(name=tag))
            async with db.session() as session:
                return set((await session.scalars(select(Tag.name))).all())

        seen_a, seen_b = await asyncio.gather(work(a, "ann-was-here"), work(b, "ann-b-was-here"))
        assert "ann-was-here" in seen_a and "ann-b-was-here" not in seen_a
        assert "ann-b-was-here" in seen_b and "ann-was-here" not in seen_b
        assert len(seen_a) == len(seen_b) == 31

        listed = run_course("admin", "list", "--user", ann)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert a.namespace in listed.stdout and b.namespace not in listed.stdout
        assert f"{ann} " in listed.stdout and "1 schema," in listed.stdout

        dropped = run_course("admin", "drop", "--user", ann)
        assert dropped.returncode == 0, dropped.stdout + dropped.stderr
        assert f"dropped {a.namespace}" in dropped.stdout and b.namespace not in dropped.stdout
        left = {ns.name for ns in await admin.namespaces(a.config)}
        assert a.namespace not in left and b.namespace in left
        async with b.session() as session:  # ann_b's lesson goes on
            assert "ann-b-was-here" in set((await session.scalars(select(Tag.name))).all())
    finally:
        for db in handles.values():
            await db.discard()


@pytest.mark.sqlite
async def test_admin_on_sqlite_lists_and_drops_the_learners_files(monkeypatch: pytest.MonkeyPatch) -> None:
    ann = f"ann{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(cfg.ENV_USER, ann)
    db = await course.start("03")
    await db.close()
    listed = run_course("admin", "list", "--user", ann)
    assert "SQLite: schemas exist only on PostgreSQL" in listed.stdout
    assert f"{db.namespace}.sqlite3" in listed.stdout and "1 file," in listed.stdout
    dropped = run_course("admin", "drop", "--user", ann)
    assert dropped.returncode == 0 and f"dropped {db.namespace}" in dropped.stdout
    assert not db.sqlite_file.exists()
