"""``python -m course``: the command line lives in :mod:`course.tools.cli`."""

from .tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
