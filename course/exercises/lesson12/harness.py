"""Running the answer's functions: sessions watched for lazy loads, reading the items, create_post calls."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import strategies

from ..core import (
    FUNCTIONS,
    Exercise,
    Requirement,
    _AnswerRaised,
    _is_lazy_load,
    _LazyLoadCounter,
    _note_lazy_load,
    call_answer,
)
from ..rules import Attempt, NoLazyLoads, Probe
from ..verdict import RuleResult, Verdict
from .dataset import prepare
from .reference import FIELDS, SCALE, FeedRepository


def capstone(id: str, title: str, functions: tuple[str, ...], requirements: list[Requirement], *,
             hints: list[str], why: str) -> CapstoneExercise:
    """A capstone exercise: the reference design, the checker's data set, one scenario per requirement."""
    return CapstoneExercise(
        id=id, title=title, kind=FUNCTIONS, functions=functions, solution_answer=FeedRepository,
        prepare=prepare, scratch_scale=SCALE, requirements=requirements, hints=hints, why=why,
    )


@dataclass
class CapstoneExercise(Exercise):
    """An Exercise that remembers its last verdict, so the scorecard need not run it again."""

    _last: tuple[Any, Verdict] | None = field(default=None, repr=False)

    async def evaluate(self, answer: Any = ..., *, db: Any = None) -> Verdict:
        verdict = await super().evaluate(answer, db=db)
        self._last = (answer, verdict)
        return verdict

    def last_verdict(self, answer: Any) -> Verdict | None:
        """The verdict of the last evaluation, if it judged this very object."""
        return self._last[1] if self._last is not None and self._last[0] is answer else None





class _Shape(Exception):
    """What the answer returned does not have the agreed shape."""


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise _Shape(f"each feed item needs the key {name!r}; yours has {sorted(map(str, item))}")
        return item[name]
    mapping = getattr(item, "_mapping", None)  # a Row
    if mapping is not None:
        if name not in mapping:
            raise _Shape(f"each feed item needs the column {name!r}; yours has {list(mapping.keys())}")
        return mapping[name]
    if not hasattr(item, name):
        raise _Shape(f"each feed item needs {name!r}; a {type(item).__name__} has no such attribute")
    return getattr(item, name)


def _item(item: Any) -> tuple[Any, ...]:
    values = {name: _field(item, name) for name in FIELDS}
    author, tags = values["author"], values["tags"]
    if not isinstance(author, str):
        raise _Shape(f"author should be the author's username (a str); yours is a {type(author).__name__}")
    if isinstance(tags, str) or not hasattr(tags, "__iter__"):
        raise _Shape(f"tags should be a list of tag names; yours is a {type(tags).__name__}")
    tags = list(tags)
    if any(not isinstance(t, str) for t in tags):
        kind = next(type(t).__name__ for t in tags if not isinstance(t, str))
        raise _Shape(f"tags should be tag names (str); yours holds {kind} objects")
    return (
        values["id"], values["title"], author, values["published_at"], tuple(tags), values["comment_count"],
    )


def _page(returned: Any) -> tuple[list[tuple[Any, ...]], Any]:
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        raise _Shape(f"feed should return a pair (items, next_cursor); yours returned {type(returned).__name__}")
    items, next_cursor = returned
    return [_item(i) for i in list(items)], next_cursor


@asynccontextmanager
async def _session(scratch: Any, attempt: Attempt, *, begin: bool = False):
    """A session on the scratch database, watched for lazy loads (``begin``: the caller owns a transaction)."""
    async with scratch.session() as session:
        counter = _LazyLoadCounter(session)

        def name_it(orm_state: Any) -> None:  # which relationship loaded lazily ("Post.tags")
            if not orm_state.is_select or orm_state.lazy_loaded_from is None:
                return
            path = orm_state.loader_strategy_path
            if path is not None and path.path:
                attempt.extra.setdefault("lazy_attribute", str(path.path[-1]))

        event.listen(session.sync_session, "do_orm_execute", name_it)
        if begin:
            await session.begin()
        try:
            yield session
        finally:
            attempt.lazy_loads += counter.count


_LAZY_LOADER = getattr(strategies, "_LazyLoader", None) or strategies.LazyLoader  # renamed in 2.1


def _lazy_attribute(exc: BaseException) -> str | None:
    """The relationship a lazy load fired for ("Post.author"), read from the LazyLoader in the traceback."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            loader = tb.tb_frame.f_locals.get("self")
            if isinstance(loader, _LAZY_LOADER) and getattr(loader, "parent_property", None) is not None:
                return str(loader.parent_property)
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    return None


def _note_lazy(attempt: Attempt, exc: BaseException) -> None:
    """Remember which relationship loaded lazily, before the frames that tell are released."""
    attempt.extra.setdefault("lazy_attribute", _lazy_attribute(exc))


async def _feed(answer: Any, session: AsyncSession, attempt: Attempt, **call: Any) -> Any:
    try:
        return await call_answer(answer.feed, session, **call)
    except _AnswerRaised as raised:
        if _is_lazy_load(raised.error):
            _note_lazy(attempt, raised.error)
        raise


_READ_LAZILY = (
    "{where} was loaded lazily, one query per item (in async code it raises MissingGreenlet): load it with "
    "the page: join it and select the column you need, or load it up front with joinedload({where}) or "
    "selectinload({where})"
)
_WRITTEN_LAZILY = (
    "{where} was loaded lazily: assigning a collection of an object already flushed (a SELECT after "
    "session.add() autoflushes it) first loads the old collection, a query of its own (in async code "
    "MissingGreenlet). Look the tags up before you add the post, then set post.tags"
)


@dataclass
class NoLazyLoadsNamed(NoLazyLoads):
    """No lazy loads; a failure names the relationship that loaded lazily, and what to do about it."""

    advice: str = _READ_LAZILY

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        where = attempt.extra.get("lazy_attribute")
        if not result.passed and where:
            result.message = self.advice.format(where=where)
        return result


def _shape_or_lazy(attempt: Attempt, exc: BaseException) -> None:
    """Reading the answer's items failed: a lazy load (counted) or a wrong shape (reported)."""
    if _is_lazy_load(exc):
        _note_lazy(attempt, exc)
        _note_lazy_load(attempt, exc)
    elif isinstance(exc, _Shape):
        attempt.extra["shape"] = str(exc)
    else:
        raise exc


def _read_page(attempt: Attempt, returned: Any) -> tuple[list[tuple[Any, ...]], Any] | None:
    """(items, next_cursor) from what feed returned; None when that failed (a lazy load or a wrong shape,
    recorded in ``attempt``)."""
    try:
        return _page(returned)
    except Exception as exc:
        _shape_or_lazy(attempt, exc)
        return None


def _shape_rule(attempt: Attempt) -> str | None:
    return attempt.extra.get("shape")


SHAPE = Probe(_shape_rule, name="the agreed shape")
