"""tap-braze-currents: the Singer tap, its settings and its streams."""

from __future__ import annotations

import atexit
import copy
import io
import json
import logging
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
from tap_braze_currents.event_types import catalog, catalog_avro_schema, stream_name
from tap_braze_currents.run import CurrentsRun, StreamFiles
from tap_braze_currents.settings import CurrentsSettings
from tap_braze_currents.state_check import StateError, check_state, parse_state_text
from tap_braze_currents.storage import StorageSettingError, storage_secrets
from tap_braze_currents.streams import CurrentsStream

logger = logging.getLogger(__name__)


class TapBrazeCurrents(StopSignalSetup, SecretSafeConfig, Tap):
    """Braze Currents Avro exports as Singer streams, one per event type."""

    name = "tap-braze-currents"
    package_name = DISTRIBUTION  # for --version
    message_writer_class = MsgSpecWriter

    config_jsonschema = CurrentsSettings.schema()

    # Errors a user can act on from their message alone: shown without a traceback.
    USER_ERRORS = (SettingError, StateError, StorageSettingError)

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
        """The schema's checks (ranges included), then the settings read and checked once.

        Discovery (`--discover`) does not raise: with a config the schema refuses, the settings
        are read when a run needs them.
        """
        errors = super()._validate_config(raise_errors=raise_errors)
        if errors:
            return errors
        try:
            _ = self.settings
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
        if isinstance(state, dict) and state:  # none in discovery, where config is not checked
            check_state(state, self.run.latest_hour)
        super().load_state(state)

    @cached_property
    def run(self) -> CurrentsRun:
        """The run the streams share: listing and reading ahead, checkpoints, stopping."""
        return CurrentsRun(lambda: self.settings, self.state, self.logger,
                           self._selected_stream_files)

    @cached_property
    def settings(self) -> CurrentsSettings:
        """The settings, read and checked once: when the config is validated, else on first use.

        Discovery (`--discover`) may run on a config the schema refuses.
        """
        return CurrentsSettings.from_config(self.config)

    def _handle_termination(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: finish the file being read, emit its state, end cleanly (exit 0).

        A second signal stops at once; the next run reads that file again.
        """
        if self.run.stop_requested:
            raise SystemExit(128 + signum)
        self.run.request_stop()
        atexit.register(wait_until_stdout_is_read)  # `meltano run` relays what was written
        self.logger.info("Received signal %d: stopping after the file being read; the next "
                         "run goes on from there", signum)


    def _wanted_types(self) -> list[str] | None:
        # read raw: discovery (--discover) runs on a config that was not validated
        wanted = self.config.get("event_types")
        return list(wanted) if wanted else None

    def _types_in_storage(self) -> dict[str, dict[str, Any]]:
        """Types found in storage that the catalog does not know, with their writer schema."""
        try:
            folders = self.run.storage.event_type_folders
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
        storage = self.run.storage
        files = storage.files(event_type, None, None)
        if not files:
            return None
        newest = files[-1]
        try:
            with storage.open(newest.path) as handle:
                return AvroFile(handle, event_type, newest.path).writer_schema
        except Exception as exc:
            self.logger.warning("Cannot read the schema of %s (%s); stream skipped",
                                newest.path, storage.describe_error(exc))
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
        return [CurrentsStream(self, self.run, event_type, schema)
                for event_type, schema in schemas.items()]

    def _selected_stream_files(self) -> list[StreamFiles]:
        """What the run needs of each selected stream, in the order the SDK syncs them."""
        return [stream.stream_files for stream in self.streams.values()
                if isinstance(stream, CurrentsStream) and stream.selected]


if __name__ == "__main__":
    TapBrazeCurrents.cli()
