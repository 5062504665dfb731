"""Exercises that name a mistake of their own the answer raises, instead of quoting the raw error.

:mod:`course.exercises.explain` explains the errors any answer may raise (an aggregate in WHERE, a
session shared by tasks); this is for an exercise that knows a mistake only it provokes.

An exercise built with :class:`Explaining` gets ``explain(error)``: it returns the message for an
error it recognises (the mistake in the lesson's terms and what to change), or None to let the
error through as usual. The message lands in ``attempt.extra["explained"]``, which the
:data:`EXPLAINED` rule reports; put that rule first so the diagnosis is the headline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .core import Exercise
from .rules import Attempt, Probe


@dataclass
class Explaining(Exercise):
    explain: Callable[[BaseException], str | None] | None = None

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        explained: list[str] = []

        async def wrapped(handle: Any, **kw: Any) -> Any:
            before = asyncio.all_tasks()
            try:
                return await answer(handle, **kw)
            except Exception as error:
                message = self.explain(error) if self.explain else None
                if message is None:
                    raise
                explained.append(message)
                # tasks the answer started may still run (gather does not cancel the others):
                # let them end before the checker reads or drops the database
                started = asyncio.all_tasks() - before - {asyncio.current_task()}
                if started:
                    await asyncio.wait(started, timeout=5)
                await _close_sessions_left_open(error, handle)
                if isinstance(handle, AsyncSession):
                    # joined through a savepoint: undo only the answer's part, so the checker can
                    # still read the database (PostgreSQL aborts a failed transaction)
                    await handle.rollback()
                return None

        attempt = await super()._attempt(wrapped, db, call)
        if explained:
            attempt.extra["explained"] = explained[0]
        return attempt


@dataclass
class KeepsSource(Explaining):
    """Also keeps the answer's source in ``attempt.extra["source"]``, for a rule the data cannot
    decide (ids sorted or not when RETURNING happened to send them in order; a kind read from an
    error's message text). No source (a function typed at a prompt): the rule does not judge."""

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        attempt = await super()._attempt(answer, db, call)
        with contextlib.suppress(OSError, TypeError):
            attempt.extra["source"] = inspect.getsource(answer)
        return attempt


async def _close_sessions_left_open(error: BaseException, handle: Any) -> None:
    """Close the sessions the failed answer opened and never closed (found in its traceback), so
    their connections go back to the pool now instead of at garbage collection."""
    found: dict[int, AsyncSession] = {}
    tb = error.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, AsyncSession) and value is not handle:
                found[id(value)] = value
        tb = tb.tb_next
    for session in found.values():
        try:
            await session.close()
        except Exception:  # a session broken mid-operation: drop its connection instead
            await session.invalidate()


def _explained(attempt: Attempt) -> str | None:
    return attempt.extra.get("explained")


EXPLAINED = Probe(test=_explained, name="ran to the end")
