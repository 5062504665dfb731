"""``python -m course``: tools for authors and instructors.

  build [--check]         regenerate notebooks/ from solutions/ (or check they are in sync)
  grade PATH... [--json]  run learner notebooks and print a scorecard per exercise, rule by rule
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _root() -> Path:
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "solutions").is_dir() and (candidate / "pyproject.toml").exists():
            return candidate
    return Path(__file__).resolve().parent.parent


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


def cmd_grade(args: argparse.Namespace) -> int:
    from .grading import grade

    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print("error: no such notebook: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    cards = grade(paths, json_path=Path(args.json) if args.json else None)
    for card in cards:
        print(card.render())
        print()
    if args.json:
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="regenerate notebooks/ from solutions/")
    b.add_argument("--check", action="store_true", help="only check; exit 1 naming each stale notebook")
    b.set_defaults(func=cmd_build)
    g = sub.add_parser("grade", help="execute learner notebooks and print scorecards")
    g.add_argument("paths", nargs="+", help="notebooks to grade")
    g.add_argument("--json", metavar="FILE", help="also write the scorecards as JSON")
    g.set_defaults(func=cmd_grade)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
