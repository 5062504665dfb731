"""Show a failure on purpose: ``with course.expect(IntegrityError):``.

Lessons never show raw tracebacks. The expected error is caught and displayed
as a compact, explained box; if nothing is raised the block fails loudly, so a
lesson's claim that "this fails" is checked on every run (nbval's
``raises-exception`` tag would pass silently instead).
"""

from __future__ import annotations

import gc
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .display import box, esc, in_notebook, show_html


class ExpectationFailed(AssertionError):
    """The block was expected to raise and did not (or raised something else)."""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and all(item is not seen for seen in out):
        out.append(item)
        item = getattr(item, "orig", None) or item.__cause__ or item.__context__
    return out


@dataclass
class Caught:
    """What :func:`expect` caught: ``.error`` (outermost) and ``.match`` (the expected one)."""

    expected: tuple[type[BaseException], ...]
    error: BaseException | None = None
    match: BaseException | None = None
    wrapped_in: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return str(self.match or self.error or "")


@contextmanager
def expect(
    *expected: type[BaseException],
    why: str = "",
    match: str | None = None,
    show: bool | None = None,
) -> Iterator[Caught]:
    """Run a block that must raise one of ``expected``; display it as an explained box.

    The expected class may arrive wrapped (SQLAlchemy 2.1 wraps ``MissingGreenlet``
    from aiosqlite in ``StatementError``; drivers' errors sit in ``.orig``): the
    whole chain is searched and the box says what wrapped it. ``match`` is a
    substring the message must contain.
    """
    if not expected:
        expected = (Exception,)
    caught = Caught(expected=expected)
    try:
        yield caught
    except BaseException as exc:  # noqa: BLE001 - we re-raise anything unexpected
        chain = _chain(exc)
        hit = next((e for e in chain if isinstance(e, expected)), None)
        if hit is None or (match is not None and match not in str(hit)):
            names = " or ".join(t.__name__ for t in expected)
            raise ExpectationFailed(
                f"expected {names}{f' mentioning {match!r}' if match else ''}, "
                f"but the block raised {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        caught.error, caught.match = exc, hit
        caught.wrapped_in = [type(e).__name__ for e in chain[: chain.index(hit)]]
        _release_frames(chain)
    else:
        names = " or ".join(t.__name__ for t in expected)
        raise ExpectationFailed(f"expected {names}, but the block ran without raising")
    if show is None:
        show = in_notebook()
    if show:
        show_html(_caught_html(caught, why))


def _release_frames(chain: list[BaseException]) -> None:
    """Free what the failed block's frames held, now, and quietly.

    An implicit IO outside the greenlet (``MissingGreenlet``) leaves the async
    driver's coroutine unawaited; left alone, Python warns "coroutine ... was
    never awaited" whenever it happens to be collected, in some later cell. The
    expected failure is the lesson's point; that warning is only its echo. The
    exceptions themselves stay intact for ``caught.error`` and ``caught.match``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
        for error in chain:
            if error.__traceback__ is not None:
                traceback.clear_frames(error.__traceback__)
        gc.collect()


def _caught_html(caught: Caught, why: str) -> str:
    err = caught.match
    assert err is not None
    first = str(err).strip().splitlines()
    text = "\n".join(first[:4]) + ("\n…" if len(first) > 4 else "")
    wrapped = (
        f"<div>arrived wrapped in {esc(' → '.join(caught.wrapped_in))}</div>"
        if caught.wrapped_in
        else ""
    )
    body = f"<pre>{esc(text)}</pre>{wrapped}" + (f"<div>{esc(why)}</div>" if why else "")
    return box("info", f"Raised as expected: {type(err).__name__}", body, css="course-expect")
