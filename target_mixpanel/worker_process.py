"""A worker process: chunks of RECORD lines (or batch files) in, "done" markers out.

Each worker decodes, maps, checks, encodes and sends its chunks with its own delivery pipeline
(target_mixpanel.delivery) and reports each chunk done once every record in it is imported,
skipped or dead-lettered (worker_pool.py releases STATE from those reports).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import msgspec

from plugin_support import redacted_output
from plugin_support.redaction import Redactor
from target_mixpanel.pacing import SharedPace
from target_mixpanel.worker_messages import (
    EXPECTED_FAILURES,
    BatchFileChunk,
    BatchFileError,
    Chunk,
    Done,
    Failed,
    Finish,
    Finished,
    FromWorker,
    Inbound,
    KeyProperties,
    ReceivedChunk,
)

if TYPE_CHECKING:
    from target_mixpanel.settings import MixpanelSettings

logger = logging.getLogger("target-mixpanel")

IDLE_POLL_SECONDS = 0.02


class RecordError(Exception):
    """A record the Singer spec forbids; `kind` names the SDK error the main process raises."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _check_keys(keys: dict[str, tuple[str, ...]], stream: str,
                record: dict[str, Any]) -> None:
    stream_keys = keys.get(stream)
    if stream_keys is None:
        msg = (f"A record for stream {stream!r} arrived before its SCHEMA message. "
               "Check that the tap emits a SCHEMA message first.")
        raise RecordError("RecordsWithoutSchemaException", msg)
    for key in stream_keys:
        if key not in record:
            msg = (f"A record of stream {stream!r} lacks its key property {key!r}: "
                   f"it has {list(record)[:20]}")
            raise RecordError("MissingKeyPropertiesError", msg)


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
            raise RecordError("ValueError", msg) from None
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


def worker_main(settings: MixpanelSettings, name: str, concurrency: int, pace: SharedPace,
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
