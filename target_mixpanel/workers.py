"""Parallel delivery across worker processes.

The main process reads Singer lines and hands RECORD lines out, untouched, in numbered chunks;
each worker process decodes, maps, checks, encodes and sends them with its own delivery
pipeline (target_mixpanel.delivery) and reports each chunk done once every record in it is
imported, skipped or dead-lettered. The main process releases a STATE only when every chunk
before it is done, so the at-least-once promise is the same as with one process, and a fatal
error (bad credentials, retry budget spent) stops the run with no state past it.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import msgspec
from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException

from plugin_support import redacted_output
from plugin_support.redaction import Redactor
from plugin_support.retry import AuthError, RetriesExhausted, TlsError
from plugin_support.run_stamp import run_stamp
from plugin_support.state_release import StateGate
from target_mixpanel.pacing import SharedPace

if TYPE_CHECKING:
    from target_mixpanel.settings import MixpanelSettings

logger = logging.getLogger("target-mixpanel")

CHUNK_LINES = 2000
# A worker gets another chunk while it holds fewer records than this that are not accounted
# for. Above a batch plus a chunk (with the records skipped among them), so that a worker's
# open batch can always fill up: its in-flight batches free the rest when they end.
RECORDS_AHEAD_PER_WORKER = 3 * CHUNK_LINES
IDLE_POLL_SECONDS = 0.02
PIPE_SET_SIZE = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20
WORKER_REPORT_SECONDS = 5  # how long a worker that closed its pipe has to say why


class WorkerError(Exception):
    """A worker stopped on an unexpected error; the message is the worker's."""


class BatchFileError(Exception):
    """A batch file named by a BATCH message could not be read."""


class _RecordError(Exception):
    """A record the Singer spec forbids; `kind` names the SDK error the main process raises."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Errors a worker reports by name, which the main process raises again as they were.
EXPECTED_FAILURES: dict[str, type[Exception]] = {failure.__name__: failure for failure in (
    AuthError, RetriesExhausted, TlsError, MissingKeyPropertiesError,
    RecordsWithoutSchemaException, BatchFileError)}


# -- the messages between the main process and a worker ------------------------------------

@dataclass(frozen=True)
class Chunk:
    """Main -> worker: numbered RECORD lines; `runs` raw byte runs of lines follow it."""

    number: int
    runs: int


@dataclass(frozen=True)
class ReceivedChunk:
    """A chunk with its runs of lines, as the worker's receiving thread hands it on."""

    number: int
    lines: list[bytes]


@dataclass(frozen=True)
class BatchFileChunk:
    """Main -> worker: a numbered chunk that is a batch file of one stream, for it to read."""

    number: int
    stream: str
    url: str
    compression: str | None


@dataclass(frozen=True)
class KeyProperties:
    """Main -> worker: a stream's key properties (before any of its records)."""

    stream: str
    keys: list[str]


@dataclass(frozen=True)
class Finish:
    """Main -> worker: deliver what is left and stop."""


@dataclass(frozen=True)
class Done:
    """Worker -> main: every chunk up to `number` is accounted for; the running totals."""

    number: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    """Worker -> main: everything is delivered; the final totals."""

    summary: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """Worker -> main: the worker stopped on an error (`kind` names it); the totals so far."""

    kind: str
    text: str
    summary: dict[str, Any] | None


ToWorker = Chunk | BatchFileChunk | KeyProperties | Finish
Inbound = ReceivedChunk | BatchFileChunk | KeyProperties | Finish
FromWorker = Done | Finished | Failed


def _check_keys(keys: dict[str, tuple[str, ...]], stream: str,
                record: dict[str, Any]) -> None:
    stream_keys = keys.get(stream)
    if stream_keys is None:
        msg = (f"A record for stream {stream!r} arrived before its SCHEMA message. "
               "Check that the tap emits a SCHEMA message first.")
        raise _RecordError("RecordsWithoutSchemaException", msg)
    for key in stream_keys:
        if key not in record:
            msg = (f"A record of stream {stream!r} lacks its key property {key!r}: "
                   f"it has {list(record)[:20]}")
            raise _RecordError("MissingKeyPropertiesError", msg)


def _deliver_chunk(delivery: Any, keys: dict[str, tuple[str, ...]], data: bytes,
                   decode: Callable[[bytes], Any]) -> None:
    """Check and deliver each RECORD line of a chunk."""
    add = delivery.add
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            singer = decode(line)
            stream, record = singer["stream"], singer["record"]
        except (ValueError, KeyError, TypeError) as exc:  # msgspec.DecodeError is a ValueError
            text = line[:200].decode("utf-8", "replace")
            msg = f"Input line is not a valid RECORD message ({exc!r}): {text!r}"
            raise _RecordError("ValueError", msg) from None
        _check_keys(keys, stream, record)
        add(stream, record, line)


def _deliver_batch_file(delivery: Any, keys: dict[str, tuple[str, ...]], stream: str,
                        url: str, compression: str | None,
                        decode: Callable[[bytes], Any]) -> int:
    """Check and deliver each record of a JSON Lines batch file; returns how many."""
    import fsspec  # noqa: PLC0415 - only batch-mode workers need it
    from isal import igzip  # noqa: PLC0415

    count = 0
    try:
        with fsspec.open(url, "rb") as raw:
            source = igzip.IGzipFile(fileobj=raw) if compression == "gzip" else raw
            for line in source:
                if line.strip():
                    record = decode(line)
                    _check_keys(keys, stream, record)
                    delivery.add(stream, record)
                    count += 1
    except (OSError, EOFError, ValueError) as exc:
        msg = (f"The batch file {url} of stream {stream!r} could not be read after "
               f"{count} records: {exc}")
        raise BatchFileError(msg) from None
    return count


def _receive_in_background(inbox: Connection) -> queue.SimpleQueue[Inbound]:
    """Messages from the main process, taken off the pipe by a thread of their own.

    The main process then never waits for a worker to finish a chunk before it can hand over
    the next one.
    """
    inbound: queue.SimpleQueue[Inbound] = queue.SimpleQueue()

    def receive() -> None:
        while True:
            item: Inbound
            try:
                message = inbox.recv()
                if isinstance(message, Chunk):  # its runs of lines follow as raw bytes
                    item = ReceivedChunk(message.number,
                                         [inbox.recv_bytes() for _ in range(message.runs)])
                else:
                    item = message
            except EOFError:  # the main process is gone
                item = Finish()
            inbound.put(item)
            if isinstance(item, Finish):
                return

    threading.Thread(target=receive, name="chunks", daemon=True).start()
    return inbound


def _delete(url: str) -> None:
    """Delete a batch file whose records are all accounted for (a failure only warns)."""
    import fsspec  # noqa: PLC0415

    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)
    except OSError as exc:
        logger.warning("Could not delete the batch file %s: %s", url, exc)


def _serve(delivery: Any, inbound: queue.SimpleQueue[Inbound], from_files: list[int],
           batch_files: dict[int, str]) -> None:
    """Deliver what the main process sends until it says finish."""
    decode = msgspec.json.Decoder().decode
    keys: dict[str, tuple[str, ...]] = {}
    while True:
        try:
            message = inbound.get(timeout=IDLE_POLL_SECONDS)
        except queue.Empty:
            delivery.poll()  # outcomes arrive while no input does
            continue
        if isinstance(message, ReceivedChunk):
            for run in message.lines:
                _deliver_chunk(delivery, keys, run, decode)
            delivery.add_state({"chunk": message.number})
        elif isinstance(message, BatchFileChunk):
            batch_files[message.number] = message.url
            from_files[0] += _deliver_batch_file(delivery, keys, message.stream, message.url,
                                                 message.compression, decode)
            delivery.add_state({"chunk": message.number})
        elif isinstance(message, KeyProperties):
            keys[message.stream] = tuple(message.keys)
        else:  # Finish
            delivery.finish()
            return


def _let_go_of_the_main_process_files(inherited: list[int]) -> None:
    """In a forked worker: drop what it inherited but must not hold open.

    The pipe ends of the other workers and the main process's end of its own (else, with the
    main process gone, no worker would ever see its inbox end), standard input (else a tap
    writing to a dead target would block instead of failing) and standard output (the main
    process's Singer output: Meltano waits for it to close).
    """
    for fd in inherited:
        with suppress(OSError):
            os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)


def _worker_main(settings: MixpanelSettings, name: str, concurrency: int, pace: SharedPace,
                 inbox: Connection, outbox: Connection, inherited: list[int]) -> None:
    """A worker process: chunks in, "done" markers (with running totals) out."""
    _let_go_of_the_main_process_files(inherited)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the main process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s | %(levelname)-8s | %(name)-30s | %(message)s")
    redacted_output.install(Redactor(settings.secrets))  # a spawned worker has no filter yet
    from target_mixpanel.wiring import build_delivery  # noqa: PLC0415 - in the child only

    # Results go out from a thread of their own, so that this process never blocks on a full
    # outbox while the main process blocks on a full inbox.
    results: queue.SimpleQueue[FromWorker | None] = queue.SimpleQueue()

    def forward() -> None:
        while (item := results.get()) is not None:
            outbox.send(item)

    sender = threading.Thread(target=forward, name="results", daemon=True)
    sender.start()
    delivery: Any = None
    from_files = [0]  # records read from batch files (the main process never sees them)
    batch_files: dict[int, str] = {}  # chunk number -> its batch file, to delete when done
    delete_files = settings.delete_batch_files

    def summary() -> dict[str, Any]:
        return {**delivery.summary(), "received_from_files": from_files[0]}

    def report(marker: dict) -> None:
        # a marker stands for every chunk before it too (delivery releases the latest only)
        for number in [n for n in batch_files if n <= marker["chunk"]]:
            url = batch_files.pop(number)
            if delete_files:
                _delete(url)
        results.put(Done(marker["chunk"], summary()))

    try:
        delivery = build_delivery(settings, report, name=name, concurrency=concurrency,
                                  pace=pace)
        _serve(delivery, _receive_in_background(inbox), from_files, batch_files)
        results.put(Finished(summary()))
    except BaseException as exc:
        last = None
        if delivery is not None:
            delivery.abandon()
            last = summary()
        kind = getattr(exc, "kind", type(exc).__name__)
        text = str(exc)
        if kind not in EXPECTED_FAILURES:  # unexpected: keep where it happened
            text = f"{kind}: {text}\n{traceback.format_exc(limit=-4)}"
        results.put(Failed(kind, text, last))
    finally:
        results.put(None)
        sender.join()


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
    spec; the workers need only this module, so both are hidden while a worker starts.
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
        pace = SharedPace.for_processes(context)  # one pace for the project's intake
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
            process = context.Process(target=_worker_main, name=f"mixpanel-worker-{index}",
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
        self._progress_seconds = settings.progress_seconds
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
