"""The first hour of a new user: the README's commands, the command line's help, lesson 00 on Run All.

- The README's start command opens lesson 00 with the repository as JupyterLab's root (the
  file browser reaches ``solutions/`` and ``docs/``), the same path Binder's link opens.
- The Python versions named in pyproject.toml, the README and the doctor are those CI runs.
- The README says where the SQLite databases live, and it is where the course puts them.
- ``python -m course --help`` shows no reStructuredText backticks.
- No lesson reveals a hint on Run All, and no cell shows the same message twice.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from course import config as cfg
from tests.e2e_support import free_port, processes_mentioning, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def readme_lab_arguments() -> list[str]:
    """The arguments the README's start command gives ``jupyter lab``."""
    line = next(line for line in README.splitlines() if "jupyter lab" in line and "pip install" in line)
    return shlex.split(line.split("jupyter lab", 1)[1])


def test_readme_opens_lesson_00_with_the_repository_as_root(tmp_path: Path) -> None:
    args = readme_lab_arguments()
    port, token = free_port(), "first-hour"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    command = [sys.executable, "-m", "jupyterlab", *args, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def contents() -> list[str] | None:
            assert server.poll() is None, log.read_text(errors="replace")
            try:
                with opener.open(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=2) as r:
                    return [item["name"] for item in json.loads(r.read())["content"]]
            except OSError:
                return None

        names = wait_for(contents, timeout=90, what="JupyterLab to list its root folder")
        assert {"notebooks", "solutions", "docs", "README.md"} <= set(names), names
        opens = wait_for(lambda: list((tmp_path / "runtime").glob("jpserver-file-to-run-*-open.html")), timeout=30,
                         what="the page JupyterLab opens")
        page = opens[0].read_text(encoding="utf-8")
        assert "/lab/tree/notebooks/00_start_here.ipynb" in page, page
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert processes_mentioning(str(tmp_path / "runtime")) == []
    # Binder opens the same notebook from the same root (the repository)
    binder = re.search(r"mybinder\.org/v2/gh/[^)\s]*urlpath=([^)\s]+)", README)
    assert binder and binder.group(1) == "lab/tree/notebooks/00_start_here.ipynb"


def test_python_versions_named_are_those_ci_runs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    named = set(re.findall(r"Python :: (3\.\d+)", "\n".join(project["project"]["classifiers"])))
    assert named == {"3.11", "3.12"}  # CI (this machine) and Binder (binder/runtime.txt)
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.12"
    assert "Python 3.11 or newer" in README
    for text in (README, (ROOT / "course" / "tools" / "doctor.py").read_text(), (ROOT / ".ci" / "run").read_text()):
        assert "3.10" not in text


def test_readme_says_where_sqlite_databases_live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cfg.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    where = cfg.data_dir()
    assert where == tmp_path / ".cache" / "async-sqlalchemy-course"
    assert "`~/.cache/async-sqlalchemy-course/`" in README and "`COURSE_DATA_DIR`" in README
    assert "python -m course reset 03" in README and "admin drop --user" in README


@pytest.mark.parametrize("command", ["", "build", "grade", "doctor", "reset", "use", "admin"])
def test_help_shows_no_restructuredtext(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "course", *command.split(), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "`" not in done.stdout, done.stdout


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name[:2])
def test_run_all_reveals_no_hint(path: Path) -> None:
    hints = [line for cell in code_cells(path) for line in cell.splitlines() if re.match(r"\s*ex\.q\d+\.hint\(", line)]
    assert not hints, f"{path.name}: Run All would show a hint: {hints} (comment the call out)"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name[:2])
def test_no_cell_prints_what_its_expect_box_shows(path: Path) -> None:
    for cell in code_cells(path):
        for name in re.findall(r"course\.expect\([^\n]*\bas (\w+)", cell):
            assert not re.search(rf"print\({name}\.message\)", cell), (
                f"{path.name}: the box of course.expect already shows {name}.message; printing it shows it twice"
            )
