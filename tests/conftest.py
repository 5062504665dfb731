"""Shared test fixtures: every seeded database the tests use lives in a namespace of its own.

A random ``COURSE_NAMESPACE`` for the fixture's whole lifetime means neither the database
nor the checkers' scratch copies (derived from the same variable) are shared with another
test run on the same machine and checkout.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import course


@asynccontextmanager
async def private_db(label: str) -> AsyncIterator[course.CourseDB]:
    """A freshly seeded database no other run shares; discarded (schema or file dropped) after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_NAMESPACE", f"{label[:4]}{uuid.uuid4().hex[:10]}")
        handle = await course.start(label)
        try:
            yield handle
        finally:
            await handle.discard()
