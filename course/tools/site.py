"""``python -m course site [--out site/] [--check]``: the course as a static website.

Each lesson in ``solutions/`` becomes a page with the outputs of a real run on SQLite: SQL
logs, charts, verdict boxes, widgets as a snapshot. Exercise solutions are folded behind a
toggle; each page links to Binder and to the learner notebook; ``docs/*.md`` are pages too.

- Notebooks are executed with nbclient, two at a time (``--jobs``), and kept in ``.site-cache/``
  under a key made of the notebook's bytes, the course package's code and the SQLAlchemy
  version: a rebuild without changes executes nothing. The kernels run with their own data
  folder (``.site-cache/data``) and record no progress.
- Sphinx + MyST-NB + sphinx-book-theme render the pages (``pip install -e ".[site]"``).
  Nothing is fetched from a CDN: require.js, the widget manager and mermaid (which draws the
  schema diagram) come from the npm registry (``npm pack``) once, into the cache, and are
  served from the site itself.
- ``--check`` then checks the built site (:func:`check_site`): every lesson page, no broken
  internal link, no error output, a SQL log and a chart where the lesson has them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = "https://github.com/async-sqlalchemy-course/async-sqlalchemy-course"
PUBLISHED_AT = "https://async-sqlalchemy-course.github.io/async-sqlalchemy-course/"
BINDER = ("https://mybinder.org/v2/gh/async-sqlalchemy-course/async-sqlalchemy-course/HEAD"
          "?urlpath=lab/tree/notebooks/{name}")
TITLE = "Async SQLAlchemy 2.x, hands-on"
# (package spec, file inside its tarball, name under _static/)
NPM_FILES = [
    ("requirejs@2.3.8", "package/require.js", "require.js"),
    ("@jupyter-widgets/html-manager@1.0.15", "package/dist/embed-amd.js", "embed-amd.js"),
    ("mermaid@11.17.2", "package/dist/mermaid.min.js", "mermaid.min.js"),
]
EXTRA = "site"  # pip install -e ".[site]"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ('<p class="course-widget-note"><i>A snapshot of the widget: in the notebook it is live '
               "(pick another option and it runs again).</i></p>")
LESSON_FILE = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


class SiteError(Exception):
    """A problem the person building the site can fix: what happened, and what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        return super().__str__() + (f"\n{self.hint}" if self.hint else "")


def _missing_modules() -> list[str]:
    return [m for m in ("sphinx", "myst_nb", "sphinx_book_theme", "nbclient")
            if importlib.util.find_spec(m) is None]


def code_key() -> str:
    """What, besides the notebook, changes a lesson's outputs: the course package and SQLAlchemy."""
    import sqlalchemy

    digest = hashlib.sha256(f"sqlalchemy {sqlalchemy.__version__} python {sys.version_info[:2]}".encode())
    package = Path(__file__).resolve().parents[1]  # course/
    for path in sorted(package.rglob("*.py")):
        if "tools" in path.relative_to(package).parts:  # commands, this one included: not what lessons output
            continue
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------- executing


@dataclass
class Executed:
    path: Path  # the solutions notebook
    notebook: dict
    seconds: float
    cached: bool
    errors: list[str] = field(default_factory=list)


def _errors_in(nb: dict) -> list[str]:
    out = []
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                out.append(f"cell {index}: {output.get('ename')}: {str(output.get('evalue', ''))[:200]}")
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                out.append(f"cell {index}: wrote to stderr: {''.join(output.get('text', ''))[:200]!r}")
    return out


def execute(path: Path, cache: Path, key: str) -> Executed:
    """The notebook with its outputs: from the cache, or run now (then cached if it ran clean)."""
    import nbformat
    from nbclient import NotebookClient

    digest = hashlib.sha256(path.read_bytes() + key.encode()).hexdigest()[:16]
    folder = cache / "executed"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{path.stem}.{digest}.ipynb"
    if target.exists():
        return Executed(path, json.loads(target.read_text(encoding="utf-8")), 0.0, True)
    data = cache / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_DATABASE_URL", "COURSE_NAMESPACE")}
    env.update(COURSE_DATA_DIR=str(data), COURSE_PROGRESS="0", COURSE_STRICT="1", COURSE_NAMESPACE="site",
               COURSE_USER="site", PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                            os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute(env=env, stderr=subprocess.DEVNULL)  # the kernel's own log; cell errors come as outputs
    seconds = time.perf_counter() - started
    plain = json.loads(nbformat.writes(nb))
    errors = _errors_in(plain)
    if not errors:
        for stale in folder.glob(f"{path.stem}.*.ipynb"):
            stale.unlink()
        target.write_text(json.dumps(plain), encoding="utf-8")
    return Executed(path, plain, seconds, False, errors)


# --------------------------------------------------------------------------------- staging


def _write(path: Path, content: str | bytes, written: set[Path]) -> None:
    """Write only what changed, so Sphinx rebuilds only the pages that changed."""
    data = content.encode() if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    written.add(path.resolve())


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def stage_lesson(run: Executed) -> str:
    """The executed notebook as the site shows it (returned as JSON text)."""
    nb = json.loads(json.dumps(run.notebook))
    name = run.path.name
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "code" and ("# BEGIN SOLUTION" in src or "solution-only" in cell["metadata"].get("tags", [])):
            tags = cell["metadata"].setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
        if cell["cell_type"] == "markdown":
            # JupyterLab's heading anchors keep the case; the site's are lower case
            cell["source"] = re.sub(r"\]\(#([^)]+)\)", lambda m: f"](#{m.group(1).lower()})", src)
        outputs = []
        for output in cell.get("outputs", []):
            outputs.append(output)
            if WIDGET_MIME in output.get("data", {}):
                outputs.append({"output_type": "display_data", "metadata": {},
                                "data": {"text/html": WIDGET_NOTE, "text/plain": "(a widget snapshot)"}})
        if cell["cell_type"] == "code":
            cell["outputs"] = outputs
    links = (f'<p class="course-launch"><a href="{BINDER.format(name=name)}">Open in Binder</a> · '
             f'<a href="../notebooks/{name}" download>Download the notebook</a> · '
             "below: the outputs of a run on SQLite; exercise solutions are folded (click to show)</p>")
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": links})
    for cell in nb["cells"]:
        cell.pop("id", None)
    nb["nbformat_minor"] = 4
    return json.dumps(nb, indent=1)


def _readme_intro(root: Path) -> tuple[str, list[tuple[str, str, str]]]:
    text = (root / "README.md").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    intro = next((p for p in paragraphs if not p.startswith(("#", "!", "["))), "")
    rows = re.findall(r"^\| (\d\d) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    return intro, [(n, t.strip(), goal.strip()) for n, t, goal in rows]


CONF = '''\
"""Sphinx settings written by `python -m course site` (do not edit: it is regenerated)."""
project = {title!r}
author = "The course authors"
copyright = "the course authors: code MIT, lesson text CC BY 4.0"
extensions = ["myst_nb"]
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_extra_path = ["_extra"]
html_css_files = ["course-site.css"]
html_js_files = ["course-site.js"]
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {{"repository_url": {repo!r}, "use_repository_button": True, "show_toc_level": 2,
                       "use_download_button": False}}  # each lesson links its learner notebook itself
exclude_patterns = ["_extra", "_static"]
nb_execution_mode = "off"  # executed (and cached) by python -m course site
nb_merge_streams = True
# the widget manager and require.js from the npm registry, served from _static (no CDN)
nb_ipywidgets_js = {{"require.js": {{}}, "embed-amd.js": {{"data-jupyter-widgets-cdn": "", "crossorigin": "anonymous"}}}}
myst_heading_anchors = 3
suppress_warnings = ["misc.highlighting_failure", "myst.header", "mystnb.unknown_mime_type"]


def _mermaid(app, pagename, templatename, context, doctree):
    from docutils import nodes

    if doctree is not None and any(n.get("language") == "mermaid" for n in doctree.findall(nodes.literal_block)):
        app.add_js_file("mermaid.min.js", priority=100)  # before require.js, so it sets window.mermaid


def setup(app):
    app.connect("html-page-context", _mermaid)
'''

SITE_JS = """\
// Draws ```mermaid blocks (the schema diagram) with the mermaid served from this site.
document.addEventListener("DOMContentLoaded", function () {
  var blocks = document.querySelectorAll("div.highlight-mermaid");
  if (!blocks.length || !window.mermaid) return;
  blocks.forEach(function (block) {
    var pre = document.createElement("pre");
    pre.className = "mermaid";
    pre.textContent = block.querySelector("pre").textContent;
    block.replaceWith(pre);
  });
  window.mermaid.initialize({startOnLoad: false});
  window.mermaid.run({querySelector: "pre.mermaid"});
});
"""

SITE_CSS = """\
.course-launch { font-size: 0.95em; }
.course-widget-note { color: #555; font-size: 0.9em; }
pre.mermaid { background: none; border: none; }
"""


def fetch_npm(cache: Path) -> dict[str, Path]:
    """require.js, the widget manager and mermaid, from the npm registry (once, then cached)."""
    folder = cache / "npm"
    folder.mkdir(parents=True, exist_ok=True)
    found = {}
    for spec, member, name in NPM_FILES:
        target = folder / name
        if not target.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise SiteError(
                    f"The site serves {name} itself (no CDN), and takes it from the npm registry once: "
                    "npm is not installed here.",
                    hint="Install Node.js with npm (Debian/Ubuntu: `apt-get install npm`; or https://nodejs.org), "
                    "then run `python -m course site` again.")
            done = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", str(folder)],
                                  capture_output=True, text=True, timeout=300)
            tgz = folder / (done.stdout.strip().splitlines() or ["?"])[-1]
            if done.returncode != 0 or not tgz.exists():
                raise SiteError(f"`npm pack {spec}` failed: {(done.stderr or done.stdout).strip()[-400:]}",
                                hint="The npm registry must be reachable once; later builds use the cache in "
                                f"{folder}.")
            with tarfile.open(tgz) as archive:
                target.write_bytes(archive.extractfile(member).read())
            tgz.unlink()
        found[name] = target
    return found


def stage(root: Path, src: Path, runs: list[Executed], npm: dict[str, Path]) -> None:
    written: set[Path] = set()
    _write(src / "conf.py", CONF.format(title=TITLE, repo=REPO), written)
    for name, path in npm.items():
        _write(src / "_static" / name, path.read_bytes(), written)
    _write(src / "_static" / "course-site.js", SITE_JS, written)
    _write(src / "_static" / "course-site.css", SITE_CSS, written)
    for run in runs:
        _write(src / "lessons" / run.path.name, stage_lesson(run), written)
        learner = root / "notebooks" / run.path.name
        if learner.exists():
            _write(src / "_extra" / "notebooks" / run.path.name, learner.read_bytes(), written)
    docs = sorted((root / "docs").glob("*.md"))
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        text = re.sub(r"\]\(\.\./notebooks/", "](../lessons/", text).replace("](../README.md)", "](../index.md)")
        _write(src / "docs" / doc.name, text, written)
        for image in re.findall(r"\]\(([\w./-]+\.(?:png|svg|jpg))\)", text):
            if (doc.parent / image).exists():
                _write(src / "docs" / image, (doc.parent / image).read_bytes(), written)
    intro, table = _readme_intro(root)
    titles = {run.path.name[:2]: run.path.name for run in runs}
    lines = [f"# {TITLE}", "", intro, "",
             "Read every lesson here with the outputs of a real run, or run it yourself: each page links to "
             "Binder (nothing to install) and to its notebook. Your own progress is recorded when you run the "
             "notebooks (`course.progress()`).", "", "## Lessons", "",
             "| # | lesson | you will be able to |", "|---|---|---|"]
    for number, title, goal in table:
        if number in titles:
            lines.append(f"| {number} | [{title}](lessons/{titles[number]}) | {goal} |")
    lines += ["", "## Reference", ""]
    for doc in docs:
        first = doc.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        lines.append(f"- [{first}](docs/{doc.name})")
    lines += ["", "```{toctree}", ":hidden:", ":caption: Lessons", ""]
    lines += [f"lessons/{run.path.stem}" for run in runs]
    lines += ["```", "", "```{toctree}", ":hidden:", ":caption: Reference", ""]
    lines += [f"docs/{doc.stem}" for doc in docs]
    lines += ["```", ""]
    _write(src / "index.md", "\n".join(lines), written)
    for path in sorted(src.rglob("*"), reverse=True):  # what is no longer part of the site goes
        if path.is_file() and path.resolve() not in written:
            path.unlink()


def build(root: Path, out: Path, cache: Path, *, jobs: int = 2, log=print) -> list[Executed]:
    missing = _missing_modules()
    if missing:
        raise SiteError(
            f"Building the site needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            "not installed.",
            hint=f'Install the course\'s "{EXTRA}" extra: pip install -e ".[{EXTRA}]" (Sphinx, MyST-NB, '
            "sphinx-book-theme), then run python -m course site again.")
    lessons = sorted(p for p in (root / "solutions").glob("*.ipynb") if LESSON_FILE.match(p.name))
    if not lessons:
        raise SiteError(f"No lesson notebooks in {root / 'solutions'}.",
                        hint="Run python -m course site from the course's folder (where solutions/ is).")
    if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").exists():
        raise SiteError(f"{out} is not empty and holds no site built by this command: it is left alone.",
                        hint="Choose another folder with --out (or empty this one).")
    npm = fetch_npm(cache)
    key = code_key()
    # each kernel has its own SQLite file per lesson, so lessons can run side by side; the
    # kernels do the work, this process only waits on them, so threads are enough
    from concurrent.futures import ThreadPoolExecutor

    runs = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for path, run in zip(lessons, pool.map(lambda p: execute(p, cache, key), lessons), strict=True):
            how = "from the cache" if run.cached else f"executed in {run.seconds:.1f} s"
            log(f"{path.name}: {how}" + (f"; {len(run.errors)} problems" if run.errors else ""))
            for error in run.errors:
                log(f"  {error}")
            runs.append(run)
    src = cache / "src"
    stage(root, src, runs, npm)
    from sphinx.cmd.build import build_main

    warnings = cache / "sphinx-warnings.txt"
    # Sphinx builds inside the cache (MyST-NB writes a jupyter_execute/ folder next to its output)
    html = cache / "build" / "html"
    status = build_main(["-b", "html", "-q", "-w", str(warnings), "-d", str(cache / "doctrees"), str(src), str(html)])
    if status != 0:
        raise SiteError(f"Sphinx failed (exit {status}); its warnings are in {warnings}.")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out)
    return runs


# --------------------------------------------------------------------------------- checking


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"] or "")
        for attr in ("href", "src"):
            if values.get(attr) and not (tag == "link" and values.get("rel") in ("preconnect", "dns-prefetch")):
                self.links.append(values[attr] or "")


def check_site(root: Path, out: Path) -> list[tuple[str, str]]:
    """Check a built site; returns ``(check, problem)`` for each check ("" when it passed)."""
    results: list[tuple[str, str]] = []
    pages: dict[Path, _Page] = {}
    for path in out.rglob("*.html"):
        parser = _Page()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path.resolve()] = parser
    lessons = sorted(p for p in (root / "solutions").glob("*.ipynb") if LESSON_FILE.match(p.name))
    for lesson in lessons:
        page = out / "lessons" / f"{lesson.stem}.html"
        name = f"lesson page {lesson.stem}"
        if not page.exists():
            results.append((name, f"{page} is missing"))
            continue
        html = page.read_text(encoding="utf-8")
        problems = []
        source = lesson.read_text(encoding="utf-8")
        for marker, what in (('class="output traceback', "a traceback"), ('class="output stderr', "stderr output"),
                             ("Traceback (most recent call last)", "a traceback"),
                             ('class="output error', "an error output")):
            if marker in html:
                problems.append(f"shows {what}")
        if "course.sql()" in source and 'class="course-sql-log"' not in html:
            problems.append("has no SQL log, though the lesson records SQL with course.sql()")
        if ".chart(" in source and not re.search(r'<img [^>]*src="\.\./_images/[^"]+\.png"', html):
            problems.append("has no chart image, though the lesson draws one")
        if "course-verdict" not in html:
            problems.append("shows no exercise verdict")
        if "hide-input" not in html and "# BEGIN SOLUTION" in source:
            problems.append("does not fold its exercise solutions")
        if BINDER.format(name=lesson.name) not in html.replace("&amp;", "&") or f"../notebooks/{lesson.name}" not in html:
            problems.append("lacks its Binder or download link")
        results.append((name, "; ".join(problems)))
    broken = []
    for path, parser in sorted(pages.items()):
        if "_static" in path.relative_to(out.resolve()).parts:  # the theme's template fragments
            continue
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "data:", "javascript:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(out.resolve())}: {link}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and target in pages and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{where} (no such anchor)")
    results.append(("internal links", "; ".join(broken[:10]) + (f" (and {len(broken) - 10} more)" if len(broken) > 10 else "")))
    docs = sorted((root / "docs").glob("*.md"))
    missing_docs = [d.name for d in docs if not (out / "docs" / f"{d.stem}.html").exists()]
    results.append(("docs pages", ", ".join(missing_docs) and f"missing: {', '.join(missing_docs)}"))
    index = out / "index.html"
    nav_ok = index.exists() and all(f"lessons/{lesson.stem}.html" in index.read_text(encoding="utf-8") for lesson in lessons)
    results.append(("navigation lists every lesson", "" if nav_ok else "index.html does not link every lesson"))
    results.append(("search", "" if (out / "search.html").exists() and (out / "searchindex.js").exists() else "no search page or index"))
    cdn = [str(p.relative_to(out)) for p, parser in pages.items()
           if any(re.match(r"(https?:)?//(cdn|unpkg|cdnjs)", link) for link in parser.links)]
    results.append(("nothing loaded from a CDN", ", ".join(sorted(cdn)[:5])))
    return results


# --------------------------------------------------------------------------------- command


def main(root: Path, out: Path | None, *, check: bool = False, cache: Path | None = None, jobs: int = 2) -> int:
    out = (out or root / "site").resolve()
    cache = (cache or root / ".site-cache").resolve()
    started = time.perf_counter()
    try:
        runs = build(root, out, cache, jobs=jobs)
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [r for r in runs if r.errors]
    print(f"built {out / 'index.html'} in {time.perf_counter() - started:.1f} s "
          f"({sum(not r.cached for r in runs)} notebooks executed, {sum(r.cached for r in runs)} from the cache)")
    if failed:
        print(f"error: {len(failed)} notebooks had errors (listed above); they were not cached", file=sys.stderr)
    if not check:
        return 1 if failed else 0
    results = check_site(root, out)
    for name, problem in results:
        print(f"{'FAIL' if problem else 'ok  '} {name}{': ' + problem if problem else ''}")
    bad = sum(bool(p) for _, p in results)
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad or failed else 0
