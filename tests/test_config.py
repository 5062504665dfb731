"""COURSE_DATABASE_URL is checked up front and every mistake is explained; namespaces are safe names."""

from __future__ import annotations

import re

import pytest

import course
from course import config as cfg

SECRET = "s3cret"


def config_error(raw: str) -> course.ConfigurationError:
    with pytest.raises(course.ConfigurationError) as info:
        cfg.resolve_backend(raw)
    return info.value


def all_text(error: course.CourseError) -> str:
    """Everything a learner could see: str(), the message, the hint and the Jupyter rendering."""
    return "\n".join(
        [str(error), repr(error), error.message, error.hint or "", *error._render_traceback_()]
    )


def test_unset_or_blank_means_sqlite() -> None:
    assert cfg.resolve_backend("").backend == "sqlite"
    assert cfg.resolve_backend("   ").backend == "sqlite"


def test_unset_environment_means_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cfg.ENV_URL, raising=False)
    backend = cfg.resolve_backend()
    assert backend.backend == "sqlite"
    assert backend.url is None


def test_asyncpg_url_is_accepted() -> None:
    backend = cfg.resolve_backend("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    assert backend.backend == "postgresql"
    assert backend.url is not None
    assert backend.url.database == "test"
    assert backend.url.port == 5432


def test_unix_socket_url_is_accepted() -> None:
    backend = cfg.resolve_backend("postgresql+asyncpg://postgres@/test?host=/var/run/postgresql")
    assert backend.backend == "postgresql"
    assert backend.url is not None
    assert backend.url.database == "test"
    assert backend.url.host is None
    assert backend.url.query["host"] == "/var/run/postgresql"


def test_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.ENV_URL, "mysql+aiomysql://u@h/db")
    with pytest.raises(course.ConfigurationError, match="mysql"):
        cfg.resolve_backend()


def test_malformed_url() -> None:
    error = config_error("not a url")
    assert "not a database URL" in error.message
    assert "'not a url'" in error.message
    assert "postgresql+asyncpg://" in error.hint
    assert "unset" in error.hint.lower()


def test_bare_postgresql_says_to_use_asyncpg() -> None:
    error = config_error("postgresql://postgres@127.0.0.1/test")
    assert "no driver" in error.message
    assert "postgresql+asyncpg://" in str(error)
    assert "Start the URL with postgresql+asyncpg://" in error.hint


def test_psycopg_driver_is_refused() -> None:
    error = config_error("postgresql+psycopg://postgres@127.0.0.1/test")
    assert "'psycopg'" in error.message
    assert "asyncpg" in error.message
    assert "postgresql+asyncpg://" in error.hint


def test_other_database_is_refused() -> None:
    error = config_error("mysql+aiomysql://root@127.0.0.1/test")
    assert "'mysql'" in error.message
    assert "SQLite" in error.message and "PostgreSQL" in error.message
    assert "postgresql+asyncpg://" in error.hint


def test_sqlite_url_says_to_unset() -> None:
    error = config_error("sqlite+aiosqlite:///x")
    assert "SQLite" in error.message
    assert error.hint.startswith("Unset COURSE_DATABASE_URL")


def test_url_without_database() -> None:
    error = config_error("postgresql+asyncpg://postgres@127.0.0.1:5432")
    assert "does not name a database" in error.message
    assert "after the last slash" in error.hint


@pytest.mark.parametrize(
    "raw",
    [
        # well formed, each refused for a different reason
        f"postgresql://u:{SECRET}@h/db",
        f"postgresql+psycopg://u:{SECRET}@h/db",
        f"mysql+aiomysql://u:{SECRET}@h/db",
        f"sqlite+aiosqlite://u:{SECRET}@h/db",
        f"postgresql+asyncpg://u:{SECRET}@h",
        f"postgresql+asyncpg://u:{SECRET}@h:5432/",
        # malformed: typos a learner makes while copying the example
        f"u:{SECRET}@h/db",
        f"postgresql//u:{SECRET}@h/db",
        f"postgresql:/u:{SECRET}@h/db",
        f"postgresql+asyncpg:u:{SECRET}@h/db",
        f"postgresql+asyncpg://u:{SECRET}@h:notaport/db",
        f"  postgresql://u:{SECRET}@h/db  ",
    ],
)
def test_password_never_shown(raw: str) -> None:
    error = config_error(raw)
    assert SECRET not in all_text(error)
    # the learner still sees which URL was meant
    assert "u:***@" in error.message or "not a database URL" in error.message


def test_password_hidden_in_safe_url() -> None:
    backend = cfg.resolve_backend(f"postgresql+asyncpg://u:{SECRET}@h/db")
    assert SECRET not in backend.safe_url
    assert "u:***@h" in backend.safe_url


def test_malformed_url_is_a_configuration_error_not_a_crash() -> None:
    # a non-numeric port makes SQLAlchemy raise ValueError rather than ArgumentError
    error = config_error("postgresql+asyncpg://postgres@127.0.0.1:fivefourthreetwo/test")
    assert "not a database URL" in error.message


def test_hide_secret_leaves_urls_without_password_alone() -> None:
    for text in (
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        "postgresql+asyncpg://postgres@/test?host=/var/run/postgresql",
        "Connect call failed ('127.0.0.1', 5432)",
    ):
        assert cfg.hide_secret(text) == text


# -- namespaces ------------------------------------------------------------------------

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@pytest.fixture
def plain_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COURSE_NAMESPACE override, a fixed user: the namespace comes from lesson and cwd."""
    monkeypatch.delenv(cfg.ENV_NAMESPACE, raising=False)
    monkeypatch.setenv(cfg.ENV_USER, "ada")


def assert_identifier(name: str) -> None:
    assert IDENTIFIER.match(name), name
    assert len(name) <= 63, (len(name), name)


@pytest.mark.usefixtures("plain_namespace")
def test_namespace_differs_by_lesson(tmp_path) -> None:
    names = {cfg.namespace_for(lesson, cwd=tmp_path) for lesson in ("00", "01", "06", "06b", "10", "12")}
    assert len(names) == 6


@pytest.mark.usefixtures("plain_namespace")
def test_namespace_differs_by_cwd(tmp_path) -> None:
    notebooks, solutions = tmp_path / "notebooks", tmp_path / "solutions"
    assert cfg.namespace_for("06", cwd=notebooks) != cfg.namespace_for("06", cwd=solutions)
    # and is stable for one folder
    assert cfg.namespace_for("06", cwd=notebooks) == cfg.namespace_for("06", cwd=notebooks)


@pytest.mark.usefixtures("plain_namespace")
def test_namespace_uses_cwd_by_default(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cfg.namespace_for("06") == cfg.namespace_for("06", cwd=tmp_path)


@pytest.mark.usefixtures("plain_namespace")
def test_namespace_differs_by_user(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    ada = cfg.namespace_for("06", cwd=tmp_path)
    monkeypatch.setenv(cfg.ENV_USER, "grace")
    grace = cfg.namespace_for("06", cwd=tmp_path)
    assert ada != grace
    assert "ada" in ada and "grace" in grace


@pytest.mark.usefixtures("plain_namespace")
def test_namespace_override(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.ENV_NAMESPACE, "run-1")
    one = cfg.namespace_for("06", cwd=tmp_path / "a")
    # the override replaces the folder hash
    assert one == cfg.namespace_for("06", cwd=tmp_path / "b")
    monkeypatch.setenv(cfg.ENV_NAMESPACE, "run-2")
    assert cfg.namespace_for("06", cwd=tmp_path / "a") != one


@pytest.mark.parametrize(
    ("user", "lesson", "override"),
    [
        ("ada", "06", None),
        ("Jane.Doe@EXAMPLE.org", "Lesson 06: Loading Strategies!", None),
        ("Ünïcødé Üser", "Ünïcødé", "ÄÖÜ"),
        ("x" * 300, "y" * 300, "z" * 300),
        ("---", "***", "..."),
        ("123user", "06", "42"),
    ],
)
def test_namespace_is_a_short_lowercase_identifier(
    user: str, lesson: str, override: str | None, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cfg.ENV_USER, user)
    if override is None:
        monkeypatch.delenv(cfg.ENV_NAMESPACE, raising=False)
    else:
        monkeypatch.setenv(cfg.ENV_NAMESPACE, override)
    deep = tmp_path.joinpath(*["a-very-long-folder-name"] * 10)
    assert_identifier(cfg.namespace_for(lesson, cwd=deep))


def test_namespace_without_course_user(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cfg.ENV_USER, raising=False)
    monkeypatch.delenv(cfg.ENV_NAMESPACE, raising=False)
    assert_identifier(cfg.namespace_for("06", cwd=tmp_path))


def test_on_a_hub_the_learner_is_the_hub_user_not_the_shared_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero to JupyterHub runs every server as ``jovyan``: the hub's user name must tell learners apart."""
    monkeypatch.delenv(cfg.ENV_USER, raising=False)
    monkeypatch.setenv("USER", "jovyan")
    monkeypatch.setenv("LOGNAME", "jovyan")
    monkeypatch.setenv("JUPYTERHUB_USER", "Ann.Lee")
    assert cfg.course_user() == "ann_lee"
    monkeypatch.setenv(cfg.ENV_USER, "seat07")  # COURSE_USER still wins
    assert cfg.course_user() == "seat07"
    monkeypatch.delenv(cfg.ENV_USER)
    monkeypatch.delenv("JUPYTERHUB_USER")
    assert cfg.course_user() == "jovyan"


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://postgres@127.0.0.1/test?password=qu3ry-secret",
        "mysql+aiomysql://u@h/db?sslmode=require&password=qu3ry-secret",
        "not a url ?password=qu3ry-secret",
    ],
)
def test_password_in_the_query_string_is_never_shown(raw):
    with pytest.raises(course.ConfigurationError) as caught:
        cfg.resolve_backend(raw)
    assert "qu3ry-secret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_safe_url_hides_a_query_string_password():
    config = cfg.resolve_backend("postgresql+asyncpg://postgres@127.0.0.1/test?password=qu3ry-secret")
    assert "qu3ry-secret" not in config.safe_url
