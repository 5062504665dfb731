"""A test run leaves nothing in the temporary folder: not after a pass, not after a failure.

The project's own conftest.py is run against two small tests (one writes a file where the
lessons' SQLite databases go, one fails), with ``TMPDIR`` pointing at an empty folder: after
pytest exits, that folder must be empty again, with and without xdist workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

INNER_TESTS = '''
import os
from pathlib import Path

from course.config import data_dir


def test_writes_a_database_file():
    folder = Path(os.environ["COURSE_DATA_DIR"])
    assert data_dir() == folder  # where course.start() puts SQLite files
    (folder / "lesson.sqlite3").write_bytes(b"x" * 4096)


def test_fails(tmp_path):
    (tmp_path / "scratch").write_text("kept only if pytest keeps failed tests' folders")
    assert False, "this test fails on purpose"
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_failing_run_leaves_no_course_test_folder(tmp_path: Path, workers: list[str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(ROOT / "conftest.py", project / "conftest.py")
    (project / "test_inner.py").write_text(INNER_TESTS)
    temp = tmp_path / "tmp"
    temp.mkdir()
    # SQLite whatever the outer run uses: the inner run must not touch the shared PostgreSQL
    # server (its conftest drops the run's pristine seed copies there when it ends)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COURSE_DATA_DIR", "COURSE_DATABASE_URL", "COURSE_NAMESPACE"))}
    env.update(TMPDIR=str(temp), PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-o", "tmp_path_retention_policy=none", *workers, "test_inner.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # one test failed, as written
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    left = sorted(str(p.relative_to(temp)) for p in temp.rglob("*") if not p.is_dir())
    course_folders = [p.name for p in temp.iterdir() if p.name.startswith("course-test-")]
    assert course_folders == [], f"the run left {course_folders} in {temp}"
    assert left == [], f"the run left files in the temporary folder: {left}"
