"""Helpers shared by the benchmarks: run a command, measure wall/CPU time and peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    returncode: int


def measure(command: list[str] | str, *, stdin=None, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env: dict | None = None, one_core: bool = False,
            shell: bool = False) -> Measured:
    """Run a command to its end; peak RSS is the largest of its process tree's members."""
    if one_core and shutil.which("taskset") and not shell:
        command = ["taskset", "-c", "0", *command]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr,
                               env={**os.environ, **(env or {})}, shell=shell)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                    process.returncode)
