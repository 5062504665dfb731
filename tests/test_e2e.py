"""JupyterLab in a real browser: lessons 00, 06, 07 and 09 run through the UI, checked as a learner sees them.

Selected only with ``pytest -m e2e`` (the default run deselects it, see conftest.py). Needs
Debian's Chromium at /usr/bin/chromium (or ``COURSE_E2E_CHROMIUM``) and the ``e2e`` extra
(playwright, driving that Chromium: no browser is ever downloaded).

One private JupyterLab server (free loopback port, random token, notebook windowing off) and one
headless Chromium serve the whole module. Each lesson's *solutions* notebook (a temporary copy) is
opened, run with Run > Run All Cells, and checked: every code cell has an execution count, no output
is a traceback, the SQL log and the charts rendered, every exercise verdict is "correct", and the
lesson's widget answers in the page (06: another loader strategy changes the statement count; 09: a
burst larger than the pool times out). What the page looks like is checked too, on computed styles
and sizes at a 1280 px window: the SQL log wraps at spaces (no break inside a word, no white code
background, no stray indent), ``course.frame`` tables show no index and fit the notebook (a wide one
scrolls in its own box), charts are at least 700 px wide, verdicts show no backticks and their icons
draw without any font. The solutions are used, not the learner copies, so the exercise cells run
real answers and their verdicts (rendered by the checker) are part of what is checked. Screenshots
and the server's log go to test-artifacts/e2e/ (ignored by git): one per lesson and one per thing
checked (``lesson00-table.png`` and so on), taken whatever the outcome, so a failure has them too.
docs/screenshot.png, shown in the README, is test-artifacts/e2e/lesson06.png reduced to 256 colours
with Pillow (``quantize(256)``, ``save(..., optimize=True)``).

The last test opens the course website's lesson 00 (built beforehand by ``python -m course site``
into ``site/`` or ``COURSE_SITE_DIR``; CI's site phase does) from a local server and checks its
navigation, a SQL log table, the diagram, the folded solution and offline search; its screenshot,
reduced the same way, is docs/site.png.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e_support import CHROMIUM, CHROMIUM_ARGS, ROOT, Budget, LabServer, wait_for

pytestmark = pytest.mark.e2e

FOLDER = "solutions"
LESSONS = {
    "00": "00_start_here.ipynb",
    "06": "06_loader_strategies.ipynb",
    "07": "07_bulk_operations.ipynb",
    "09": "09_connection_pooling.ipynb",
}
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
VIEWPORT = {"width": 1280, "height": 800}

# Bounded waits: every wait takes at most what is left of one budget, so the module stays under
# 6 minutes even when every wait runs out. Nothing is retried but waiting.
BUDGET = Budget(330.0)
LOAD_S = 45.0  # open a notebook and start its kernel (about 4 s here)
RUN_S = 120.0  # run all cells of one lesson (8 to 15 s here, 07 about 40 s)
WIDGET_S = 20.0  # a widget's answer after a change (well under 2 s here)

STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
KERNEL_STATUS = ".jp-StatusBar-TextItem"
PROMPTS = ".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt"
TRACEBACK = re.compile(r"Traceback|\b\w*(Error|Exception)\b")


def left(cap: float) -> float:
    return BUDGET.left(cap)


def ms(cap: float) -> float:
    """The same, in milliseconds (what playwright's timeouts take)."""
    return BUDGET.left(cap) * 1000


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set COURSE_E2E_CHROMIUM)")
    BUDGET.start()
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"), list(LESSONS.values()))
    server.prepare(ROOT / FOLDER)
    try:
        server.start(timeout=left(60))
        # the settings override took effect: every cell is attached to the page, not only those in view
        tracker = server.api("/lab/api/settings/@jupyterlab/notebook-extension:tracker")
        assert tracker["settings"].get("windowingMode") == "none", tracker["raw"]
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if server.log_path is not None and server.log_path.exists():
            shutil.copyfile(server.log_path, ARTIFACTS / "jupyterlab.log")
    assert server.process is not None and server.process.poll() is not None, "JupyterLab still running"
    assert server.kernel_processes() == [], "kernel processes outlived the server"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:  # imported here: without the e2e extra the default run must still collect this module
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e .[e2e] (it drives Debian's chromium, no download)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab: LabServer) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)  # clicks and reads; the waits take theirs from the budget
    try:
        yield context.new_page()
    finally:
        context.close()
        lab.shutdown_kernels()  # this lesson is done: its kernel goes now, not at the end


# ------------------------------------------------------------------ driving the UI


def notebook_cells(name: str) -> list[dict]:
    """The cells of a notebook file, as stored (no outputs)."""
    return json.loads((ROOT / FOLDER / name).read_text(encoding="utf-8"))["cells"]


def kernel_idle(page) -> bool:
    return page.locator(KERNEL_STATUS, has_text=re.compile(r"\| Idle$")).count() > 0


def open_and_run(page, lab: LabServer, name: str) -> list[str]:
    """Open ``name`` in JupyterLab, Run > Run All Cells, wait until it is done; the input prompts."""
    page.goto(lab.lab_url(f"{FOLDER}/{name}", workspace=f"e2e-{name[:2]}"))
    page.locator(KERNEL_STATUS, has_text=re.compile(r"\| Idle$")).wait_for(timeout=ms(LOAD_S))
    assert page.locator(".jp-NotebookPanel").count() == 1, "another notebook is open in this workspace"
    # windowing is off: every cell is in the page and laid out (JupyterLab 4.6's default leaves
    # cells out of view to the browser with content-visibility: auto; "full" detaches them)
    expected = len(notebook_cells(name))
    wait_for(
        lambda: page.locator(".jp-NotebookPanel .jp-Cell").count() == expected,
        timeout=left(LOAD_S), what=f"all {expected} cells of {name} to be in the page (windowing off)",
    )
    windowed = page.locator(".jp-NotebookPanel .jp-Cell").evaluate_all(
        "els => els.filter(e => getComputedStyle(e).contentVisibility === 'auto'"
        " || getComputedStyle(e).display === 'none').length"
    )
    assert windowed == 0, f"{windowed} cells of {name} are windowed: the windowingMode override did not apply"
    # more room for the notebook in the screenshots: fold the file browser away
    open_sidebar_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if open_sidebar_tab.count():
        open_sidebar_tab.first.click()

    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()

    def finished() -> list[str] | None:
        # Run All marks every cell [*] at once; a cell that raises stops the rest (they go back to [ ])
        prompts = [p.strip() for p in page.locator(PROMPTS).all_inner_texts()]
        started = bool(prompts) and re.fullmatch(r"\[\d+\]:", prompts[0]) is not None
        if started and "[*]:" not in prompts and kernel_idle(page):
            return prompts
        return None

    return wait_for(finished, timeout=left(RUN_S), interval=0.5, what=f"Run All Cells in {name} to finish")


def assert_ran_cleanly(page, name: str, prompts: list[str]) -> None:
    """What every lesson must show: all cells ran, no traceback, SQL logs, verdicts all correct."""
    errors = [text for text in page.locator(STDERR).all_inner_texts() if TRACEBACK.search(text)]
    assert not errors, f"{name}: error output in the page:\n" + "\n---\n".join(e[:1500] for e in errors)
    unrun = [i for i, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
    assert not unrun, f"{name}: code cells without an execution count: {unrun} ({[prompts[i] for i in unrun]})"
    code_cells = sum(1 for cell in notebook_cells(name) if cell["cell_type"] == "code")
    assert len(prompts) == code_cells, f"{name}: {len(prompts)} code cells in the page, {code_cells} in the file"
    for broken in ("Error displaying widget", "Error rendering output"):
        assert page.get_by_text(broken).count() == 0, f"{name}: {broken!r} in the page"
    assert page.locator(".course-sql-log").count() > 0, f"{name}: no SQL log rendered"
    assert page.locator(".course-sql-log").first.is_visible()
    aligns = set(page.locator(".course-sql-log td").evaluate_all("els => els.map(e => getComputedStyle(e).textAlign)"))
    assert aligns == {"left"}, f"{name}: SQL log cells aligned {aligns}; JupyterLab's table style won over ours"
    verdicts = page.locator(".course-verdict")
    correct = page.locator(".course-verdict.course-ok")
    assert verdicts.count() > 0, f"{name}: no exercise verdict rendered"
    assert correct.count() == verdicts.count(), f"{name}: verdicts not all correct: {verdicts.all_inner_texts()}"


def assert_chart_images(page, name: str) -> None:
    images = page.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')
    assert images.count() > 0, f"{name}: no PNG chart in the outputs"
    widths = images.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert all(w > 100 for w in widths), f"{name}: a chart image did not decode: widths {widths}"


def screenshot(page, name: str, focus: str | None) -> None:
    """A viewport screenshot ``name``.png, scrolled to ``focus`` when it is in the page (also after a failure)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        if focus and page.locator(focus).count():
            page.locator(focus).first.scroll_into_view_if_needed(timeout=5_000)
            page.wait_for_timeout(300)  # let the scroll settle before the picture
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    except Exception as error:  # a screenshot must never hide the test's own outcome
        print(f"screenshot {name} failed: {error}")


def screenshots(page, lesson: str, focus: str | None) -> None:
    """The lesson's own picture plus one of each thing the looks checks judge, where the lesson has it."""
    screenshot(page, f"lesson{lesson}", focus)
    for what, selector in LOOKS.items():
        if page.locator(selector).count():
            screenshot(page, f"lesson{lesson}-{what}", selector)


#: What the looks checks judge, and where a screenshot of each is taken.
LOOKS = {
    "sql": ".course-sql-log",
    "table": ".course-frame",
    "chart": '.jp-OutputArea-output[data-mime-type="image/png"] img',
    "verdict": ".course-verdict",
    "engine-log": ".course-engine-log",
}
EMOJI = re.compile("[\u2190-\u2bff\u2700-\u27bf\U0001F000-\U0001FAFF\ufe0f]")


def assert_sql_log_wraps(page, name: str) -> None:
    """8: the SQL log wraps at spaces, keeps indentation, no white code background, no stray indent."""
    styles = page.locator(".course-sql-log pre").evaluate_all(
        "els => els.map(e => { const s = getComputedStyle(e); return {ws: s.whiteSpace, wb: s.wordBreak,"
        " ow: s.overflowWrap, bg: s.backgroundColor, text: e.innerText}; })"
    )
    assert styles, f"{name}: no SQL log in the page"
    for style in styles:
        assert style["ws"] in ("pre-wrap", "break-spaces"), f"{name}: SQL log white-space {style['ws']}"
        assert style["wb"] == "normal", f"{name}: SQL log word-break {style['wb']} breaks inside words"
        assert style["ow"] in ("normal", "break-word", "anywhere"), style["ow"]
        assert style["bg"] in ("rgba(0, 0, 0, 0)", "transparent"), f"{name}: SQL code background {style['bg']}"
        assert not re.search(r"\n[ \t]+(LIMIT|OFFSET)\b", style["text"]), f"{name}: stray indent: {style['text']!r}"
    # a long statement never widens the notebook: the log scrolls inside its own box
    wide = page.locator(".course-sql-log").evaluate_all(
        "els => els.filter(e => e.getBoundingClientRect().right >"
        " e.closest('.jp-OutputArea-output').getBoundingClientRect().right + 1).length"
    )
    assert wide == 0, f"{name}: {wide} SQL logs stick out of their output area"


def assert_frames_plain(page, name: str) -> None:
    """9: course.frame tables: no index column, no index-name row, NULL as NULL, inside the notebook."""
    tables = page.locator(".course-frame table")
    assert tables.count() > 0, f"{name}: no course.frame table in the page"
    shape = tables.evaluate_all(
        "els => els.map(t => ({bodyTh: t.querySelectorAll('tbody th').length,"
        " headRows: t.querySelectorAll('thead tr').length, text: t.innerText}))"
    )
    for table in shape:
        assert table["bodyTh"] == 0, f"{name}: a course.frame table has an index column"
        assert table["headRows"] == 1, f"{name}: a course.frame table has {table['headRows']} header rows"
        for shown in ("<NA>", "NaN", "NaT", "None"):
            assert not re.search(rf"(^|\t){re.escape(shown)}(\t|$)", table["text"], re.M), f"{name}: {shown} shown"
    overflow = page.locator(".course-frame").first.evaluate(
        "e => { const out = e.closest('.jp-OutputArea-output').getBoundingClientRect();"
        " const panel = e.closest('.jp-Notebook').getBoundingClientRect(); const box = e.getBoundingClientRect();"
        " return {box: box.right, out: out.right, panel: panel.right}; }"
    )
    assert overflow["box"] <= overflow["out"] + 1 and overflow["box"] <= overflow["panel"] + 1, (
        f"{name}: the first table sticks out of the notebook at {VIEWPORT['width']} px: {overflow}"
    )


def assert_charts_wide(page, name: str, selector: str) -> None:
    """10: charts take the notebook's width: at least 700 px shown at a 1280 px window."""
    widths = page.locator(selector).evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert widths, f"{name}: no chart in the page"
    assert min(widths) >= 700, f"{name}: charts shown {widths} px wide at {VIEWPORT['width']} px"


def assert_verdicts_plain(page, name: str) -> None:
    """11: verdicts: no backtick on screen; an icon that needs no font, and the word beside it."""
    texts = page.locator(".course-verdict").all_inner_texts()
    assert texts, f"{name}: no verdict"
    ticks = [t for t in texts if "`" in t]
    assert not ticks, f"{name}: backticks in verdicts: {ticks[:2]}"
    boxes = page.locator(".course-box").evaluate_all(
        "els => els.map(e => { const i = e.querySelector('svg.course-icon'); const r = i && i.getBoundingClientRect();"
        " return {w: r ? r.width : 0, h: r ? r.height : 0, head: e.querySelector('b') ? e.querySelector('b').innerText : ''}; })"
    )
    for b in boxes:
        assert b["w"] >= 10 and b["h"] >= 10, f"{name}: a box's icon is not drawn: {b}"
        assert re.search(r"[A-Za-z]", b["head"]), f"{name}: a box has no word beside its icon: {b}"
        assert not EMOJI.search(b["head"]), f"{name}: a box's head needs an emoji font: {b['head']!r}"
    marks = page.locator(".course-verdict li").all_inner_texts()
    assert not [m for m in marks if EMOJI.search(m[:2])], f"{name}: rule marks need a symbol font: {marks[:3]}"


def assert_looks_right(page, name: str, *, tables: bool = False, charts: tuple[str, ...] = ()) -> None:
    """8 to 11 on one lesson's page: the SQL log, its course.frame tables, its charts, its verdicts."""
    assert_sql_log_wraps(page, name)
    if tables:
        assert_frames_plain(page, name)
    for selector in charts:
        assert_charts_wide(page, name, selector)
    assert_verdicts_plain(page, name)


# ------------------------------------------------------------------ the lessons


def test_lesson_00_start_here(page, lab):
    try:
        prompts = open_and_run(page, lab, LESSONS["00"])
        assert_ran_cleanly(page, LESSONS["00"], prompts)
        assert page.locator(".course-banner").count() > 0, "the database banner is not shown"
        assert_looks_right(page, "00", tables=True)
        hints = page.locator(".course-box", has_text=re.compile(r"^\s*Hint")).count()
        assert hints == 0, "lesson 00 shows a hint on Run All"
    finally:
        screenshots(page, "00", ".course-sql-log")


def test_lesson_06_loader_explorer(page, lab):
    try:
        prompts = open_and_run(page, lab, LESSONS["06"])
        assert_ran_cleanly(page, LESSONS["06"], prompts)
        assert_chart_images(page, "06")

        explorer = page.locator(".course-loader-explorer").first
        count = explorer.locator(".course-loader-count")
        count.wait_for(timeout=ms(WIDGET_S))
        before = count.get_attribute("data-statements")
        assert before == "11", f"lazy loading of 10 users' posts should take 1 + 10 statements, not {before}"
        explorer.locator(".course-loader-strategy select").select_option("selectinload")
        page.wait_for_function(
            "([el, before]) => { const c = el.querySelector('.course-loader-count');"
            " return c !== null && c.dataset.statements !== before; }",
            arg=[explorer.element_handle(), before],
            timeout=ms(WIDGET_S),
        )
        after = count.get_attribute("data-statements")
        assert after != before
        assert after == "2", f"selectinload should take 2 statements, the explorer shows {after}"
        assert explorer.locator(".course-loader-sql .course-sql-log").count() == 1, "the explorer shows no SQL"
        assert_looks_right(page, "06", charts=(LOOKS["chart"],))
    finally:
        screenshots(page, "06", ".course-loader-explorer")


def test_lesson_07_bulk(page, lab):
    try:
        prompts = open_and_run(page, lab, LESSONS["07"])
        assert_ran_cleanly(page, LESSONS["07"], prompts)
        # 12: the engine's own log renders as the SQL log does, not as a Python list
        log = page.locator(".course-engine-log")
        assert log.count() == 1, "lesson 07's engine log is not rendered as a log"
        assert "insertmanyvalues" in log.inner_text()
        lists = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "['[" in t]
        assert not lists, f"07: the engine log printed as a Python list: {lists[0][:200]}"
        assert_looks_right(page, "07", tables=True, charts=(LOOKS["chart"],))
    finally:
        screenshots(page, "07", ".course-engine-log")


def test_lesson_09_pool_playground(page, lab):
    try:
        prompts = open_and_run(page, lab, LESSONS["09"])
        assert_ran_cleanly(page, LESSONS["09"], prompts)
        assert_chart_images(page, "09")

        panel = page.locator(".course-pool-playground").first
        panel.wait_for(timeout=ms(WIDGET_S))
        result = panel.locator(".course-pool-result")
        assert "timeouts: 0" in result.inner_text(), "the playground's first run should not time out"
        # a burst bigger than the pool (6 > 2 + 1), each holding its connection longer than a waiter waits
        settings = {"pool_size": 2, "max_overflow": 1, "pool_timeout": 0.2, "tasks": 6, "hold": 1.0}
        for name, value in settings.items():
            readout = panel.locator(f".course-pool-{name} .widget-readout")
            readout.fill(str(value))
            readout.press("Enter")
            handle = panel.locator(f".course-pool-{name} [role=slider]")
            wait_for(
                lambda h=handle, v=value: abs(float(h.get_attribute("aria-valuenow") or "nan") - v) < 1e-6,
                timeout=left(WIDGET_S), what=f"slider {name} to show {value}",
            )
        lab.kernels_quiet(timeout=left(WIDGET_S))  # the last slider's value has reached the kernel
        panel.locator(".course-pool-run").click()
        described = "6 tasks holding a connection 1.0 s each; pool: pool_size=2, max_overflow=1, pool_timeout=0.2"
        panel.locator(".course-pool-result", has_text=described).wait_for(timeout=ms(WIDGET_S))
        text = result.inner_text()
        timeouts = int(re.search(r"timeouts: (\d+)", text).group(1))
        assert timeouts > 0, f"no timeout reported: {text}"
        assert timeouts == 3, f"6 tasks on 2 + 1 connections held 1 s, waiting 0.2 s: 3 time out; got {text}"
        assert panel.locator("img").count() == 1, "the playground's timeline chart is missing"
        assert_looks_right(page, "09", charts=(".course-pool-playground img", LOOKS["chart"]))
    finally:
        screenshots(page, "09", ".course-pool-playground")



# ------------------------------------------------------------------ the course website


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The site `python -m course site` built (COURSE_SITE_DIR, default site/), served on a free port."""
    import functools
    import os
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    folder = Path(os.environ.get("COURSE_SITE_DIR", ROOT / "site"))
    if not (folder / "lessons" / "00_start_here.html").exists():
        pytest.fail(f"no site in {folder}: build it first with python -m course site --out {folder}")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_site_lesson_00_has_navigation_a_sql_log_and_the_diagram(browser, site_url):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.goto(f"{site_url}/lessons/00_start_here.html")
        # navigation: the sidebar lists every lesson in order, this one marked as current
        nav = page.locator("nav.bd-docs-nav a.reference.internal")
        titles = [t.strip() for t in nav.all_inner_texts()]
        lessons = [t for t in titles if re.match(r"\d\d · ", t)]
        assert [t[:2] for t in lessons] == [f"{n:02d}" for n in range(13)], titles
        assert page.locator("nav.bd-docs-nav li.current > a").first.inner_text().startswith("00 · Start here")
        # a SQL log table, as the notebook shows it
        log = page.locator(".course-sql-log table").first
        log.scroll_into_view_if_needed()
        assert log.is_visible() and "SELECT" in log.inner_text()
        # the verdict box, the schema drawn as a diagram (not code), the solution folded away
        assert page.locator(".course-verdict", has_text="Correct").count() == 1
        page.locator("pre.mermaid svg").wait_for(timeout=20_000)
        solution = page.locator("details.hide", has_text="BEGIN SOLUTION").first
        assert solution.count() == 1 and solution.get_attribute("open") is None
        assert page.get_by_text("Open in Binder").count() == 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator(".course-sql-log").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "site00.png"))
        # the search works offline: the sidebar's search finds a lesson by a word in it
        page.goto(f"{site_url}/search.html?q=selectinload")
        page.locator("#search-results li a", has_text="06 · Relationship loader strategies").first.wait_for(timeout=20_000)
    finally:
        context.close()
    outside = sorted({u for u in requests if not u.startswith((site_url, "data:", "blob:"))})
    assert not outside, f"the site fetched from elsewhere: {outside}"


def test_class_report_shows_its_chart_and_sorts_its_table(browser, tmp_path):
    """`grade --html`'s page, opened from disk as an instructor would: chart drawn, table sortable."""
    from course.tools import report

    def card(learner: str, status: str, crashed: bool = False) -> dict:
        return {"notebook": f"submissions/{learner}/00_start_here.ipynb", "lesson": "00",
                "crashed_cells": ["cell 3: RuntimeError: boom"] if crashed else [], "timed_out": False,
                "exercises": [{"exercise": "00.q1", "title": "Users from the Netherlands", "status": status,
                               "message": "", "rules": [{"rule": "same rows", "passed": status == "correct",
                                                         "message": "3 missing rows"}]}]}

    cards = [card("zoe", "correct"), card("ann", "incorrect"), card("max", "not run", crashed=True)]
    page_file = tmp_path / "report.html"
    report.write(cards, page_file)
    context = browser.new_context(viewport=VIEWPORT)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        bar = page.locator("svg.chart rect.bar[data-exercise='00.q1']")
        assert bar.count() == 1 and float(bar.get_attribute("width")) == round(420 / 3)  # 1 of 3 correct
        rows = page.locator("#learners tbody tr")
        assert rows.count() == 3
        assert rows.nth(2).inner_text().startswith("zoe")  # folders, sorted by name
        page.locator("#learners th", has_text="learner").click()  # sort: the header works offline
        page.locator("#learners th", has_text="learner").click()
        assert page.locator("#learners tbody tr").first.inner_text().startswith("zoe")
        assert "boom" in page.locator("#crashed").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "class-report.png"), full_page=True)
    finally:
        context.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
