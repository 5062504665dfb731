"""binder/: the files repo2docker reads are consistent, and binder/start really gives an
unprivileged user a PostgreSQL server the course runs on. No Docker, no network."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from sqlalchemy import text

import course
from course import config as cfg

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
BINDER = ROOT / "binder"
START = BINDER / "start"
LESSON_00 = "notebooks/00_start_here.ipynb"
IN_CI = bool(os.environ.get("CI"))


def lines(path: Path) -> list[str]:
    """Non-empty lines without comments, as repo2docker reads apt.txt and pip reads requirements."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


# --- the build plan's inputs ---


def test_binder_folder_is_the_whole_plan() -> None:
    """With binder/ present repo2docker reads only it; these files there would change the build kind."""
    names = {p.name for p in BINDER.iterdir()}
    assert {"runtime.txt", "apt.txt", "requirements.txt", "start"} <= names
    # environment.yml would switch to the conda build (ignoring runtime.txt and requirements.txt);
    # a Dockerfile would replace the plan altogether
    assert not names & {"environment.yml", "environment.yaml", "Dockerfile", "Pipfile", "Project.toml"}


def test_runtime_pins_a_python_sqlalchemy_21_runs_on() -> None:
    (pin,) = lines(BINDER / "runtime.txt")
    match = re.fullmatch(r"python-(\d+)\.(\d+)", pin)
    assert match, f"runtime.txt should read python-X.Y, not {pin!r}"
    version = (int(match.group(1)), int(match.group(2)))
    assert version >= (3, 11), "SQLAlchemy 2.1 needs Python 3.11 or newer"
    requires = re.search(r'^requires-python\s*=\s*"([^"]+)"', PYPROJECT, re.M).group(1)
    assert f"{version[0]}.{version[1]}" in SpecifierSet(requires)


def test_requirements_install_the_course_and_only_real_packages() -> None:
    entries = lines(BINDER / "requirements.txt")
    assert "." in entries or "-e ." in entries, "the image must install the course itself"
    assert re.search(r'^name = "async-sqlalchemy-course"$', PYPROJECT, re.M)
    test_block = re.search(r"^test = \[(.*?)^\]", PYPROJECT, re.M | re.S).group(1)
    test_tools = {Requirement(r).name for r in re.findall(r'"([^"]+)"', test_block)}
    assert "pytest" in test_tools
    from importlib.metadata import PackageNotFoundError, version

    for entry in entries:
        if entry in (".", "-e ."):
            continue
        try:
            req = Requirement(entry)
        except InvalidRequirement as exc:
            raise AssertionError(f"binder/requirements.txt: {entry!r} is not a requirement: {exc}") from None
        assert req.name not in test_tools, f"{req.name} is a test tool: keep it out of the image"
        try:
            version(req.name)
        except PackageNotFoundError:
            raise AssertionError(f"{req.name} is not a package the course is tested with") from None


def _known_to_apt(name: str) -> bool | None:
    """True/False from the local package database (no network); None when there is none."""
    for cmd in (["dpkg-query", "-W", name], ["apt-cache", "show", "--no-all-versions", name]):
        if shutil.which(cmd[0]) is None:
            continue
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return True
    if shutil.which("apt-cache") or shutil.which("dpkg-query"):
        return False
    return None


def test_apt_names_are_real_packages() -> None:
    names = lines(BINDER / "apt.txt")
    assert names, "apt.txt installs PostgreSQL for the learner to switch to"
    for name in names:
        # repo2docker refuses anything else (it pastes the names into a shell command)
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", name), name
    # binder/start looks for /usr/lib/postgresql/*/bin: what the postgresql packages install
    assert any(re.fullmatch(r"postgresql(-\d+)?", n) for n in names)
    known = {name: _known_to_apt(name) for name in names}
    if None in known.values():
        if IN_CI:
            pytest.fail("no dpkg/apt-cache here to check apt.txt's names against")
        pytest.skip("not a Debian-family system: apt.txt's names cannot be checked offline")
    # Debian's archive here stands in for Ubuntu 24.04's: the names checked exist in both
    assert all(known.values()), f"not in the local package database: {[n for n, k in known.items() if not k]}"


def test_start_script_shape() -> None:
    assert os.access(START, os.X_OK), "binder/start must be executable (git keeps the bit)"
    source = START.read_text(encoding="utf-8")
    assert source.startswith("#!/bin/bash")
    last = [line for line in source.splitlines() if line.strip() and not line.startswith("#")][-1]
    assert last == 'exec "$@"', "repo2docker hands Jupyter's command to the start script"
    assert "/usr/lib/postgresql/*/bin" in source, "find the binaries whatever the major version"
    subprocess.run(["bash", "-n", str(START)], check=True)


def test_readme_badge_opens_lesson_00_in_jupyterlab() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = re.search(r"\(https://mybinder\.org/v2/gh/[^)\s]+\)", readme)
    assert badge, "README needs a Binder badge"
    assert f"urlpath=lab/tree/{LESSON_00}" in badge.group(0)
    assert (ROOT / LESSON_00).exists()


# --- binder/start, run for real ---


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class Learner:
    """Who runs binder/start: a fresh unprivileged user when we are root (initdb refuses
    root, as Binder's user is never root), else ourselves with a fresh home."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.created = False
        if os.geteuid() == 0:
            self.name = f"cbinder{uuid.uuid4().hex[:8]}"
            self.home = base / "home"
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(self.home),
                            "--shell", "/bin/sh", self.name], check=True, capture_output=True)
            self.created = True
            entry = pwd.getpwnam(self.name)
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
            self.home.mkdir()
            os.chown(self.home, self.uid, self.gid)
        else:
            entry = pwd.getpwuid(os.geteuid())
            self.name, self.uid, self.gid = entry.pw_name, entry.pw_uid, entry.pw_gid
            self.home = base / "home"
            self.home.mkdir()

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        kw = {"user": self.uid, "group": self.gid, "extra_groups": []} if self.created else {}
        return subprocess.run(list(argv), env=env, cwd=self.home, capture_output=True, text=True,
                              timeout=timeout, **kw)

    def remove(self) -> None:
        if not self.created:
            return
        # anything still running as this user was started by this test: end it by its id
        left = subprocess.run(["ps", "-u", str(self.uid), "-o", "pid="], capture_output=True, text=True)
        for pid in left.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["userdel", self.name], capture_output=True)


@pytest.fixture
def learner() -> Iterator[Learner]:
    if not sys.platform.startswith("linux") or _postgres_bin() is None:
        if IN_CI:
            pytest.fail("CI must run binder/start for real: PostgreSQL's server binaries are missing")
        pytest.skip("needs Linux and PostgreSQL's server binaries (initdb, pg_ctl)")
    base = Path(tempfile.mkdtemp(prefix="cbt-", dir="/tmp"))  # short: a socket path has ~100 bytes
    base.chmod(0o755)
    shutil.copy2(START, base / "start")  # the learner may not be able to reach the checkout
    who = Learner(base)
    try:
        yield who
    finally:
        data = who.home / ".course-postgres" / "data"
        if (data / "postmaster.pid").exists():
            who.run(str(_postgres_bin() / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w")
        who.remove()
        shutil.rmtree(base, ignore_errors=True)


def _launch(who: Learner) -> str:
    """As Binder does: binder/start with a command; returns the URL the command saw."""
    done = who.run("bash", str(who.base / "start"), "sh", "-c", 'printf %s "${COURSE_BINDER_POSTGRES_URL:-}"')
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_ready(pg_home: Path, timeout: float = 90) -> str:
    """The launch set the server up in the background: wait for its ready marker; the log then.

    binder/start logs "... is ready; switch with: ..." before it creates the marker, so the
    line is there once the marker is (the test waits for the marker, the learner's signal,
    and only then reads the log).
    """
    deadline = time.monotonic() + timeout
    log = pg_home / "start.log"
    while not (pg_home / "ready").exists():
        said = log.read_text(errors="replace") if log.exists() else ""
        assert "the course runs on SQLite" not in said, said
        assert time.monotonic() < deadline, f"no server after {timeout} s:\n{said}"
        time.sleep(0.1)
    return log.read_text(errors="replace")


def test_start_announces_before_it_marks_ready() -> None:
    """The ready marker comes last: a reader who sees it must find the "switch with" line."""
    body = START.read_text()
    said = body.index('echo "binder/start: PostgreSQL')
    marked = body.index('touch "$home/ready"')
    assert "switch with: python -m course use postgresql" in body[said:marked]
    assert said < marked, "binder/start creates the ready marker before it logs that the server is ready"


def _course(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "course", *argv], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_start_runs_a_postgres_the_course_uses(learner: Learner, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    pg_home = learner.home / ".course-postgres"
    began = time.monotonic()
    url = _launch(learner)
    launched = time.monotonic() - began
    run_dir = pg_home / "run"
    assert url == f"postgresql+asyncpg://{learner.name}@/course?host={run_dir}"
    said = _wait_ready(pg_home)
    ready = time.monotonic() - began
    print(f"launch returned in {launched:.2f} s; server ready after {ready:.2f} s")
    assert "switch with: python -m course use postgresql" in said
    assert run_dir.stat().st_mode & 0o777 == 0o700  # only the learner reaches the socket
    assert (pg_home / "data").stat().st_uid == learner.uid
    pid = (pg_home / "data" / "postmaster.pid").read_text().split()[0]

    # again by hand, in the foreground: same server, same database, no second initdb
    again = learner.run("bash", str(learner.base / "start"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is ready" in again.stdout and "initdb" not in again.stdout
    assert (pg_home / "data" / "postmaster.pid").read_text().split()[0] == pid
    # and as a relaunch would
    assert _launch(learner) == url
    _wait_ready(pg_home)
    assert (pg_home / "data" / "postmaster.pid").read_text().split()[0] == pid

    # the learner's one action, then the setup cell (we connect as root through the learner's
    # socket, as the learner's role: the server trusts the socket, which only they and root reach)
    env = {k: v for k, v in os.environ.items() if k not in (cfg.ENV_URL, cfg.ENV_NAMESPACE)}
    env.update({cfg.ENV_DATA_DIR: str(tmp_path), cfg.ENV_BINDER_URL: url, cfg.ENV_USER: learner.name})
    for key in (cfg.ENV_URL, cfg.ENV_NAMESPACE):
        monkeypatch.delenv(key, raising=False)
    for key in (cfg.ENV_DATA_DIR, cfg.ENV_BINDER_URL, cfg.ENV_USER):
        monkeypatch.setenv(key, env[key])
    switched = _course("use", "postgresql", env=env)
    assert switched.returncode == 0, switched.stderr
    assert "PostgreSQL (asyncpg)" in switched.stdout
    db = await course.start("binder")
    try:
        assert db.backend == "postgresql"
        assert db.namespace.startswith(f"course_{learner.name}_binder_")
        assert await db.counts() == db.seeded and db.seeded["users"] == 500
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SHOW listen_addresses"))).scalar_one() == ""
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == learner.name
    finally:
        await db.discard()
    assert _course("use", "sqlite", env=env).returncode == 0
    assert cfg.resolve_backend().backend == "sqlite"


def test_use_postgresql_refuses_a_server_that_does_not_answer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != cfg.ENV_URL}
    env.update({cfg.ENV_DATA_DIR: str(tmp_path),
                cfg.ENV_BINDER_URL: f"postgresql+asyncpg://nobody@/course?host={tmp_path}"})
    done = _course("use", "postgresql", env=env)
    assert done.returncode == 1
    assert "wait a few seconds" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / cfg.SETTINGS_FILE).exists()  # nothing saved
    env.pop(cfg.ENV_BINDER_URL)
    done = _course("use", "postgresql", env=env)
    assert done.returncode == 1 and "COURSE_BINDER_POSTGRES_URL is not set" in done.stderr
