"""target-mixpanel: the Singer target, its settings, and the glue from messages to delivery."""

from __future__ import annotations

import logging
from typing import Any

import fsspec
import msgspec
from singer_sdk import Target
from singer_sdk.exceptions import RecordsWithoutSchemaException

from plugin_support.config_errors import SecretSafeConfig
from plugin_support.distribution import DISTRIBUTION
from plugin_support.line_reader import FastReader
from plugin_support.record_messages import mapped_records
from plugin_support.run_end import RunEnd
from plugin_support.stop_signals import StopAtNextState
from target_mixpanel.batch_manifest import BatchRoots
from target_mixpanel.settings import CONFIG_SCHEMA, MixpanelSettings, SettingError
from target_mixpanel.sinks import MixpanelSink
from target_mixpanel.worker_pool import WorkerPool

logger = logging.getLogger("target-mixpanel")
_decode_line = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(decimal_format="number").encode
__all__ = ["SettingError", "TargetMixpanel"]


class TargetMixpanel(RunEnd, StopAtNextState, SecretSafeConfig, Target):
    """Singer target for Mixpanel's Import API."""

    name = "target-mixpanel"
    package_name = DISTRIBUTION  # for --version
    default_sink_class = MixpanelSink
    message_reader_class = FastReader
    delivered_word, accounted_word = "imported", "accounted"  # the summary's lines (RunEnd)

    config_jsonschema = CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The SDK target, plus the fast path for RECORD lines of streams without maps."""
        super().__init__(*args, **kwargs)
        self._pool: WorkerPool | None = None
        self._settings: MixpanelSettings | None = None
        self._batch_roots: BatchRoots | None = None
        self._held_state: dict | None = None  # see _write_state_message
        reader = self.message_reader
        if isinstance(reader, FastReader):
            reader.on_failure = self._abandon
            reader.on_input_error = self._deliver_before_failing
            if not (self.config.get("stream_maps") or self.config.get("flattening_enabled")):
                reader.take_record_lines = self._take_record_lines
                reader.take_record_block = self._take_record_block

    # -- the pipeline --------------------------------------------------------------------

    @property
    def settings(self) -> MixpanelSettings:
        """The settings, read and checked once."""
        if self._settings is None:
            self._settings = MixpanelSettings.from_config(self.config)
        return self._settings

    @property
    def pool(self) -> WorkerPool:
        """The worker processes, started on first use after the settings are checked."""
        if self._pool is None:
            self._pool = WorkerPool(self.settings, self._write_state_message)
        return self._pool

    def _started_delivery(self) -> WorkerPool | None:
        return self._pool

    def _after_finish(self) -> None:
        self._count_records_in_sinks()

    def _count_records_in_sinks(self) -> None:
        """Give the SDK's record_count metric (logged when a sink is cleaned up) its count.

        Records skip the sinks (FastReader hands them to the workers), so the SDK never
        counted them; each stream's count is what the workers received of it.
        """
        assert self._pool is not None
        received = self._pool.summary().get("received_by_stream") or {}
        for stream, count in received.items():
            sink = self._sinks_active.get(stream)
            if sink is not None and count:
                sink.record_counter_metric.increment(int(count))

    # -- Singer messages -----------------------------------------------------------------

    def _take_record_lines(self, lines: list[bytes]) -> int:
        """Hand RECORD lines to the workers unparsed (they check stream and keys)."""
        self.pool.add_lines(lines)
        return len(lines)

    def _take_record_block(self, block: bytes, count: int) -> None:
        """Hand a run of RECORD lines to the workers as it was read."""
        self.pool.add_block(block, count)

    def _process_record_message(self, message_dict: dict) -> None:
        for stream, record in mapped_records(self.mapper, message_dict):
            self.pool.add_line(_encode({"type": "RECORD", "stream": stream, "record": record}))

    def _process_schema_message(self, message_dict: dict) -> None:
        super()._process_schema_message(message_dict)
        for stream_map in self.mapper.stream_maps[message_dict["stream"]]:
            self.pool.set_key_properties(stream_map.stream_alias,
                                         list(stream_map.transformed_key_properties or []))

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        self.pool.add_state(message_dict["value"])

    def _process_batch_message(self, message_dict: dict) -> None:
        """A BATCH message: its JSON Lines files are read and delivered by the workers."""
        stream = message_dict.get("stream")
        encoding = message_dict.get("encoding") or {}
        manifest = message_dict.get("manifest")
        if not isinstance(stream, str) or not isinstance(manifest, list):
            msg = f"BATCH message without a stream name or a manifest list: {stream!r}"
            raise ValueError(msg)
        if encoding.get("format") != "jsonl" or encoding.get("compression") not in (
                None, "none", "gzip"):
            msg = (f"BATCH message of stream {stream!r} has encoding {encoding}; "
                   "target-mixpanel reads JSON Lines batch files ('jsonl'), plain or gzip")
            raise ValueError(msg)
        if stream not in self.mapper.stream_maps:
            msg = (f"A BATCH message for stream {stream!r} arrived before its SCHEMA message. "
                   "Check that the tap emits a SCHEMA message first.")
            raise RecordsWithoutSchemaException(msg)
        if self._batch_roots is None:
            self._batch_roots = BatchRoots(self.settings.batch_roots)
        for url in manifest:  # every file checked before any is read
            self._batch_roots.check(stream, str(url))
        reader = self.message_reader
        to_workers = isinstance(reader, FastReader) and reader.take_record_lines is not None
        for url in manifest:
            if to_workers:
                self.pool.add_batch_file(stream, url, encoding.get("compression"))
                continue
            # stream maps apply in this process: read the file here
            with fsspec.open(url, "rb", compression=encoding.get("compression") or None) as f:
                for line in f:
                    if line.strip():
                        self._process_record_message({"stream": stream,
                                                      "record": _decode_line(line)})

    def _setting_at_fault(self) -> str | None:
        """The setting that refused every record so far, if nothing else happened to any."""
        if self._pool is None:
            return None
        summary = self._pool.summary()
        received = sum((summary.get("received_by_stream") or {}).values())
        refused = summary.get("refused_by_setting") or {}
        if summary.get("imported") or not received or len(refused) != 1:
            return None
        setting, count = next(iter(refused.items()))
        return str(setting) if count == received else None

    def _fail_if_a_setting_delivered_nothing(self) -> None:
        """A run that imported nothing because of a mapping setting fails, naming it."""
        setting = self._setting_at_fault()
        if setting is None:
            return
        assert self._pool is not None
        summary = self._pool.summary()
        msg = (f"Nothing was imported: every record ({summary['received']}) was refused "
               f"because of the setting {setting} (= {self.config.get(setting)!r}); see the "
               f"dead-letter file {summary.get('dead_letter_file')}. Fix {setting} and rerun: "
               "no state was emitted, so the rerun reads these records again.")
        raise SettingError(msg)


if __name__ == "__main__":
    TargetMixpanel.cli()
