"""Maillage's own processes, started as an operator would (`maillage serve`, `maillage worker`), for tests
of what only separate processes show: crashes, shared limits, several workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from api.settings import REPO_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, every: float = 0.1) -> None:
    """Poll until `condition()` is truthy; a generous timeout, as the other tests may load the machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Process:
    """A `maillage` subcommand in a process of its own, its output in a log file."""

    def __init__(self, args: list[str], *, var: Path, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self.env = {**os.environ, "MAILLAGE_VAR_DIR": str(var), "MAILLAGE_LOG_JSON": "true", **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "api.cli", *self.args],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as systemd would; a SIGKILL if it does not stop within 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Server(Process):
    """`maillage serve` on a free port, its metrics off unless asked for."""

    def __init__(self, url: str, var: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        super().__init__(
            ["serve", "--workers", str(workers)],
            var=var,
            env={
                "DATABASE_URL": url,
                "PORT": str(self.port),
                "MAILLAGE_METRICS_PORT": "0",
                "MAILLAGE_GEOCODING_URL": "",
                **(env or {}),
            },
            log=var / f"server-{self.port}.log",
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        super().start()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited: {self.output()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the API did not start")


class Worker(Process):
    """`maillage worker`, with the timings of a test: a tick every second, a heartbeat twice a second,
    taken for dead after two seconds of silence."""

    def __init__(self, app_url: str, owner_url: str, var: Path, *, name: str, env: dict[str, str] | None = None):
        super().__init__(
            ["worker", "--concurrency", "2", "--name", name],
            var=var,
            env={
                "DATABASE_URL": app_url,
                "MAILLAGE_OWNER_DATABASE_URL": owner_url,
                "MAILLAGE_TICK_SECONDS": "1",
                "MAILLAGE_WORKER_HEARTBEAT_SECONDS": "0.5",
                "MAILLAGE_WORKER_STALLED_AFTER_SECONDS": "2",
                **(env or {}),
            },
            log=var / f"worker-{name}.log",
        )
