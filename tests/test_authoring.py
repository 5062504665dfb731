"""solutions/ -> notebooks/: stubs, leaks, and the two folders in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from course.tools.authoring import AuthoringError, build, learner_notebook, strip_solutions

ROOT = Path(__file__).resolve().parent.parent


def test_top_level_block_becomes_named_stubs():
    src = "x = 1\n# BEGIN SOLUTION\nstmt = select(User)\na, b = 1, 2\n# END SOLUTION\nawait ex.q1.check(stmt)"
    out = strip_solutions(src)
    assert "select(User)" not in out
    assert "stmt = ...  # YOUR CODE HERE" in out and "a = ..." in out and "b = ..." in out
    assert out.startswith("x = 1\n") and out.endswith("await ex.q1.check(stmt)")


def test_block_inside_function_raises_not_implemented():
    src = "async def answer(session):\n    \"\"\"doc\"\"\"\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n"
    out = strip_solutions(src)
    assert "return 1" not in out
    assert "    raise NotImplementedError  # YOUR CODE HERE" in out
    assert '"""doc"""' in out


@pytest.mark.parametrize("src", ["# BEGIN SOLUTION\nx = 1\n", "x = 1\n# END SOLUTION\n", "# BEGIN SOLUTION\nprint(1)\n# END SOLUTION"])
def test_broken_markers_are_reported(src):
    with pytest.raises(AuthoringError):
        strip_solutions(src)


def test_outputs_and_solution_only_cells_never_reach_learners():
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "execution_count": 3, "source": "# BEGIN SOLUTION\nsecret = 42\n# END SOLUTION",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "42"}]},
            {"cell_type": "code", "metadata": {"tags": ["solution-only"]}, "execution_count": 1, "source": "print(secret)", "outputs": []},
        ],
        "metadata": {"kernelspec": {"name": "python3"}, "widgets": {"state": {}}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    out = learner_notebook(nb)
    text = json.dumps(out)
    assert "42" not in text and "print(secret)" not in text
    assert out["cells"][0]["outputs"] == [] and out["cells"][0]["execution_count"] is None
    assert "widgets" not in out["metadata"]


def test_notebooks_are_in_sync_with_solutions():
    result = build(ROOT, check=True)
    assert not result.problems, result.problems
    assert not result.stale, f"run `python -m course build`: {result.stale}"
    assert sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    )


def test_build_check_cli_names_a_stale_notebook(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    src = json.loads((ROOT / "solutions" / "00_start_here.ipynb").read_text())
    (tmp_path / "solutions" / "00_start_here.ipynb").write_text(json.dumps(src))
    proc = subprocess.run([sys.executable, "-m", "course", "build", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and "stale" in proc.stderr and "00_start_here.ipynb" in proc.stderr
    subprocess.run([sys.executable, "-m", "course", "build"], cwd=tmp_path, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "course", "build", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_learner_notebooks_carry_no_solution_code_and_no_outputs():
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert paths
    for nb_path in paths:
        nb = json.loads(nb_path.read_text())
        text = json.dumps(nb)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, nb_path
        for cell in nb["cells"]:
            assert "solution-only" not in cell.get("metadata", {}).get("tags", []), nb_path
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, nb_path


def test_every_exercise_stub_in_the_learner_notebooks_is_marked():
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        source = (ROOT / "solutions" / nb_path.name).read_text()
        blocks = source.count("# BEGIN SOLUTION")
        assert nb_path.read_text().count("# YOUR CODE HERE") >= blocks, nb_path
