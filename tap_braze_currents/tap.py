"""tap-braze-currents: the Singer tap, its settings and its streams."""

from __future__ import annotations

import atexit
import copy
import io
import json
import logging
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any

import click
from singer_sdk import Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError

from plugin_support.clean_exit import wait_until_stdout_is_read
from plugin_support.config_errors import SecretSafeConfig, SettingError
from plugin_support.distribution import DISTRIBUTION
from plugin_support.stop_signals import StopSignalSetup
from tap_braze_currents.avro_decoding import AvroFile
from tap_braze_currents.checkpoints import Checkpoints
from tap_braze_currents.event_types import catalog, catalog_avro_schema, stream_name
from tap_braze_currents.settings import check_settings, latest_hour, tap_properties
from tap_braze_currents.state_check import StateError, check_state, parse_state_text
from tap_braze_currents.storage import (
    LISTING_THREADS,
    CurrentsFile,
    CurrentsStorage,
    StorageSettingError,
    storage_secrets,
)
from tap_braze_currents.streams import CurrentsStream, ReadAhead

logger = logging.getLogger(__name__)

# Streams whose remote listings run at once, ahead of their turn (each lists its hours in
# parallel too: storage.LISTING_THREADS).
LISTINGS_AHEAD = 4


class TapBrazeCurrents(StopSignalSetup, SecretSafeConfig, Tap):
    """Braze Currents Avro exports as Singer streams, one per event type."""

    name = "tap-braze-currents"
    package_name = DISTRIBUTION  # for --version
    message_writer_class = MsgSpecWriter

    config_jsonschema = tap_properties().to_dict()

    # Errors a user can act on from their message alone: shown without a traceback.
    USER_ERRORS = (SettingError, StateError, StorageSettingError)

    _storage_checked = False
    stop_requested = False  # set by SIGTERM/SIGINT: stop after the file being read

    def __init__(self, *args: Any, **kwargs: Any):
        """The SDK's tap, which does not echo the input state as a run's first STATE."""
        super().__init__(*args, **kwargs)
        # The SDK's sync_all starts by printing the state it was given, unless its writer has
        # printed that state already: the whole lookback window again, which the caller has.
        self._state_writer._last_emitted_state = copy.deepcopy(self.state)

    @classmethod
    def invoke(cls, *, state: Any = None, **kwargs: Any) -> None:
        """The SDK's, with the state file checked and errors users can act on shown plainly.

        Every other error goes through the SDK's exception hook, whose log line passes the
        redaction of the storage secrets (`extra_secrets`).
        """
        try:
            if state is not None:
                name = getattr(state, "name", "--state")
                state = io.StringIO(json.dumps(parse_state_text(state.read(), name)))
            super().invoke(state=state, **kwargs)
        except cls.USER_ERRORS as exc:
            cls.logger.error("%s", exc)
            raise click.exceptions.Exit(1) from None

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The schema's checks (ranges included), then the dates."""
        errors = super()._validate_config(raise_errors=raise_errors)
        try:
            check_settings(self.config)
        except SettingError as exc:
            if raise_errors:
                raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
            errors.append(str(exc))
        return errors

    def extra_secrets(self, config: dict[str, Any]) -> list[str]:
        """The storage secrets: storage_options' strings and the user info of storage_url."""
        options = config.get("storage_options")
        return storage_secrets(str(config.get("storage_url", "")),
                               options if isinstance(options, dict) else {})

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK's, once the state is checked (StateError) and rid of future hours."""
        if isinstance(state, dict):
            check_state(state, self.latest_hour)
        super().load_state(state)

    @cached_property
    def latest_hour(self) -> str:
        """The newest `date=` hour this run reads: now plus future_hours_tolerance."""
        return latest_hour(self.config)

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
        if wanted:  # by stream: a spelling differing in case names the same stream
            known = {stream_name(event_type) for event_type in schemas}
            for event_type in sorted(set(wanted)):
                if stream_name(event_type) in known:
                    continue
                self.logger.warning("event_types lists %s, which is neither in the catalog nor "
                                    "in storage; it will be read if files appear", event_type)
                schemas[event_type] = {"type": "record", "name": "Unknown",
                                       "fields": [{"name": "id", "type": "string"}]}
                known.add(stream_name(event_type))
            names = {stream_name(event_type) for event_type in wanted}
            schemas = {k: v for k, v in schemas.items() if stream_name(k) in names}
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
