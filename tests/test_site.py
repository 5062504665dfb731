"""The website builder's own parts, without building a site (CI builds and checks the real one:
`python -m course site --check`): friendly messages for what is missing, the staged lesson, the checker."""

from __future__ import annotations

import json
from pathlib import Path

from course.tools import site

ROOT = Path(__file__).resolve().parent.parent


def test_a_missing_extra_says_what_to_install(tmp_path, monkeypatch, capsys):
    # whatever this environment has (the CI's first phases run without the site extra), only myst_nb is missing
    monkeypatch.setattr(site.importlib.util, "find_spec", lambda name: None if name == "myst_nb" else object())
    assert site.main(ROOT, tmp_path / "out", cache=tmp_path / "cache") == 1
    err = capsys.readouterr().err
    assert "needs myst_nb, which is not installed" in err and 'pip install -e ".[site]"' in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_missing_npm_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(site, "_missing_modules", lambda: [])
    monkeypatch.setattr(site.shutil, "which", lambda name: None)
    assert site.main(ROOT, tmp_path / "out", cache=tmp_path / "cache") == 1
    err = capsys.readouterr().err
    assert "npm is not installed" in err and "apt-get install npm" in err and "Traceback" not in err


def test_a_folder_that_is_not_a_built_site_is_left_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(site, "_missing_modules", lambda: [])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert site.main(ROOT, out, cache=tmp_path / "cache") == 1
    assert "holds no site built by this command: it is left alone" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def _executed() -> site.Executed:
    widget = {"output_type": "display_data", "metadata": {},
              "data": {site.WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0}}}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# 06 · Title\n\nSee [the playground](#The-pool-playground)"},
        {"cell_type": "code", "metadata": {}, "source": "explorer", "outputs": [widget], "execution_count": 1},
        {"cell_type": "code", "metadata": {}, "execution_count": 2, "outputs": [],
         "source": "# BEGIN SOLUTION\nanswer = 1\n# END SOLUTION\nawait ex.q1.check(answer)"},
    ]}
    return site.Executed(Path("solutions/06_loader_strategies.ipynb"), nb, 1.0, False)


def test_a_staged_lesson_folds_solutions_notes_widgets_and_links_binder_and_download():
    nb = json.loads(site.stage_lesson(_executed()))
    links, explorer, exercise = nb["cells"][1], nb["cells"][2], nb["cells"][3]
    assert "urlpath=lab/tree/notebooks/06_loader_strategies.ipynb" in links["source"]
    assert 'href="../notebooks/06_loader_strategies.ipynb" download' in links["source"]
    assert [list(o["data"]) for o in explorer["outputs"]] == [[site.WIDGET_MIME], ["text/html", "text/plain"]]
    assert "live" in explorer["outputs"][1]["data"]["text/html"]
    assert exercise["metadata"]["tags"] == ["hide-input"] and explorer["metadata"].get("tags") is None
    assert "(#the-pool-playground)" in nb["cells"][0]["source"]  # the site's anchors are lower case


def test_the_checker_finds_a_missing_page_a_broken_link_and_an_error(tmp_path):
    out = tmp_path / "site"
    (out / "lessons").mkdir(parents=True)
    (out / "index.html").write_text('<a href="lessons/00_start_here.html#nowhere">00</a><a href="gone.html">x</a>')
    (out / "lessons" / "00_start_here.html").write_text(
        '<h1 id="top">00</h1><div class="output traceback">Traceback (most recent call last)</div>')
    results = dict(site.check_site(ROOT, out))
    assert "shows a traceback" in results["lesson page 00_start_here"]
    assert "has no SQL log" in results["lesson page 00_start_here"]
    assert "is missing" in results["lesson page 06_loader_strategies"]
    assert "index.html: gone.html (no such file)" in results["internal links"]
    assert "index.html: lessons/00_start_here.html#nowhere (no such anchor)" in results["internal links"]
    assert results["search"] and results["navigation lists every lesson"]
