"""Run the real service as a child process, as an operator would."""

import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx2 as httpx

__all__ = ["ROOT", "ServerProcess", "free_port"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started from a command line, with its output collected line by line."""

    def __init__(self, command: Sequence[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the API answers (its OpenAPI document), or fail with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("server exited early:\n" + "\n".join(self.lines))
            try:
                if httpx.get(self.base + "/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("server never became ready:\n" + "\n".join(self.lines))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the whole process group and wait for it to end."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self._pump_thread.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
