"""Private servers for fault tests: a process of its own on a loopback port, stopped by pid.

Fault tests stop and start these instead of the machine's shared services,
so a failure never leaves a shared service down.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


class PrivateServer:
    def __init__(self, argv: list[str], ready: Callable[[], bool], name: str):
        self.argv, self.ready, self.name = argv, ready, name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the private {self.name} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
