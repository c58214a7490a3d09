"""Helpers shared by the benchmarks: run a command, measure wall/CPU time and peak memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


def start_mixpanel_server(*flags: str) -> tuple[subprocess.Popen, str]:
    """The Mixpanel-compatible server (testkit/mixpanel_server.py) with `flags`: (process, URL)."""
    from testkit.services import free_port, wait_for_port  # noqa: PLC0415 - needs ROOT on path

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "testkit.mixpanel_server", "--port",
                                str(port), *flags], cwd=BENCH_DIR.parent,
                               stdout=subprocess.DEVNULL)
    wait_for_port(port, process, "Mixpanel-compatible server")
    return process, f"http://127.0.0.1:{port}"


def server_stats(url: str) -> dict:
    """What the server counted (GET /stats; with --count-ids, unique events too)."""
    with urllib.request.urlopen(f"{url}/stats", timeout=30) as answer:
        return json.loads(answer.read())


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float
    peak_mb: float        # largest total PSS of the whole process tree, sampled every 250 ms
    returncode: int


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return pids


def _pss_kb(pid: int) -> int:
    """Proportional set size: private memory plus a fair share of pages shared with others."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(command: list[str] | str, *, stdin=None, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env: dict | None = None, one_core: bool = False,
            shell: bool = False, cwd: Path | None = None) -> Measured:
    """Run a command to its end, sampling the memory of its whole process tree."""
    if one_core and shutil.which("taskset") and not shell:
        command = ["taskset", "-c", "0", *command]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr,
                               env={**os.environ, **(env or {})}, shell=shell, cwd=cwd)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(process.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(seconds, usage.ru_utime + usage.ru_stime, peak[0] / 1024, process.returncode)
