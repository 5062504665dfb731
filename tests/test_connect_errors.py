"""Every way of failing to reach PostgreSQL ends in one explained DatabaseUnavailable, fast.

These tests set COURSE_DATABASE_URL themselves, so they run on both backend
settings. The role and database ones talk to the local server at
127.0.0.1:5432, which is always present here and in CI.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

import course
from course import config as cfg

LOCAL = "postgresql+asyncpg://postgres@127.0.0.1:5432"


def free_port() -> int:
    """A port nothing listens on: bind one, note it, close it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def own_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.ENV_NAMESPACE, f"conn{uuid.uuid4().hex[:10]}")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket that accepts TCP connections (the kernel's backlog does) but never answers."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


async def start_fails(monkeypatch: pytest.MonkeyPatch, url: str) -> course.DatabaseUnavailable:
    monkeypatch.setenv(cfg.ENV_URL, url)
    with pytest.raises(course.DatabaseUnavailable) as info:
        db = await course.start("t")
        await db.close()  # only reached if the test is about to fail
    return info.value


async def test_nothing_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    began = time.perf_counter()
    error = await start_fails(monkeypatch, f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test")
    assert time.perf_counter() - began < 3
    assert f"127.0.0.1:{port}" in error.message
    assert "Could not reach" in error.message
    # says how to fix it
    assert "Start it" in error.hint
    assert "unset COURSE_DATABASE_URL" in error.hint


async def test_unknown_host(monkeypatch: pytest.MonkeyPatch) -> None:
    error = await start_fails(monkeypatch, "postgresql+asyncpg://postgres@no-such-host.invalid:5432/test")
    assert "no-such-host.invalid:5432" in error.message
    assert "fix the host and port" in error.hint


async def test_role_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    error = await start_fails(monkeypatch, "postgresql+asyncpg://no_such_role_xyz@127.0.0.1:5432/test")
    assert "refused the login" in error.message
    assert "127.0.0.1:5432" in error.message
    assert "no_such_role_xyz" in error.message
    assert "createuser" in error.hint
    # the cause once, in the server's words: not SQLAlchemy's, the driver's and the server's copy of it
    assert error.message.count('role "no_such_role_xyz" does not exist') == 1, error.message
    assert "Background on this error" not in error.message


async def test_no_connection_slot_left_is_explained_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """A class that exhausts max_connections: a role with CONNECTION LIMIT 1 reproduces it here
    without touching the server's settings (both give SQLSTATE 53300)."""
    import asyncpg

    role = f"course_limit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
        held = await asyncpg.connect(f"postgresql://{role}@127.0.0.1:5432/test")  # the one slot
        try:
            began = time.monotonic()
            error = await start_fails(monkeypatch, f"postgresql+asyncpg://{role}@127.0.0.1:5432/test")
            assert time.monotonic() - began < 10
        finally:
            await held.close()
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
    assert "no connection left" in error.message
    assert "max_connections" in error.hint and "CONNECTION LIMIT" in error.hint
    assert "Shut Down All Kernels" in error.hint


async def test_database_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    error = await start_fails(monkeypatch, f"{LOCAL}/{name}")
    assert f"no database named {name!r}" in error.message
    assert f"createdb {name}" in error.hint


async def test_silent_server_fails_within_seconds(
    monkeypatch: pytest.MonkeyPatch, silent_server: int
) -> None:
    began = time.perf_counter()
    error = await start_fails(monkeypatch, f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/test")
    elapsed = time.perf_counter() - began
    assert elapsed < 9, f"took {elapsed:.1f}s"
    assert f"127.0.0.1:{silent_server}" in error.message
    assert "did not answer" in error.message
    assert "not another service" in error.hint


async def test_password_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    error = await start_fails(monkeypatch, f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/test")
    shown = "\n".join([str(error), repr(error), *error._render_traceback_()])
    assert "hunter2" not in shown
    assert "postgres:***@" in shown


async def test_password_never_shown_when_server_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    error = await start_fails(
        monkeypatch, "postgresql+asyncpg://no_such_role_xyz:hunter2@127.0.0.1:5432/test"
    )
    assert "hunter2" not in "\n".join([str(error), *error._render_traceback_()])


async def test_error_is_not_chained_to_driver_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    error = await start_fails(monkeypatch, f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test")
    assert error.__cause__ is None
    assert error.__suppress_context__


async def test_jupyter_rendering_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    error = await start_fails(monkeypatch, f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test")
    lines = error._render_traceback_()
    assert isinstance(lines, list)
    assert all(isinstance(line, str) for line in lines)
    assert 3 <= len(lines) <= 12
    assert "DatabaseUnavailable" in lines[0]
    text = "\n".join(lines)
    assert error.message in text
    assert f"127.0.0.1:{port}" in text
    assert "What to do:" in lines
    assert "Traceback" not in text


def test_configuration_error_renders_for_jupyter() -> None:
    with pytest.raises(course.ConfigurationError) as info:
        cfg.resolve_backend("postgresql://u@h/db")
    lines = info.value._render_traceback_()
    assert "ConfigurationError" in lines[0]
    assert any("postgresql+asyncpg://" in line for line in lines)
    assert len(lines) <= 12


async def test_bad_url_fails_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.ENV_URL, "postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(course.ConfigurationError):
        await course.start("t")
