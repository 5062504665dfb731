"""Which backend a notebook runs on, and the namespace it owns there.

``COURSE_DATABASE_URL`` unset: SQLite through aiosqlite, one file per notebook.
Set: a ``postgresql+asyncpg://`` URL; the notebook owns one schema in it.
Every problem with the setting becomes a :class:`ConfigurationError` saying
what to write instead. Passwords never appear in a message.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError

ENV_URL = "COURSE_DATABASE_URL"
ENV_USER = "COURSE_USER"
ENV_NAMESPACE = "COURSE_NAMESPACE"
ENV_DATA_DIR = "COURSE_DATA_DIR"
#: Set by ``binder/start``: the URL of the PostgreSQL server it runs beside Jupyter.
ENV_BINDER_URL = "COURSE_BINDER_POSTGRES_URL"
SETTINGS_FILE = "settings.json"

EXAMPLE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
EXAMPLE_SOCKET_URL = "postgresql+asyncpg://postgres@/test?host=/var/run/postgresql"

_SECRET_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")
# the same without a well-formed "scheme://" in front (typos such as "postgresql//u:pw@h")
_SECRET_NO_SCHEME = re.compile(r"((?:^|[/\s])[^:/@\s]*:)[^@/\s]*@")
# a password passed as a query parameter (?password=...), which hide_password does not cover
_SECRET_IN_QUERY = re.compile(r"([?&](?:password|passwd|pass|pwd)=)[^&\s'\"]*", re.I)


@dataclass(frozen=True)
class BackendConfig:
    """The resolved backend: a dialect name and, for PostgreSQL, the server URL."""

    backend: str  # "sqlite" or "postgresql"
    url: URL | None  # None for SQLite (the file is chosen per namespace)

    @property
    def label(self) -> str:
        return "SQLite (aiosqlite)" if self.backend == "sqlite" else "PostgreSQL (asyncpg)"

    @property
    def safe_url(self) -> str:
        """The URL as it may be printed: the password replaced by ``***``."""
        if self.url is None:
            return "sqlite+aiosqlite (a file per notebook)"
        return hide_secret(self.url.render_as_string(hide_password=True))


def hide_secret(text: str) -> str:
    """Blank out a password in anything that looks like a URL inside ``text``."""
    text = _SECRET_NO_SCHEME.sub(r"\1***@", _SECRET_IN_URL.sub(r"\1***@", text))
    return _SECRET_IN_QUERY.sub(r"\1***", text)


def resolve_backend(raw: str | None = None) -> BackendConfig:
    """Read ``COURSE_DATABASE_URL`` (or ``raw``, or the choice saved by ``python -m course use``)
    and check it names a backend we run on."""
    raw = os.environ.get(ENV_URL) if raw is None else raw
    if raw is None:
        raw = saved_url()
    if raw is None or not raw.strip():
        return BackendConfig("sqlite", None)
    raw = raw.strip()
    shown = hide_secret(raw)
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigurationError(
            f"{ENV_URL} is set to {shown!r}, which is not a database URL.",
            hint=f"Write it as {EXAMPLE_URL}\n"
            f"(or, through a Unix socket, {EXAMPLE_SOCKET_URL}),\n"
            f"or unset {ENV_URL} to use the built-in SQLite database.",
        ) from None
    shown = hide_secret(url.render_as_string(hide_password=True))
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "postgresql":
        if "+" not in url.drivername or driver != "asyncpg":
            named = f"the driver {driver!r}" if "+" in url.drivername else "no driver"
            raise ConfigurationError(
                f"{ENV_URL} ({shown}) names PostgreSQL with {named}. The course runs on "
                "asyncpg; a bare postgresql:// means psycopg2 on SQLAlchemy 2.0 and "
                "psycopg 3 on 2.1, neither of which this course uses.",
                hint="Start the URL with postgresql+asyncpg:// , for example\n" + EXAMPLE_URL,
            )
        if not url.database:
            raise ConfigurationError(
                f"{ENV_URL} ({shown}) does not name a database.",
                hint=f"Add the database name after the last slash, as in {EXAMPLE_URL}",
            )
        return BackendConfig("postgresql", url)
    if backend == "sqlite":
        raise ConfigurationError(
            f"{ENV_URL} ({shown}) names SQLite. SQLite is the course's default and "
            "needs no URL: each notebook gets its own database file.",
            hint=f"Unset {ENV_URL} (for example `unset {ENV_URL}` in the shell that starts Jupyter).",
        )
    raise ConfigurationError(
        f"{ENV_URL} ({shown}) names the backend {backend!r}. The course runs on "
        "SQLite (the default) and PostgreSQL only.",
        hint=f"Use a PostgreSQL URL such as {EXAMPLE_URL}, or unset {ENV_URL} for SQLite.",
    )


def _identifier(text: str) -> str:
    """Lowercase letters, digits and underscores only: safe as a schema or file name."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return cleaned or "x"


def course_user() -> str:
    """The learner's name: ``COURSE_USER``, else the JupyterHub user, else the login name.

    On a hub whose servers all run as one system user (Zero to JupyterHub: everyone is
    ``jovyan``, in the same home path) the login name would put every learner in one namespace;
    the hub names each server's owner in ``JUPYTERHUB_USER``.
    """
    name = os.environ.get(ENV_USER) or os.environ.get("JUPYTERHUB_USER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no login name in some containers
            name = "learner"
    return _identifier(name)[:20]


def namespace_for(lesson: str, *, cwd: str | os.PathLike[str] | None = None, variant: str = "") -> str:
    """The schema (PostgreSQL) or file stem (SQLite) one notebook owns.

    Built from the user, the lesson and a discriminator, so ``notebooks/06`` and
    ``solutions/06`` running at once never collide, nor do two learners sharing
    a server. The discriminator is ``COURSE_NAMESPACE`` when set, else a short
    hash of the kernel's working directory (Jupyter and nbval start a kernel in
    the notebook's folder).
    """
    disc = os.environ.get(ENV_NAMESPACE)
    if disc:
        disc = _identifier(disc)[:16]
    else:
        where = str(Path(cwd if cwd is not None else os.getcwd()).resolve())
        disc = hashlib.sha1(where.encode()).hexdigest()[:6]
    # ``variant`` (e.g. a checker's scratch copy) is added after truncation: never the same name
    return f"course_{course_user()}_{_identifier(lesson)[:12]}{_identifier(variant) if variant else ''}_{disc}"[:63]


OWNER_COMMENT = re.compile(r"^course user=([a-z0-9_]+)$")


def owner_comment() -> str:
    """The comment a PostgreSQL schema gets, naming its learner (``python -m course admin`` reads it)."""
    return f"course user={course_user()}"


def data_dir() -> Path:
    """Where SQLite files live: ``COURSE_DATA_DIR`` or a cache folder in the home."""
    base = os.environ.get(ENV_DATA_DIR)
    path = Path(base) if base else Path.home() / ".cache" / "async-sqlalchemy-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the backend chosen with ``python -m course use`` (no environment variable needed) ---


def settings_path() -> Path:
    """The small settings file ``python -m course use`` writes (in the data folder)."""
    return data_dir() / SETTINGS_FILE


def saved_url() -> str | None:
    """The database URL saved by ``python -m course use``, or None (SQLite)."""
    import json

    try:
        url = json.loads(settings_path().read_text(encoding="utf-8")).get("database_url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) and url.strip() else None


def backend_source() -> str:
    """Where the active backend comes from, for ``doctor`` and ``use``."""
    if os.environ.get(ENV_URL) is not None:
        return f"the environment variable {ENV_URL}"
    if saved_url() is not None:
        return f"{settings_path()} (python -m course use)"
    return "the default (SQLite)"


def backend_choice(choice: str) -> BackendConfig:
    """What ``python -m course use CHOICE`` means: ``sqlite``, ``postgresql`` (the server
    ``binder/start`` runs, named by ``COURSE_BINDER_POSTGRES_URL``) or a ``postgresql+asyncpg://``
    URL. A malformed URL raises :class:`ConfigurationError` before anything is saved."""
    choice = choice.strip()
    if choice.lower() == "sqlite":
        return BackendConfig("sqlite", None)
    if choice.lower() in ("postgresql", "postgres"):
        url = os.environ.get(ENV_BINDER_URL, "").strip()
        if not url:
            raise ConfigurationError(
                f"No course PostgreSQL server is known here ({ENV_BINDER_URL} is not set: "
                "binder/start sets it on Binder).",
                hint="Name your server instead, for example\n"
                f"  python -m course use {EXAMPLE_URL}",
            )
        choice = url
    return resolve_backend(choice)


def save_backend(config: BackendConfig) -> None:
    """Every later ``course.start()`` (in any kernel) uses ``config``; ``COURSE_DATABASE_URL``,
    when set, still wins."""
    import json

    path = settings_path()
    if config.url is None:
        path.unlink(missing_ok=True)
        return
    path.touch(mode=0o600)  # it may hold a password: readable by you only
    path.chmod(0o600)
    path.write_text(
        json.dumps({"database_url": config.url.render_as_string(hide_password=False)}) + "\n",
        encoding="utf-8",
    )

