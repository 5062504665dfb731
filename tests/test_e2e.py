"""JupyterLab in a real browser: lessons 00, 06 and 09 run through the UI, checked as a learner sees them.

Selected only with ``pytest -m e2e`` (the default run deselects it, see conftest.py). Needs
Debian's Chromium at /usr/bin/chromium (or ``COURSE_E2E_CHROMIUM``) and the ``e2e`` extra
(playwright, driving that Chromium: no browser is ever downloaded).

One private JupyterLab server (free loopback port, random token, notebook windowing off) and one
headless Chromium serve the whole module. Each lesson's *solutions* notebook (a temporary
copy) is opened, run with Run > Run All Cells, and checked: every code cell has an execution
count, no output is a traceback, the SQL log and the charts rendered, every exercise verdict
is "correct", and the lesson's widget answers in the page (06: another loader strategy
changes the statement count; 09: a burst larger than the pool times out). The solutions are
used, not the learner copies, so the exercise cells run real answers and their verdicts
(rendered by the checker) are part of what is checked. Screenshots and the server's log go to
test-artifacts/e2e/ (ignored by git). docs/screenshot.png, shown in the README, is
test-artifacts/e2e/lesson06.png reduced to 256 colours with Pillow (``quantize(256)``,
``save(..., optimize=True)``).

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
    "09": "09_connection_pooling.ipynb",
}
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
VIEWPORT = {"width": 1280, "height": 800}

# Bounded waits: every wait takes at most what is left of one budget, so the module stays under
# 3 minutes even when every wait runs out. Nothing is retried but waiting.
BUDGET = Budget(170.0)
LOAD_S = 45.0  # open a notebook and start its kernel (about 4 s here)
RUN_S = 75.0  # run all cells of one lesson (8 to 15 s here)
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


def screenshot(page, lesson: str, focus: str | None) -> None:
    """A viewport screenshot, scrolled to ``focus`` when it is in the page (also after a failure)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        if focus and page.locator(focus).count():
            page.locator(focus).first.scroll_into_view_if_needed(timeout=5_000)
            page.wait_for_timeout(300)  # let the scroll settle before the picture
        page.screenshot(path=str(ARTIFACTS / f"lesson{lesson}.png"))
    except Exception as error:  # a screenshot must never hide the test's own outcome
        print(f"screenshot of lesson {lesson} failed: {error}")


# ------------------------------------------------------------------ the lessons


def test_lesson_00_start_here(page, lab):
    try:
        prompts = open_and_run(page, lab, LESSONS["00"])
        assert_ran_cleanly(page, LESSONS["00"], prompts)
        assert page.locator(".course-banner").count() > 0, "the database banner is not shown"
    finally:
        screenshot(page, "00", ".course-sql-log")


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
    finally:
        screenshot(page, "06", ".course-loader-explorer")


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
    finally:
        screenshot(page, "09", ".course-pool-playground")



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
