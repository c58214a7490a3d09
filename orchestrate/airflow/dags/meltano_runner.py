"""Run one Meltano command so that a stop loses nothing: the tap stops first, the rest later.

    python meltano_runner.py [--grace-seconds 300] [--lock FILE] -- meltano run JOB

The Airflow task starts this runner in a session of its own, and the runner starts Meltano in
another, so the signals Airflow sends to the task's process group (a timeout, "mark failed", a
worker shutting down) never reach Meltano or the target. A stop reaches the runner instead
(SIGTERM or SIGINT, or its parent task process dying) and it:

1. sends SIGTERM to the tap only (Meltano's descendants whose program is `tap-*`): the tap
   ends after the file it is reading and prints its STATE;
2. waits up to --grace-seconds for the target to deliver what it holds and emit its state,
   and for Meltano to save it and exit;
3. then sends SIGTERM to the target (`target-*`): it reads on to the next STATE, delivers up to
   there, emits it and exits (BATCH mode: the tap is long done, the target has the backlog);
   and waits up to TARGET_STOP_SECONDS more;
4. only then sends SIGTERM, and 10 s later SIGKILL, to what is left of Meltano's process group.

With --lock, a run waits for the end of an earlier one holding the same lock file (a retry
right after a stop waits until the stopped run has saved its state).

Meltano's output is relayed to this process's stdout (the task log); once nobody reads it any
longer it is dropped, so Meltano never blocks or fails on a closed pipe. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TAP, TARGET = "tap-*", "target-*"  # program names, as Singer plugins are named
TARGET_STOP_SECONDS = 120
KILL_AFTER_TERM_SECONDS = 10
POLL_SECONDS = 0.2


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> Iterator[int]:
    """Every process below `pid` (Linux /proc)."""
    children = _children_by_parent()
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        yield child
        stack += children.get(child, [])


def program_names(pid: int) -> list[str]:
    """The base names of a process's first two arguments.

    The program, or the interpreter and the script it runs (venv/bin/tap-x is a script).
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    return [os.path.basename(a.decode(errors="replace")) for a in argv[:2] if a]


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"meltano_runner: {message}", flush=True)


def _relay(source: IO[bytes]) -> None:
    """Meltano's output to our stdout, until nobody reads it (then to nowhere)."""
    out: IO[bytes] | None = sys.stdout.buffer
    for line in iter(source.readline, b""):
        if out is None:
            continue
        try:
            out.write(line)
            out.flush()
        except (OSError, ValueError):
            out = None


class Runner:
    """One Meltano process and the stop sequence around it."""

    def __init__(self, command: list[str], grace_seconds: float, lock: Path | None = None):
        self.command = command
        self.lock = lock
        self.grace_seconds = grace_seconds
        self.stop_requested = threading.Event()
        self.parent = os.getppid()

    def run(self) -> int:
        """Meltano's exit code (after a stop too: the caller knows it asked for one)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_requested.set())
        if self.lock is not None:
            self.lock.parent.mkdir(parents=True, exist_ok=True)
            held = self.lock.open("a")  # released when this process ends
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _say(f"waiting for the earlier run holding {self.lock} to end")
                fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        relay = threading.Thread(target=_relay, args=(process.stdout,), daemon=True)
        relay.start()
        while process.poll() is None:
            if os.getppid() != self.parent:  # the task process is gone: a stop too
                self.stop_requested.set()
            if self.stop_requested.wait(POLL_SECONDS):
                self._stop(process)
                break
        code = process.wait()
        relay.join(timeout=5)
        return code

    def _stop(self, process: subprocess.Popen) -> None:
        _say(f"stop requested: SIGTERM to the tap only; waiting up to {self.grace_seconds:g} s "
             "for the target to deliver and Meltano to save the state")
        for pattern, seconds in ((TAP, self.grace_seconds), (TARGET, TARGET_STOP_SECONDS)):
            if self._signal_until_exit(process, pattern, seconds):
                _say(f"meltano exited with {process.returncode} after the stop")
                return
        for signum, wait in ((signal.SIGTERM, KILL_AFTER_TERM_SECONDS), (signal.SIGKILL, 30)):
            _say(f"still running: {signal.Signals(signum).name} to meltano's process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
                return

    @staticmethod
    def _signal_until_exit(process: subprocess.Popen, pattern: str, seconds: float) -> bool:
        """Whether Meltano exited within `seconds` of SIGTERM to its `pattern` descendants.

        Descendants started meanwhile get it too.
        """
        deadline = time.monotonic() + seconds
        signalled: set[int] = set()
        while process.poll() is None and time.monotonic() < deadline:
            for pid in descendants(process.pid):
                names = program_names(pid)
                if pid not in signalled and any(fnmatch.fnmatch(n, pattern) for n in names):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                        signalled.add(pid)
                        _say(f"SIGTERM to {' '.join(names)} (pid {pid})")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        return process.poll() is not None


def main(argv: list[str] | None = None) -> int:
    """Command line: the options, then `--` and the Meltano command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--grace-seconds", type=float, default=300.0)
    parser.add_argument("--lock", type=Path, help="file locked while the run lasts")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no Meltano command given after --")
    return Runner(command, args.grace_seconds, args.lock).run()


if __name__ == "__main__":
    sys.exit(main())
