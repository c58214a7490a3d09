"""Parallel delivery across worker processes: the main process's side.

The main process reads Singer lines and hands RECORD lines out, untouched, in numbered chunks;
each worker process (worker_process.py) delivers them and reports each chunk done once every
record in it is imported, skipped or dead-lettered. The main process releases a STATE only when
every chunk before it is done, so the at-least-once promise is the same as with one process, and
a fatal error (bad credentials, retry budget spent) stops the run with no state past it.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from plugin_support.run_stamp import run_stamp
from plugin_support.state_release import StateGate
from target_mixpanel.pacing import SharedPace
from target_mixpanel.worker_messages import (
    EXPECTED_FAILURES,
    BatchFileChunk,
    Chunk,
    Done,
    Finish,
    Finished,
    FromWorker,
    KeyProperties,
    ToWorker,
    WorkerError,
)
from target_mixpanel.worker_process import worker_main

if TYPE_CHECKING:
    from target_mixpanel.settings import MixpanelSettings

logger = logging.getLogger("target-mixpanel")

CHUNK_LINES = 2000
# A worker gets another chunk while it holds fewer records than this that are not accounted
# for. Above a batch plus a chunk (with the records skipped among them), so that a worker's
# open batch can always fill up: its in-flight batches free the rest when they end.
RECORDS_AHEAD_PER_WORKER = 3 * CHUNK_LINES
PIPE_SET_SIZE = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20
WORKER_REPORT_SECONDS = 5  # how long a worker that closed its pipe has to say why


def _widen(connection: Connection) -> None:
    """Give a pipe 1 MiB of room (Linux's default limit for users), not 64 KiB.

    Elsewhere, or when refused, the pipe stays as it is.
    """
    with suppress(OSError):
        fcntl.fcntl(connection.fileno(), PIPE_SET_SIZE, PIPE_BYTES)


@contextmanager
def _light_children() -> Iterator[None]:
    """Start spawned workers without re-importing the main module (the CLI and the SDK).

    multiprocessing's spawn re-runs `__main__` in each child when it has a file or a module
    spec; the workers need only worker_process.py, so both are hidden while a worker starts.
    """
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {key: main.__dict__[key] for key in ("__file__", "__spec__")
                             if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            main.__dict__.pop("__spec__", None)


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of several workers' summaries."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for key, value in summary.items():
            if isinstance(value, dict):
                merged[key] = Counter(merged.get(key, {})) + Counter(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = merged.get(key, 0) + value
            elif value is not None:
                merged[key] = value
            else:
                merged.setdefault(key, None)
    for key, value in merged.items():
        if isinstance(value, Counter):
            merged[key] = dict(value.most_common())
    return merged


class WorkerPool:
    """The main process's side: chunks out, outcomes in, STATE messages released in order."""

    def __init__(self, settings: MixpanelSettings, emit_state: Callable[[dict], None]):
        """Start the worker processes (they take the settings, and split max_concurrency)."""
        # fork: the workers start with every module already imported (0.5 s of wall time
        # less than spawn on 1M records). The main process has no other thread yet here.
        methods = multiprocessing.get_all_start_methods()
        forked = "fork" in methods
        context: Any = multiprocessing.get_context("fork" if forked else "spawn")
        processes = settings.worker_processes
        concurrency = max(1, settings.max_concurrency // processes)
        # one pace for the project's intake, held for the pool's life: a spawned worker
        # unpickles its lock after start(), and a lock no one holds is gone by then
        self._pace = pace = SharedPace.for_processes(context)
        stamp = run_stamp()  # the workers' dry-run files are this run's
        self._inboxes: list[Connection] = []
        self._outboxes: list[Connection] = []
        self._processes = []
        for index in range(processes):
            inbox_read, inbox_write = context.Pipe(duplex=False)
            _widen(inbox_write)
            outbox_read, outbox_write = context.Pipe(duplex=False)
            # a forked worker starts with every file the main process has open
            inherited = [c.fileno() for c in (*self._inboxes, *self._outboxes, inbox_write,
                                              outbox_read)] if forked else []
            process = context.Process(target=worker_main, name=f"mixpanel-worker-{index}",
                                      args=(settings, f"{stamp}-w{index}-", concurrency, pace,
                                            inbox_read, outbox_write, inherited),
                                      daemon=True)
            with _light_children():
                process.start()
            inbox_read.close()
            outbox_write.close()
            self._inboxes.append(inbox_write)
            self._outboxes.append(outbox_read)
            self._processes.append(process)
        self._open: list[deque[tuple[int, int]]] = [deque() for _ in range(processes)]
        self._outstanding = [0] * processes  # records handed out, not yet accounted for
        self._summaries: list[dict[str, Any]] = [{} for _ in range(processes)]
        self._finished = [False] * processes
        self._pending: list[bytes] = []  # runs of RECORD lines not yet handed out
        self._pending_lines = 0
        self._chunk = 0
        self._states = StateGate()
        self._emit_state = emit_state
        self._progress_seconds = settings.progress_interval_seconds
        self.received = 0
        self._started = time.monotonic()
        self._last_progress = self._started

    # -- input ---------------------------------------------------------------------------

    def add_line(self, line: bytes) -> None:
        """Take one RECORD line (raw Singer JSON)."""
        self.add_lines([line.rstrip(b"\n")])

    def add_lines(self, lines: list[bytes]) -> None:
        """Take RECORD lines (raw Singer JSON, without their newlines)."""
        if lines:
            self.add_block(b"\n".join(lines), len(lines))

    def add_block(self, block: bytes, count: int) -> None:
        """Take a run of `count` RECORD lines joined by newlines (none at the end)."""
        self.received += count
        self._pending.append(block)
        self._pending_lines += count
        if self._pending_lines >= CHUNK_LINES:
            self._dispatch()

    def set_key_properties(self, stream: str, keys: list[str]) -> None:
        """Tell every worker a stream's key properties (before any of its records)."""
        self._dispatch()
        for index in range(len(self._inboxes)):
            self._post(index, KeyProperties(stream, list(keys)))

    def add_state(self, state: dict) -> None:
        """Hold a STATE until every record before it is accounted for."""
        self._dispatch()
        self._states.hold(self._chunk, state)
        self._poll(timeout=0)

    def add_batch_file(self, stream: str, url: str, compression: str | None) -> None:
        """Take a batch file (JSON Lines records of `stream`); a worker reads it."""
        self._dispatch()
        self._send(lambda number: BatchFileChunk(number, stream, url, compression), CHUNK_LINES)

    def _dispatch(self) -> None:
        if not self._pending:
            return
        runs, count = self._pending, self._pending_lines
        self._pending, self._pending_lines = [], 0
        self._send(lambda number: Chunk(number, len(runs)), count, runs)

    def _send(self, message: Callable[[int], ToWorker], weight: int,
              runs: list[bytes] | None = None) -> None:
        """Send a numbered chunk of `weight` records to the least busy worker, once it has room.

        A chunk's runs of RECORD lines follow its message as raw bytes (no pickling).
        """
        outstanding = self._outstanding
        worker = outstanding.index(min(outstanding))
        while outstanding[worker] >= RECORDS_AHEAD_PER_WORKER:
            self._poll(timeout=self._progress_seconds)
            worker = outstanding.index(min(outstanding))
        self._chunk += 1
        self._post(worker, message(self._chunk), runs or ())
        self._open[worker].append((self._chunk, weight))
        outstanding[worker] += weight
        self._poll(timeout=0)

    def _post(self, index: int, message: ToWorker, runs: tuple | list = ()) -> None:
        """Send a worker a message (and raw runs of lines after it).

        A worker that stopped on an error closed its end: its own report of the error is what
        the run fails with, not the broken pipe.
        """
        inbox = self._inboxes[index]
        try:
            inbox.send(message)
            for run in runs:
                inbox.send_bytes(run)
        except OSError:
            deadline = time.monotonic() + WORKER_REPORT_SECONDS
            while time.monotonic() < deadline:
                self._poll(timeout=0.05)  # raises the worker's error once it is read
            self._check_alive(index, expected=False)
            msg = f"worker process {index} stopped taking records"
            raise WorkerError(msg) from None

    # -- outcomes ------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        ready = wait(self._outboxes, timeout=timeout)
        for connection in ready:
            assert isinstance(connection, Connection)
            index = self._outboxes.index(connection)
            try:
                message = connection.recv()
            except EOFError:
                self._check_alive(index, expected=self._finished[index])
                continue
            self._handle(index, message)
        if not ready:
            for index in range(len(self._processes)):
                self._check_alive(index, expected=self._finished[index])
        self._release_states()
        self._maybe_progress()

    def _handle(self, index: int, message: FromWorker) -> None:
        if isinstance(message, Done):
            open_chunks = self._open[index]
            while open_chunks and open_chunks[0][0] <= message.number:
                self._outstanding[index] -= open_chunks.popleft()[1]
            self._summaries[index] = message.summary
        elif isinstance(message, Finished):
            self._summaries[index] = message.summary
            self._open[index].clear()
            self._outstanding[index] = 0
            self._finished[index] = True
        else:
            if message.summary:
                self._summaries[index] = message.summary
            raise EXPECTED_FAILURES.get(message.kind, WorkerError)(message.text)

    def _check_alive(self, index: int, *, expected: bool) -> None:
        process = self._processes[index]
        if not expected and process.exitcode is not None:
            msg = (f"worker process {index} exited unexpectedly (exit code "
                   f"{process.exitcode}); records it held are not accounted for, and no "
                   "state past them was emitted")
            raise WorkerError(msg)

    def _release_states(self) -> None:
        oldest_open = min((chunks[0][0] for chunks in self._open if chunks), default=None)
        ready = self._states.release_through(None if oldest_open is None else oldest_open - 1)
        if ready is not None:
            self._emit_state(ready)

    # -- end -----------------------------------------------------------------------------

    def finish(self) -> None:
        """Send what is left, let every worker deliver, release the last state."""
        self._dispatch()
        for index in range(len(self._inboxes)):
            self._post(index, Finish())
        while not all(self._finished):
            self._poll(timeout=self._progress_seconds)
        self._release_states()
        for process in self._processes:
            process.join(timeout=30)

    def abandon(self) -> None:
        """Stop every worker at once; nothing more is released.

        Workers ignore SIGTERM (the main process decides when they stop), so they are killed.
        """
        self._states.clear()
        for process in self._processes:
            if process.is_alive():
                process.kill()
        for process in self._processes:
            process.join(timeout=10)

    # -- reporting -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Totals across workers, with what the main process read."""
        merged = merge_summaries([s for s in self._summaries if s])
        merged["received"] = self.received + merged.pop("received_from_files", 0)
        merged["seconds"] = round(time.monotonic() - self._started, 3)
        return merged

    def _maybe_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < self._progress_seconds:
            return
        self._last_progress = now
        s = self.summary()
        elapsed = max(1e-9, now - self._started)
        logger.info("progress: %s events/s, %s received, %s imported, %s skipped, "
                    "%s dead-lettered, %s requests, %s retries, %s 429s",
                    f"{s['received'] / elapsed:,.0f}", f"{s['received']:,}",
                    f"{s.get('imported', 0):,}", f"{sum(s.get('skipped', {}).values()):,}",
                    f"{sum(s.get('dead_lettered', {}).values()):,}",
                    f"{s.get('requests', 0):,}", f"{s.get('retries', 0):,}",
                    f"{s.get('throttled_429', 0):,}")
