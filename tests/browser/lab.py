"""A throwaway Jupyter server for the browser test (JupyterLab, or the classic Notebook 6.5 that
ships with Colab's ipywidgets 7.7.1 frontend): 127.0.0.1, a free port, no token, all state in a temp dir.

Everything it writes (runtime files, settings, workspaces) lives under `home`, so
a run never reads or changes the user's Jupyter setup, and `stop()` always ends the server
and the kernels it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15

# Quiet lab: no news toast, no update check, nothing fetched from the internet.
_NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`jupyter lab` serving `root_dir`; use as a context manager, or call start() / stop()."""

    def __init__(self, root_dir: Path, home: Path, env: dict | None = None):
        self.root_dir, self.home = Path(root_dir), Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.log_path = self.home / "jupyter-lab.log"
        self.proc: subprocess.Popen | None = None

    def _prepare_home(self) -> dict:
        settings = self.home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps(_NOTIFICATION_SETTINGS))
        for sub in ("config", "data", "runtime", "workspaces", "ipython"):
            (self.home / sub).mkdir(exist_ok=True)
        return dict(self.env, JUPYTER_CONFIG_DIR=str(self.home / "config"), JUPYTER_DATA_DIR=str(self.home / "data"),
                    JUPYTER_RUNTIME_DIR=str(self.home / "runtime"), IPYTHONDIR=str(self.home / "ipython"),
                    JUPYTER_PLATFORM_DIRS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
                "--ServerApp.disable_check_xsrf=True", "--no-browser", f"--ServerApp.root_dir={self.root_dir}",
                f"--LabApp.user_settings_dir={self.home / 'settings'}",
                f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
                "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--ServerApp.terminals_enabled=False"]

    def start(self) -> "LabServer":
        env = self._prepare_home()
        root = ["--allow-root"] if os.geteuid() == 0 else []  # CI containers run as root; jupyter needs the flag
        for _ in range(3):  # another process may take the free port between free_port() and the bind
            self._log = open(self.log_path, "wb")
            cmd = self.command() + root
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.root_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return self
            self._log.close()
            if "already in use" not in self.log_tail():
                break
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"{cmd[2]} exited with code {self.proc.returncode}:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        """True once this process answers on its port; False if it exited; TimeoutError after START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._get("/api/status") is not None and f":{self.port}/" in self.log_tail(20_000):
                return True
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"jupyter did not answer on {self.url} within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def _get(self, path: str):
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return json.loads(response.read() or b"null") if response.status == 200 else None
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def _own_kernels(self) -> list[int]:
        """Process ids of kernels this server started: their connection file lies in our runtime dir."""
        marker = str(self.home / "runtime").encode()
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes()
            except OSError:
                continue
            if b"ipykernel_launcher" in args and marker in args:
                pids.append(int(cmdline.parent.name))
        return pids

    def stop(self) -> None:
        """Ask the server to shut down its kernels and exit; escalate to SIGTERM, then SIGKILL, if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                request = urllib.request.Request(self.url + "/api/shutdown", method="POST", data=b"")
                urllib.request.urlopen(request, timeout=STOP_TIMEOUT_S).close()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.proc.poll() is None:
                    try:
                        os.killpg(self.proc.pid, sig)  # the server's own session: it and nothing else
                    except ProcessLookupError:
                        pass
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for pid in self._own_kernels():  # normally none left: the server shuts its kernels down first
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ClassicServer(LabServer):
    """The classic `jupyter notebook` (6.5) of another venv, e.g. the Colab-pinned one: its widgetsnbextension
    is the ipywidgets 7.7.1 frontend, which JupyterLab 4's widget manager (ipywidgets 8 only) cannot stand in for."""

    def __init__(self, root_dir: Path, home: Path, python: str, env: dict | None = None):
        super().__init__(root_dir, home, env)
        self.python = python

    def command(self) -> list[str]:
        return [self.python, "-m", "notebook", "--NotebookApp.ip=127.0.0.1", f"--NotebookApp.port={self.port}",
                "--NotebookApp.port_retries=0", "--NotebookApp.token=", "--NotebookApp.password=",
                "--NotebookApp.disable_check_xsrf=True", "--no-browser", f"--NotebookApp.notebook_dir={self.root_dir}",
                "--NotebookApp.terminals_enabled=False"]
