"""Helpers for the browser test (tests/test_e2e.py): a private JupyterLab server and its cleanup.

Everything the server writes goes under one temporary folder: the notebooks it serves (a
copy, so autosave never touches the repository), JupyterLab's user settings (notebook
windowing off, no news or update checks), the runtime folder (kernel connection files),
the workspaces and the lessons' SQLite files. Stopping is layered so nothing outlives a
failed test: shut the kernels down through the REST API, SIGTERM the server's process
group (the server shuts down what is left), SIGKILL the group if it lingers, and finally
kill any kernel process whose command line still names this run's runtime folder
(kernels run in sessions of their own, outside the server's process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("COURSE_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: JupyterLab settings for the run, one file per plugin in the user settings folder.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # attach every cell to the page, not only those in view: the checks look at all outputs
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no toast asking about news, no request to the internet
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

T = TypeVar("T")

_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str = "") -> T:
    """Call ``probe`` until it returns something other than None/False; fail after ``timeout`` s.

    The only retrying the browser test does: around waiting, never around an assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or probe}")
        time.sleep(interval)


class Budget:
    """One time budget for the whole browser test: every wait takes at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def left(self, cap: float) -> float:
        """``cap`` seconds, or what is left of the budget if that is less (TimeoutError when spent)."""
        self.start()
        assert self.started is not None
        remaining = self.seconds - (time.monotonic() - self.started)
        if remaining <= 0:
            raise TimeoutError(f"the browser test used up its budget of {self.seconds:.0f} s")
        return min(cap, remaining)


@dataclass
class LabServer:
    """A JupyterLab server started by :meth:`start`; :meth:`stop` ends it and its kernels."""

    base: Path
    notebooks: list[str]
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root_dir(self) -> Path:
        return self.base / "root"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "runtime"

    def lab_url(self, notebook: str, workspace: str) -> str:
        """JupyterLab with ``notebook`` open, in a workspace of its own (nothing restored from another page)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    # -- REST ------------------------------------------------------------------
    def api(self, path: str, method: str = "GET", timeout: float = 10) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with _LOCAL.open(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {self.process.returncode}; log:\n{self.log()}")
        try:
            self.api("/api/status", timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------
    def prepare(self, source: Path) -> None:
        """Copy the notebooks, write the settings, make the private folders."""
        (self.root_dir / source.name).mkdir(parents=True)
        for name in self.notebooks:
            shutil.copy2(source / name, self.root_dir / source.name / name)
        settings = self.base / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            target = settings / f"{plugin}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        for name in ("runtime", "workspaces", "data", "config"):
            (self.base / name).mkdir()

    def start(self, *, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_CONFIG_DIR": str(self.base / "config"),  # no jupyter_server_config from home
            "COURSE_DATA_DIR": str(self.base / "data"),  # the lessons' SQLite files
            "COURSE_NAMESPACE": f"e2e{secrets.token_hex(5)}",
        }
        env.pop("COURSE_DATABASE_URL", None)  # the browser test runs on SQLite
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={self.base / 'user-settings'}",
            f"--LabApp.workspaces_dir={self.base / 'workspaces'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        self.log_path = self.base / "jupyterlab.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._answers, timeout=timeout, what="JupyterLab to answer /api/status")

    def kernels_quiet(self, *, quiet: float = 0.6, timeout: float = 20) -> None:
        """Wait until every kernel is idle and has sent nothing for ``quiet`` seconds.

        A widget's state goes to the kernel in its own message, and ipywidgets holds a
        change back while an earlier one is unanswered, but sends a button click at once:
        so the sliders' last values may reach the kernel after a click made right away.
        """

        def snapshot() -> list[tuple[str, str, str]]:
            return sorted((k["id"], k["execution_state"], k["last_activity"]) for k in self.api("/api/kernels"))

        state = {"seen": snapshot(), "since": time.monotonic()}

        def settled() -> bool:
            now = snapshot()
            if now != state["seen"]:
                state["seen"], state["since"] = now, time.monotonic()
                return False
            idle = all(execution == "idle" for _, execution, _ in now)
            return idle and time.monotonic() - state["since"] >= quiet

        wait_for(settled, timeout=timeout, interval=0.1, what=f"the kernels to be quiet for {quiet} s")

    def shutdown_kernels(self) -> None:
        """Shut down every kernel through the REST API (best effort: the server may be gone)."""
        try:
            for kernel in self.api("/api/kernels", timeout=5):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=15)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.shutdown_kernels()
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        _signal_group(self.process.pid, signal.SIGKILL)  # anything the server left in its group
        for pid in processes_mentioning(str(self.runtime_dir)):
            _kill(pid)

    def kernel_processes(self) -> list[int]:
        return processes_mentioning(str(self.runtime_dir))


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def processes_mentioning(marker: str) -> list[int]:
    """Pids of processes whose command line contains ``marker`` (Linux /proc; [] elsewhere)."""
    found = []
    for entry in _proc_entries():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _proc_entries() -> Iterable[Path]:
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    return [p for p in proc.iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
