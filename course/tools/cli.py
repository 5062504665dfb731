"""``python -m course``: tools for authors and instructors.

  build [--check]         regenerate notebooks/ from solutions/ (or check they are in sync)
  grade PATH... [--json FILE] [--html FILE] [--jobs N] [--timeout S]
                          run learner notebooks and print a scorecard per exercise, rule by rule;
                          --html writes a class report
  doctor                  check this setup (Python, SQLAlchemy, drivers, kernel, database, seeding)
  progress [LESSON]       your exercises: correct, not yet, not attempted; --reset [--yes] clears
  reset [LESSON]          restore a lesson's notebook (your copy backed up) and drop its database
  site [--out DIR] [--check] [--jobs N]
                          the course as a static website (needs the "site" extra), then check it
  use BACKEND             sqlite, postgresql (the server binder/start runs) or a postgresql+asyncpg:// URL
  admin list [--user N]   list learners' schemas (PostgreSQL) or database files (SQLite)
  admin drop --user N     drop one learner's schemas or files
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def _root() -> Path:
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "solutions").is_dir() and (candidate / "pyproject.toml").exists():
            return candidate
    return Path(__file__).resolve().parents[2]


def cmd_build(args: argparse.Namespace) -> int:
    from .authoring import build

    result = build(_root(), check=args.check)
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    if args.check:
        for path in result.stale:
            print(f"stale: {path} (run `python -m course build`)", file=sys.stderr)
        if not result.stale and not result.problems:
            print("notebooks/ is in sync with solutions/")
        return 1 if result.stale or result.problems else 0
    for path in result.written:
        print(f"wrote {path}")
    if not result.written and not result.problems:
        print("nothing to do: notebooks/ already in sync")
    return 1 if result.problems else 0


def _notebooks(paths: list[str]) -> list[Path]:
    """Notebooks named, and every notebook under a folder named (``submissions/`` with one folder
    per learner, as nbgrader lays them out), leaving out Jupyter's checkpoints and reset backups."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb")
                            if not {".ipynb_checkpoints", ".backup"} & set(p.parts))
        else:
            found.append(path)
    return found


def cmd_grade(args: argparse.Namespace) -> int:
    from .grading import grade

    if os.name == "posix" and os.geteuid() == 0 and not args.allow_root:
        print("error: grading runs every learner's code with your privileges; as root that code could do\n"
              "anything to this machine. Run it as an unprivileged user (docs/instructors.md,\n"
              "'Grading a class'), or add --allow-root inside a throwaway container.", file=sys.stderr)
        return 2
    paths = _notebooks(args.paths)
    missing = [p for p in paths if not p.exists()]
    if missing:
        print("error: no such notebook: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    if not paths:
        print(f"error: no notebooks in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    if args.jobs < 1 or (args.timeout is not None and args.timeout <= 0):
        print("error: --jobs takes a whole number from 1, --timeout a number of seconds above 0", file=sys.stderr)
        return 2
    reports = {"--json": Path(args.json) if args.json else None, "--html": Path(args.html) if args.html else None}
    for flag, report in reports.items():
        if report is not None:
            problem = _report_problem(flag, report, paths, force=args.force)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 2
    timeout = args.timeout if args.timeout is not None else (600.0 if args.jobs > 1 else None)
    cards = grade(paths, json_path=reports["--json"], html_path=reports["--html"], jobs=args.jobs,
                  timeout=timeout)
    for card in cards:
        print(card.render())
        print()
    for report in reports.values():
        if report is not None:
            print(f"wrote {report}")
    empty = [card.notebook for card in cards if card.no_exercises]
    if empty:
        print("error: nothing to grade in " + ", ".join(empty) + " (not a lesson notebook, or renamed: "
              "a lesson's file name starts with its number, e.g. 03_...)", file=sys.stderr)
        return 1
    return 0


def _report_problem(flag: str, report: Path, inputs: list[Path], *, force: bool) -> str:
    """Why a report must not be written there, or "" (checked before any notebook runs)."""
    example = {"--json": "class.json", "--html": "report.html"}[flag]
    if report.suffix.lower() == ".ipynb" or any(report.resolve() == p.resolve() for p in inputs):
        return (f"{flag} {report} would overwrite a notebook; name a new file, e.g. {flag} {example} "
                f"(write {flag} FILE after the notebooks, or before them with its name)")
    if report.is_dir():
        return f"{flag} {report} is a folder; name a file, e.g. {report / example}"
    if report.exists() and not force:
        return f"{flag} {report} exists; add --force to replace it, or name another file"
    return ""


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run

    return run()


def cmd_reset(args: argparse.Namespace) -> int:
    from .reset import main as reset

    return reset(_root(), args.lesson)


def cmd_progress(args: argparse.Namespace) -> int:
    from ..exercises.progress import main as progress

    return progress(args.lesson, reset=args.reset, yes=args.yes)


def cmd_site(args: argparse.Namespace) -> int:
    from .site import main as site

    if args.jobs < 1:
        print("error: --jobs takes a whole number from 1 (notebooks executed at a time)", file=sys.stderr)
        return 2
    return site(_root(), Path(args.out) if args.out else None, check=args.check,
                cache=Path(args.cache) if args.cache else None, jobs=args.jobs)


def cmd_use(args: argparse.Namespace) -> int:
    from .. import config as cfg
    from ..errors import CourseError

    try:
        config = cfg.backend_choice(args.backend)
        if config.backend == "postgresql":
            from .admin import ping

            asyncio.run(ping(config))  # a choice that cannot work is not saved
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.backend.strip().lower() in ("postgresql", "postgres"):
            print("On Binder the server starts with the session: wait a few seconds and try again\n"
                  "(its log: ~/.course-postgres/start.log).", file=sys.stderr)
        return 1
    cfg.save_backend(config)
    where = "" if config.url is None else f" at {config.safe_url}"
    print(f"from now on course.start() uses {config.label}{where}: run your notebook's setup cell again")
    if os.environ.get(cfg.ENV_URL) is not None:
        print(f"note: {cfg.ENV_URL} is set in this environment and takes precedence over this choice")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    from .admin import main as admin

    return admin(args.action, args.user)


def main(argv: list[str] | None = None) -> int:
    # the docstring's reST literals (``...``) would show as backticks in a terminal
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="regenerate notebooks/ from solutions/")
    b.add_argument("--check", action="store_true", help="only check; exit 1 naming each stale notebook")
    b.set_defaults(func=cmd_build)
    g = sub.add_parser("grade", help="execute learner notebooks and print scorecards")
    g.add_argument("paths", nargs="+", help="notebooks, or folders of them (one folder per learner)")
    g.add_argument("--json", metavar="FILE", help="also write the scorecards as JSON (never over a notebook)")
    g.add_argument("--html", metavar="FILE", help="also write a class report: one page that opens offline")
    g.add_argument("--force", action="store_true", help="replace a report file that exists")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="grade N notebooks at a time")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a notebook that runs longer (and report it); default: 10 minutes with --jobs")
    g.add_argument("--allow-root", action="store_true", help="grade as root (only in a throwaway container)")
    g.set_defaults(func=cmd_grade)
    d = sub.add_parser("doctor", help="check this setup and say what to fix")
    d.set_defaults(func=cmd_doctor)
    r = sub.add_parser("reset", help="restore a lesson's notebook (backed up) and its database")
    r.add_argument("lesson", nargs="?", help="03, 3 or 03_aggregation_and_pagination; none: list them")
    r.set_defaults(func=cmd_reset)
    p = sub.add_parser("progress", help="your progress: which exercises are correct, the next to do")
    p.add_argument("lesson", nargs="?", help="one lesson (03 or 3); none: the whole course")
    p.add_argument("--reset", action="store_true", help="clear the record (of LESSON only, if named), after asking")
    p.add_argument("--yes", action="store_true", help="with --reset: do not ask")
    p.set_defaults(func=cmd_progress)
    s = sub.add_parser("site", help="build the course website from solutions/ (executed on SQLite, cached)")
    s.add_argument("--out", metavar="DIR", help="where the site goes (default: site/)")
    s.add_argument("--cache", metavar="DIR", help="executed notebooks and npm files (default: .site-cache/)")
    s.add_argument("--check", action="store_true", help="then check it: pages, links, errors, SQL logs, charts")
    s.add_argument("--jobs", type=int, default=2, metavar="N", help="execute N notebooks at a time (default: 2)")
    s.set_defaults(func=cmd_site)
    u = sub.add_parser("use", help="choose the backend for every later course.start()")
    u.add_argument("backend", help="sqlite, postgresql, or a postgresql+asyncpg:// URL")
    u.set_defaults(func=cmd_use)
    a = sub.add_parser("admin", help="instructors: list or drop learners' namespaces")
    a.add_argument("action", choices=["list", "drop"])
    a.add_argument("--user", help="the learner (COURSE_USER or login name)")
    a.set_defaults(func=cmd_admin)
    args = parser.parse_args(argv)
    return args.func(args)

