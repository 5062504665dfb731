"""A real JupyterHub for a class: three learners, one PostgreSQL database, nbgitpuller, admin drop.

Runs only when asked (``pytest -m hub``, with ``COURSE_DATABASE_URL`` on PostgreSQL): it starts
JupyterHub with ``docs/jupyterhub_config.py`` (the configuration the instructors' guide shows),
replacing only authentication, spawner and ports with local stand-ins. Then, through the hub's REST
API and each learner's Jupyter server API, as a browser would: it starts three servers, pulls the
course into each home with an nbgitpuller request, runs two learner notebooks in every server at
once, and checks that each learner got their own schemas, that nobody sees another's rows, that a
second pull keeps a learner's edit, and that ``python -m course admin drop --user`` removes exactly
one learner's schemas. Every process, schema and folder it made is gone afterwards, also on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.hub

ROOT = Path(__file__).resolve().parent.parent
DOCS_CONFIG = ROOT / "docs" / "jupyterhub_config.py"
LESSONS = ("00_start_here", "02_filtering")
CELL_TIMEOUT = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy_command() -> str:
    """configurable-http-proxy: COURSE_CHP, on PATH, or where .ci/run installs it from npm."""
    for candidate in (
        os.environ.get("COURSE_CHP"),
        shutil.which("configurable-http-proxy"),
        str(ROOT / ".ci" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "JupyterHub's proxy is missing: `npm install --prefix .ci/node configurable-http-proxy` "
        "(or set COURSE_CHP to its path)"
    )


@dataclass
class Hub:
    url: str
    token: str
    home: Path
    upstream: Path
    process: subprocess.Popen
    log: Path
    learners: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kw)

    def server(self, user: str) -> str:
        return f"{self.url}/user/{user}"

    def user_api(self, user: str, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.server(user)}{path}", headers=headers, timeout=120, **kw)


def _log_tail(hub: Hub) -> str:
    """The hub's log without its routine API requests (the test's polling would hide the cause)."""
    lines = [line for line in hub.log.read_text().splitlines() if " 200 GET /hub/api/" not in line]
    return "\n".join(lines[-40:])


def _write_config(work: Path, token: str, ports: dict[str, int]) -> Path:
    home = work / "home"
    config = work / "jupyterhub_config.py"
    spawner_env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}",
        "COURSE_DATA_DIR": str(work / "data"),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    config.write_text(
        f"""
load_subconfig({str(DOCS_CONFIG)!r})  # the instructors' configuration, as documented
c = get_config()
# local stand-ins for a login service and for machines: not for a real class
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(home / "{username}")!r}
c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}  # CI runs as root
c.Spawner.http_timeout = 180  # a 2-core machine starting three servers at once
c.Spawner.environment.update({spawner_env!r})
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {ports["public"]}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {ports["hub"]}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports["proxy_api"]}"
c.ConfigurableHTTPProxy.command = [{_proxy_command()!r}]
c.ConfigurableHTTPProxy.pid_file = {str(work / "proxy.pid")!r}
c.JupyterHub.db_url = "sqlite:///{work / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(work / "cookie_secret")!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.services = [{{"name": "course-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "course-test",
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
    "services": ["course-test"],
}}]
"""
    )
    return config


def _spawned_pids(work: Path) -> list[int]:
    """The single-user servers' pids, from the hub's own database (spawner state)."""
    try:
        with sqlite3.connect(work / "hub.sqlite") as conn:
            states = [json.loads(s or "{}") for (s,) in conn.execute("SELECT state FROM spawners")]
    except sqlite3.Error:
        return []
    return [s["pid"] for s in states if s.get("pid")]


def _kill(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.5)


def _drop_learners(learners: list[str]) -> None:
    for user in learners:
        subprocess.run([sys.executable, "-m", "course", "admin", "drop", "--user", user],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    if not os.environ.get("COURSE_DATABASE_URL", "").startswith("postgresql"):
        pytest.fail("the hub test is the class setup: set COURSE_DATABASE_URL to a PostgreSQL database")
    work = Path(tempfile.mkdtemp(prefix="course-hub-"))
    run = uuid.uuid4().hex[:6]
    learners = [f"ann{run}", f"bob{run}", f"cy{run}"]
    upstream = work / "upstream" / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(upstream)], check=True)
    subprocess.run(["git", "-C", str(upstream), "checkout", "-q", "-B", "main"], check=True)
    token = uuid.uuid4().hex
    ports = {"public": _free_port(), "hub": _free_port(), "proxy_api": _free_port()}
    config = _write_config(work, token, ports)
    log = work / "hub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    handle = Hub(f"http://127.0.0.1:{ports['public']}", token, work / "home", upstream, process, log, learners)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if handle.api("GET", "/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterHub did not start:\n{_log_tail(handle)}")
            time.sleep(0.5)
        yield handle
    finally:
        try:
            for user in learners:
                with __import__("contextlib").suppress(httpx.HTTPError):
                    handle.api("DELETE", f"/users/{user}/server")
        finally:
            pids = _spawned_pids(work)
            _kill(process.pid)
            for pid in pids:
                _kill(pid)
            _drop_learners(learners)
            shutil.rmtree(work, ignore_errors=True)


def _start_servers(hub: Hub) -> None:
    for user in hub.learners:
        assert hub.api("POST", f"/users/{user}").status_code in (201, 409)
        assert hub.api("POST", f"/users/{user}/server").status_code in (201, 202)
    deadline = time.monotonic() + 240
    waiting = set(hub.learners)
    while waiting:
        for user in list(waiting):
            server = hub.api("GET", f"/users/{user}").json()["servers"].get("", {})
            if server.get("ready"):
                waiting.discard(user)
        if time.monotonic() > deadline:
            pytest.fail(f"servers not ready: {sorted(waiting)}\n{_log_tail(hub)}")
        time.sleep(0.5)


def _git_pull(hub: Hub, user: str) -> list[dict]:
    """What the nbgitpuller link does, through its event-stream API; returns the events."""
    repo = quote(f"file://{hub.upstream}", safe="")
    response = hub.user_api(user, "GET", f"/git-pull/api?repo={repo}&branch=main")
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events and events[-1].get("phase") == "finished", events[-3:]
    return events


class Kernel:
    """One notebook's kernel in a learner's server, driven over the Jupyter server's websocket."""

    def __init__(self, hub: Hub, user: str, path: str):
        self.hub, self.user, self.path = hub, user, path
        self.session_id = uuid.uuid4().hex

    async def start(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        made = self.hub.user_api(self.user, "POST", "/api/sessions", json={
            "path": self.path, "name": Path(self.path).name, "type": "notebook", "kernel": {"name": "python3"},
        })
        assert made.status_code == 201, made.text
        self.session = made.json()
        kernel = self.session["kernel"]["id"]
        url = f"{self.hub.server(self.user)}/api/kernels/{kernel}/channels".replace("http://", "ws://")
        # six kernels start at once on two cores: allow them more than tornado's default 20 s to answer
        request = HTTPRequest(url, headers={"Authorization": f"token {self.hub.token}"}, connect_timeout=120,
                              request_timeout=120)
        self.ws = await websocket_connect(request)

    async def run(self, code: str) -> list[dict]:
        """Execute one cell; returns its error outputs (an empty list: it ran clean)."""
        msg_id = uuid.uuid4().hex
        await self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": self.user, "session": self.session_id,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        errors, replied, idle = [], False, False
        while not (replied and idle):
            raw = await asyncio.wait_for(self.ws.read_message(), CELL_TIMEOUT)
            assert raw is not None, f"{self.user}: the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "error":
                errors.append(msg["content"])
            elif kind == "execute_reply":
                replied = True
                if msg["content"]["status"] == "error" and not errors:
                    errors.append(msg["content"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return errors

    async def run_notebook(self) -> list[str]:
        notebook = json.loads((self.hub.home / self.user / self.path).read_text())
        problems = []
        for i, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "code":
                continue
            for error in await self.run("".join(cell["source"])):
                problems.append(f"{self.user} {self.path} cell {i}: {error.get('ename')}: {error.get('evalue')}")
            if problems:
                break
        return problems

    async def close(self) -> None:
        self.ws.close()
        self.hub.user_api(self.user, "DELETE", f"/api/sessions/{self.session['id']}")


def _schemas(user: str) -> list[str]:
    from course import config as cfg
    from course.tools import admin

    found = asyncio.run(admin.namespaces(cfg.resolve_backend(), user))
    return sorted(ns.name for ns in found)


async def _run_everyone(hub: Hub) -> dict[str, Kernel]:
    kernels = {(u, lesson): Kernel(hub, u, f"course/notebooks/{lesson}.ipynb")
               for u in hub.learners for lesson in LESSONS}
    await asyncio.gather(*(k.start() for k in kernels.values()))
    results = await asyncio.gather(*(k.run_notebook() for k in kernels.values()))
    problems = [p for result in results for p in result]
    assert not problems, "\n".join(problems)
    return kernels


def test_a_class_on_one_hub_and_one_database(hub: Hub) -> None:
    _start_servers(hub)
    for user in hub.learners:  # the nbgitpuller link, once per learner
        _git_pull(hub, user)
        assert (hub.home / user / "course" / "notebooks" / "00_start_here.ipynb").exists()

    async def scenario() -> None:
        kernels = await _run_everyone(hub)  # every learner's two notebooks, all at once: no error
        try:
            ann, bob, cy = hub.learners
            marker = f"hub{uuid.uuid4().hex[:6]}"
            add = (
                "from course.schema import User\nimport datetime as _dt\n"
                "async with db.session() as _s:\n"
                f"    _s.add(User(email='{marker}@example.com', username='{marker}', display_name='m',"
                " country='NL', created_at=_dt.datetime(2026, 1, 1)))\n"
                "    await _s.commit()\n"
            )
            count = (
                "from sqlalchemy import func, select\nfrom course.schema import User\n"
                "async with db.session() as _s:\n"
                f"    _n = await _s.scalar(select(func.count()).where(User.username == '{marker}'))\n"
                "assert _n == {expected}, _n\n"
            )
            assert await kernels[ann, LESSONS[0]].run(add) == []
            assert await kernels[ann, LESSONS[0]].run(count.format(expected=1)) == []
            for other in (bob, cy):  # the same lesson, the same server and database: not ann's row
                assert await kernels[other, LESSONS[0]].run(count.format(expected=0)) == []
        finally:
            await asyncio.gather(*(k.close() for k in kernels.values()), return_exceptions=True)

    asyncio.run(scenario())

    # three learners, three sets of schemas: one per lesson each, and only theirs
    schemas = {user: _schemas(user) for user in hub.learners}
    for user, names in schemas.items():
        assert len(names) == len(LESSONS), (user, names)
        assert all(user in name for name in names), (user, names)
    assert len({n for names in schemas.values() for n in names}) == len(LESSONS) * len(hub.learners)

    # a second pull merges the instructor's fix and keeps the learner's own edit
    ann = hub.learners[0]
    mine = hub.home / ann / "course" / "notebooks" / "00_start_here.ipynb"
    notebook = json.loads(mine.read_text())
    notebook["cells"][0]["source"] = ["# my own notes\n", *notebook["cells"][0]["source"]]
    mine.write_text(json.dumps(notebook, indent=1))
    fix = hub.upstream / "docs" / "class-note.md"
    fix.write_text("Pushed during the class.\n")
    subprocess.run(["git", "-C", str(hub.upstream), "add", "docs/class-note.md"], check=True)
    subprocess.run(["git", "-C", str(hub.upstream), "-c", "user.name=Instructor", "-c",
                    "user.email=instructor@example.com", "commit", "-q", "-m", "a fix"], check=True)
    _git_pull(hub, ann)
    assert (hub.home / ann / "course" / "docs" / "class-note.md").exists()
    assert json.loads(mine.read_text())["cells"][0]["source"][0] == "# my own notes\n"

    # the instructor removes one learner, and only that one
    bob = hub.learners[1]
    done = subprocess.run([sys.executable, "-m", "course", "admin", "drop", "--user", bob],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _schemas(bob) == []
    for user in (hub.learners[0], hub.learners[2]):
        assert _schemas(user) == schemas[user]
