"""tap-braze-currents: the Singer tap, its settings and its streams."""

from __future__ import annotations

import atexit
import copy
import logging
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter

from plugin_support.clean_exit import ignore_stop_signal_while_exiting, wait_until_stdout_is_read
from plugin_support.complete_stdout import complete_stdout_writes
from plugin_support.config_errors import SecretSafeConfig
from plugin_support.distribution import DISTRIBUTION
from tap_braze_currents.avro_decoding import AvroFile
from tap_braze_currents.checkpoints import Checkpoints
from tap_braze_currents.event_types import catalog, catalog_avro_schema
from tap_braze_currents.storage import (
    LISTING_THREADS,
    CurrentsFile,
    CurrentsStorage,
    StorageSettingError,
)
from tap_braze_currents.streams import CurrentsStream, ReadAhead

logger = logging.getLogger(__name__)

# Default of state_interval_seconds: STATE under 1% of the bytes printed on a production-shaped
# export (docs/tap-performance.md), and little to read again after a kill.
STATE_INTERVAL_SECONDS = 5.0
# Streams whose remote listings run at once, ahead of their turn (each lists its hours in
# parallel too: storage.LISTING_THREADS).
LISTINGS_AHEAD = 4


class TapBrazeCurrents(SecretSafeConfig, Tap):
    """Braze Currents Avro exports as Singer streams, one per event type."""

    name = "tap-braze-currents"
    package_name = DISTRIBUTION  # for --version
    message_writer_class = MsgSpecWriter

    config_jsonschema = th.PropertiesList(
        th.Property("storage_url", th.StringType, required=True,
                    description="Where the Currents export lives: a local path, file://, "
                    "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or abfs://..."),
        th.Property("storage_options", th.ObjectType(additional_properties=True), secret=True,
                    description="Options for the fsspec filesystem (endpoint_url, key, secret, "
                    "anon, connection_string, account_name, token, ...)."),
        th.Property("start_date", th.DateTimeType,
                    description="On a first run, date= hours before this are not read."),
        th.Property("end_date", th.DateTimeType,
                    description="Optional: date= hours at or after this are not read."),
        th.Property("lookback_hours", th.IntegerType, default=24,
                    description="How many hours behind the newest hour already read are listed "
                    "again for late files."),
        th.Property("event_types", th.ArrayType(th.StringType),
                    description="Optional list of Currents event types (dotted Braze names) to "
                    "read; default: all."),
        th.Property("on_corrupt_file", th.StringType, default="skip",
                    allowed_values=["skip", "fail"],
                    description="skip: keep the records before the damage, warn and go on; "
                    "fail: stop with an error naming the file."),
        th.Property("prefetch_files", th.IntegerType, default=32,
                    description="Remote files fetched ahead of decoding, at once (small files "
                    "are a round trip each; prefetch_megabytes bounds the bytes). The S3 "
                    "client's connection pool grows to match unless storage_options."
                    "config_kwargs.max_pool_connections is set."),
        th.Property("prefetch_megabytes", th.IntegerType, default=64,
                    description="Upper bound on the bytes of files fetched ahead."),
        th.Property("state_interval_seconds", th.NumberType, default=STATE_INTERVAL_SECONDS,
                    description="At most how often a STATE is printed while reading (plus one "
                    "at the end of the run and on a stop signal). A killed run reads again "
                    "what it read since its last STATE."),
    ).to_dict()

    _storage_checked = False
    stop_requested = False  # set by SIGTERM/SIGINT: stop after the file being read

    def __init__(self, *args: Any, **kwargs: Any):
        """The SDK's tap, which does not echo the input state as a run's first STATE."""
        super().__init__(*args, **kwargs)
        # The SDK's sync_all starts by printing the state it was given, unless its writer has
        # printed that state already: the whole lookback window again, which the caller has.
        self._state_writer._last_emitted_state = copy.deepcopy(self.state)

    def _handle_termination(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: finish the file being read, emit its state, end cleanly (exit 0).

        A second signal stops at once; the next run reads that file again.
        """
        if self.stop_requested:
            raise SystemExit(128 + signum)
        self.stop_requested = True
        atexit.register(wait_until_stdout_is_read)  # `meltano run` relays what was written
        self.logger.info("Received signal %d: stopping after the file being read; the next "
                         "run goes on from there", signum)

    def _setup_signal_handlers(self) -> None:
        """The SDK's (ours: `_handle_termination`), none once exiting; whole writes to stdout."""
        super()._setup_signal_handlers()
        ignore_stop_signal_while_exiting()
        complete_stdout_writes()  # a signal must not cut a write to stdout short

    def discard_output(self) -> None:
        """After a stop signal, the reader of our output is gone: write to nowhere from now."""
        self.logger.info("The target stopped reading after the stop signal; the rest is left "
                         "to the next run")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

    @cached_property
    def checkpoints(self) -> Checkpoints:
        """When STATE is printed (every stream checkpoints the one tap state)."""
        return Checkpoints(self.state, float(self.config["state_interval_seconds"]))

    @cached_property
    def storage(self) -> CurrentsStorage:
        """The export named by storage_url, with connections for every request kept in flight."""
        in_flight = int(self.config["prefetch_files"]) + LISTINGS_AHEAD * LISTING_THREADS
        return CurrentsStorage(self.config["storage_url"], self.config.get("storage_options"),
                               connections=in_flight)

    def _wanted_types(self) -> list[str] | None:
        wanted = self.config.get("event_types")
        return list(wanted) if wanted else None

    def _types_in_storage(self) -> dict[str, dict[str, Any]]:
        """Types found in storage that the catalog does not know, with their writer schema."""
        try:
            folders = self.storage.event_type_folders
        except Exception as exc:
            detail = exc if isinstance(exc, StorageSettingError) else type(exc).__name__
            self.logger.warning("Discovery without storage listing (%s): streams come from the "
                                "built-in event catalog only", detail)
            return {}
        unknown = {}
        for event_type in sorted(set(folders) - set(catalog())):
            schema = self._schema_from_storage(event_type)
            if schema is not None:
                self.logger.info("Found event type %s in storage; not in the catalog",
                                 event_type)
                unknown[event_type] = schema
        return unknown

    def _schema_from_storage(self, event_type: str) -> dict[str, Any] | None:
        files = self.storage.files(event_type, None, None)
        if not files:
            return None
        newest = files[-1]
        try:
            with self.storage.open(newest.path) as handle:
                return AvroFile(handle, event_type, newest.path).writer_schema
        except Exception as exc:
            self.logger.warning("Cannot read the schema of %s (%s); stream skipped",
                                newest.path, self.storage.describe_error(exc))
            return None

    def discover_streams(self) -> list[CurrentsStream]:
        """A stream per catalog event type, plus any unknown type found in storage."""
        schemas: dict[str, dict[str, Any]] = {
            event_type: schema for event_type in catalog()
            if (schema := catalog_avro_schema(event_type)) is not None}
        schemas.update(self._types_in_storage())
        wanted = self._wanted_types()
        if wanted:
            unknown = sorted(set(wanted) - set(schemas))
            for event_type in unknown:
                self.logger.warning("event_types lists %s, which is neither in the catalog nor "
                                    "in storage; it will be read if files appear", event_type)
                schemas[event_type] = {"type": "record", "name": "Unknown",
                                       "fields": [{"name": "id", "type": "string"}]}
            schemas = {k: v for k, v in schemas.items() if k in wanted}
        return [CurrentsStream(self, event_type, schema) for event_type, schema in schemas.items()]

    _listings: dict[str, Future[list[CurrentsFile]]] | None = None

    def listing(self, stream: CurrentsStream) -> list[CurrentsFile]:
        """A stream's files in its hours.

        Remote, the first call lists every selected stream's hours in the background, so that
        later streams find their listing done (58 types x 25 hours are 1,450 round trips).
        """
        if self.storage.is_local:
            return self.storage.files(stream.event_type, *stream.listing_range())
        if self._listings is None:
            _ = self.storage.event_type_folders  # walked once, before the threads need it
            self._listings = {}
            pool = ThreadPoolExecutor(LISTINGS_AHEAD, thread_name_prefix="list-ahead")
            for other in self.selected_streams():
                if other is not stream:
                    self._listings[other.name] = pool.submit(
                        self.storage.files, other.event_type, *other.listing_range())
            pool.shutdown(wait=False)
        future = self._listings.pop(stream.name, None)
        if future is not None:
            return future.result()
        return self.storage.files(stream.event_type, *stream.listing_range())

    def listing_done(self, stream: CurrentsStream) -> bool:
        """Whether a stream's background listing has finished (`listing` would not wait)."""
        future = (self._listings or {}).get(stream.name)
        return future is not None and future.done()

    def selected_streams(self) -> list[CurrentsStream]:
        """The selected streams, in the order the SDK syncs them."""
        return [s for s in self.streams.values() if isinstance(s, CurrentsStream) and s.selected]

    def stream_after(self, stream: CurrentsStream) -> CurrentsStream | None:
        """The selected stream synced after `stream`; None after the last one."""
        selected = self.selected_streams()
        index = selected.index(stream) if stream in selected else len(selected)
        return selected[index + 1] if index + 1 < len(selected) else None

    _read_ahead: dict[str, ReadAhead] | None = None

    def keep_read_ahead(self, stream: CurrentsStream, read_ahead: ReadAhead) -> None:
        """Files of a later stream, some of them already being read, for it to take."""
        if self._read_ahead is None:
            self._read_ahead = {}
        self._read_ahead[stream.name] = read_ahead

    def take_read_ahead(self, stream: CurrentsStream) -> ReadAhead | None:
        """What an earlier stream listed and started reading for `stream`, if anything."""
        return (self._read_ahead or {}).pop(stream.name, None)

    def cancel_listings(self) -> None:
        """Stopping: listings not started yet, and reads ahead of later streams, are not needed."""
        for future in (self._listings or {}).values():
            future.cancel()
        for read_ahead in (self._read_ahead or {}).values():
            for read in read_ahead.reads.values():
                read.cancel()

    def check_storage(self) -> None:
        """Fail early, naming the setting, when the export cannot be listed (checked once)."""
        if not self._storage_checked:
            self.storage.check()
            self._storage_checked = True


if __name__ == "__main__":
    TapBrazeCurrents.cli()
