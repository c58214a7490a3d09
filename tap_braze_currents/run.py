"""One run of the tap: settings, storage, checkpoints; listing ahead, reading ahead, stopping.

The tap gives a run plain data per selected stream, in the order the SDK syncs them
(`StreamFiles`: name, event type, logger). Each stream then asks the run for its new files,
opened for decoding (`sources`), and marks them read in its ledger (`ledger`) once their
records are printed. The run alone knows what the other streams are:

- listing ahead: remote, the first stream's listing starts every other stream's listing in the
  background (58 types x 25 hours are 1,450 round trips), so later streams find theirs done;
- reading ahead: a stream whose files leave room under `prefetch_files` and
  `prefetch_megabytes` starts reading the next stream's first files (an hourly run has about 12
  files a stream, and without this every stream began with a round trip of its own);
- stopping: after a stop signal (`request_stop`) each stream ends after the file being read,
  and listings and reads ahead are cancelled.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from tap_braze_currents.checkpoints import Checkpoints
from tap_braze_currents.file_ledger import FileLedger
from tap_braze_currents.prefetch import fetch_ahead
from tap_braze_currents.settings import CurrentsSettings
from tap_braze_currents.storage import LISTING_THREADS, CurrentsFile, CurrentsStorage

if TYPE_CHECKING:
    from singer_sdk.helpers.types import TapState

# Streams whose remote listings run at once, ahead of their turn (each lists its hours in
# parallel too: storage.LISTING_THREADS).
LISTINGS_AHEAD = 4

Fetched = TypeVar("Fetched")


@dataclass(frozen=True)
class StreamFiles:
    """What the run needs of one stream: its name, its Currents event type, its logger."""

    name: str
    event_type: str
    logger: logging.Logger


@dataclass
class ReadAhead:
    """A stream's new files, listed while the stream before it ran, and reads of the first ones."""

    files: list[CurrentsFile]
    reads: dict[str, Future[bytes]]  # by path


class CurrentsRun:
    """The files of the selected streams, listed and read ahead in their order, until a stop."""

    def __init__(self, settings: Callable[[], CurrentsSettings], tap_state: TapState,
                 logger: logging.Logger, selected: Callable[[], list[StreamFiles]]):
        """A run over `tap_state`, whose streams' bookmarks it updates in place.

        `settings()` is called on first use (discovery may run on a config that was not
        validated: `--discover`); `selected()`, the selected streams in the order they are
        synced, once the first of them starts (`--test` selects every stream just before).
        """
        self._read_settings = settings
        self._state = tap_state
        self.logger = logger
        self._selected = selected
        self.stop_requested = False  # set by SIGTERM/SIGINT: stop after the file being read
        self._ledgers: dict[str, FileLedger] = {}
        self._listings: dict[str, Future[list[CurrentsFile]]] | None = None
        self._read_ahead: dict[str, ReadAhead] = {}
        self._storage_checked = False

    @cached_property
    def settings(self) -> CurrentsSettings:
        """The settings, read once."""
        return self._read_settings()

    @cached_property
    def latest_hour(self) -> str:
        """The newest `date=` hour this run reads: now plus future_hours_tolerance."""
        return self.settings.latest_hour()

    @cached_property
    def storage(self) -> CurrentsStorage:
        """The export named by storage_url, with connections for every request kept in flight."""
        settings = self.settings
        in_flight = settings.prefetch_files + LISTINGS_AHEAD * LISTING_THREADS
        return CurrentsStorage(settings.storage_url, settings.storage_options,
                               connections=in_flight)

    @cached_property
    def checkpoints(self) -> Checkpoints:
        """When STATE is printed (every stream checkpoints the one tap state)."""
        return Checkpoints(self._state, self.settings.state_interval_seconds)

    @cached_property
    def _streams(self) -> list[StreamFiles]:
        """The selected streams, in the order they are synced (and listed and read ahead)."""
        return self._selected()

    def is_last(self, stream: StreamFiles) -> bool:
        """Whether `stream` is the last one synced (or none is selected)."""
        return not self._streams or self._streams[-1].name == stream.name

    def ledger(self, stream: StreamFiles) -> FileLedger:
        """The files `stream` has read (its bookmark in the tap state), made on first use."""
        ledger = self._ledgers.get(stream.name)
        if ledger is None:
            bookmarks = self._state.setdefault("bookmarks", {})
            ledger = FileLedger(bookmarks.setdefault(stream.name, {}),
                                self.settings.lookback_hours)
            self._ledgers[stream.name] = ledger
        return ledger

    # -- stopping ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """A stop signal: every stream stops after the file being read."""
        self.stop_requested = True

    def stop_reading(self, stream: StreamFiles, file: CurrentsFile) -> None:
        """`stream` stopped after `file`: listings and reads ahead are not needed any more."""
        stream.logger.info("%s: stopped on request after %s", stream.name,
                           self.storage.url_of(file.path))
        for future in (self._listings or {}).values():
            future.cancel()
        for read_ahead in self._read_ahead.values():
            for read in read_ahead.reads.values():
                read.cancel()

    def discard_output(self) -> None:
        """After a stop signal, the reader of our output is gone: write to nowhere from now."""
        self.logger.info("The target stopped reading after the stop signal; the rest is left "
                         "to the next run")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

    # -- listing -------------------------------------------------------------------------

    def _check_storage(self) -> None:
        """Fail early, naming the setting, when the export cannot be listed (checked once)."""
        if not self._storage_checked:
            self.storage.check()
            self._storage_checked = True

    def _listing_range(self, stream: StreamFiles) -> tuple[str | None, str | None, str]:
        """The `date=` hours a stream lists: (first, end, latest); end excluded, None open.

        Hours after `latest` (now plus future_hours_tolerance) are reported and left for later.
        """
        first = self.ledger(stream).window_start(self.settings.start_hour)
        return first, self.settings.end_hour, self.latest_hour

    def _listing(self, stream: StreamFiles) -> list[CurrentsFile]:
        """A stream's files in its hours; remote, the first call lists every stream's ahead."""
        storage = self.storage
        if storage.is_local:
            return storage.files(stream.event_type, *self._listing_range(stream))
        if self._listings is None:
            _ = storage.event_type_folders  # walked once, before the threads need it
            self._listings = {}
            pool = ThreadPoolExecutor(LISTINGS_AHEAD, thread_name_prefix="list-ahead")
            for other in self._streams:
                if other.name != stream.name:
                    self._listings[other.name] = pool.submit(
                        storage.files, other.event_type, *self._listing_range(other))
            pool.shutdown(wait=False)
        future = self._listings.pop(stream.name, None)
        if future is not None:
            return future.result()
        return storage.files(stream.event_type, *self._listing_range(stream))

    def _listing_done(self, stream: StreamFiles) -> bool:
        """Whether a stream's background listing has finished (`_listing` would not wait)."""
        future = (self._listings or {}).get(stream.name)
        return future is not None and future.done()

    def _new_files(self, stream: StreamFiles) -> list[CurrentsFile]:
        ledger = self.ledger(stream)
        first = ledger.window_start(self.settings.start_hour)
        listed = self._listing(stream)
        new = [f for f in listed if not ledger.is_read(f)]
        stream.logger.info("%s: %d files listed from hour %s on, %d not read yet",
                           stream.name, len(listed), first or "(first)", len(new))
        return new

    def _stream_after(self, stream: StreamFiles) -> StreamFiles | None:
        names = [s.name for s in self._streams]
        index = names.index(stream.name) if stream.name in names else len(names)
        return self._streams[index + 1] if index + 1 < len(names) else None

    # -- reading -------------------------------------------------------------------------

    def sources(self, stream: StreamFiles) -> Iterator[tuple[CurrentsFile, BinaryIO]]:
        """Each new file of `stream` opened for decoding, in hour order (vanished ones skipped).

        Remote files are fetched ahead in the background, the next stream's first ones too.
        """
        self._check_storage()
        ahead = self._read_ahead.pop(stream.name, None)
        if ahead is None:
            ahead = ReadAhead(self._new_files(stream), {})
        storage = self.storage
        if storage.is_local:
            for file in ahead.files:
                handle = self._guard(stream, file, partial(storage.open, file.path))
                if handle is not None:
                    yield file, handle
            return
        in_flight = self.settings.prefetch_files
        max_bytes = self.settings.prefetch_bytes
        started = ahead.reads
        with storage.reader(threads=in_flight) as start:

            def read(file: CurrentsFile) -> Future[bytes]:
                begun = started.pop(file.path, None)
                return begun if begun is not None else start(file.path)

            if storage.reads_on_event_loop:
                self._read_next_stream_ahead(stream, start, ahead.files)
            prefetched = fetch_ahead(ahead.files, read, lambda f: f.size, max_items=in_flight,
                                     max_bytes=max_bytes)
            for file, future in prefetched:
                data = self._guard(stream, file, future.result)
                if data is not None:
                    yield file, io.BytesIO(data)

    def _read_next_stream_ahead(self, stream: StreamFiles,
                                start: Callable[[str], Future[bytes]],
                                files: list[CurrentsFile]) -> None:
        """Start reading the next stream's first files in the room `stream`'s files leave."""
        room = self.settings.prefetch_files - len(files)
        if room <= 0:
            return
        room_bytes = self.settings.prefetch_bytes - sum(file.size for file in files)
        following = self._stream_after(stream)
        if (room_bytes <= 0 or following is None or self.stop_requested
                or not self._listing_done(following)):
            return
        upcoming = self._new_files(following)
        reads: dict[str, Future[bytes]] = {}
        for file in upcoming[:room]:
            if file.size > room_bytes:
                break
            reads[file.path] = start(file.path)
            room_bytes -= file.size
        self._read_ahead[following.name] = ReadAhead(upcoming, reads)

    def _guard(self, stream: StreamFiles, file: CurrentsFile,
               fetch: Callable[[], Fetched]) -> Fetched | None:
        """`fetch()`, or None when the file vanished; other errors name the file."""
        try:
            return fetch()
        except FileNotFoundError:
            stream.logger.warning("%s: %s vanished after listing; it will be read when it is "
                                  "back", stream.name, self.storage.url_of(file.path))
            return None
        except Exception as exc:
            storage = self.storage
            msg = (f"{stream.name}: could not read {storage.url_of(file.path)}: "
                   f"{storage.describe_error(exc)}")
            raise OSError(msg) from None
