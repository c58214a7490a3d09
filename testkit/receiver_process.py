"""mixpanel-cohort-receiver as its own process on a free port, for tests, trials and the demo."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from testkit.services import free_port

USER, PASSWORD = "mixpanel", "receiver-pass-5e0c2b"


class ReceiverProcess:
    """The receiver storing into `spool`; `wrap` runs it inside another command (unshare)."""

    def __init__(self, spool: Path, log: Path, *extra: str, wrap: list[str] | None = None):
        self.spool, self.log = spool, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mixpanel_cohort_receiver.app", "--port",
                   str(self.port), "--spool-url", str(spool), "--username", USER,
                   "--password", PASSWORD, *extra]
        with log.open("ab") as handle:
            self.process = subprocess.Popen([*(wrap or []), *command], stdout=handle,
                                            stderr=handle)
        self.wait_until_serving()

    def wait_until_serving(self) -> None:
        """Return once /health answers; fail with the log's end if the process ended."""
        wait_until_serving(self.url, self.process, self.log)

    def health(self) -> dict:
        """The counts /health answers."""
        return requests.get(f"{self.url}/health", timeout=5).json()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the receiver (SIGTERM: a clean stop) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    """Return once `url`/health answers; fail with the log's end if `process` ended."""
    deadline = time.monotonic() + 120
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            return
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                msg = f"the receiver did not start: {log.read_text()[-2000:]}"
                raise RuntimeError(msg) from None
            time.sleep(0.05)
