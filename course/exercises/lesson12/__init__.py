"""Lesson 12 · Capstone: a small async data-access layer for a feed, judged requirement by requirement.

The answer is ONE object (a class with ``@staticmethod`` async functions, an instance, a
``SimpleNamespace``, a module) holding:

    async def feed(session, *, limit, cursor=None, tag=None) -> (items, next_cursor)
    async def create_post(session, *, author_id, title, body, tag_names, published_at) -> post id

Every exercise runs those functions on a scratch database the notebook never showed: a
smaller seed, posts whose ``published_at`` ties across page boundaries, and the unique
index on ``(author_id, title)`` the lesson adds. Each requirement is a scenario (pages
walked with the cursor while a new post arrives, a write that the database refuses half-way,
a duplicate, another request that commits the same title on its own connection, an author
who does not exist) scored as its own group of rules. References are raw SQL, independent of
the reference answer.

The package, in reading order: ``reference`` (the contract and the reference design),
``dataset`` (the checker's data set), ``harness`` (running and reading the answer),
``feed`` (q1, q2), ``writes`` (q3, q4), ``scorecard``, ``counterexamples``.
"""

from __future__ import annotations

from . import counterexamples  # noqa: F401  (attaches each exercise's wrong answers)
from .feed import q1, q2
from .reference import UNIQUE_INDEX, AlreadyExists, FeedRepository
from .scorecard import Scorecard, scorecard
from .writes import q3, q4

__all__ = ["UNIQUE_INDEX", "AlreadyExists", "FeedRepository", "Scorecard", "q1", "q2", "q3", "q4", "scorecard"]
