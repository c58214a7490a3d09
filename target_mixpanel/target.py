"""target-mixpanel: the Singer target, its settings, and the glue from messages to delivery."""

from __future__ import annotations

import logging
import os
from typing import Any

import fsspec
import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import RecordsWithoutSchemaException

from plugin_support.config_errors import SecretSafeConfig
from plugin_support.delivery_settings import (
    output_properties,
    progress_property,
    request_timeout_property,
    retry_properties,
)
from plugin_support.distribution import DISTRIBUTION
from plugin_support.line_reader import FastReader
from plugin_support.record_messages import mapped_records
from plugin_support.run_end import RunEnd
from plugin_support.stop_signals import StopAtNextState
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, REGION_HOSTS
from target_mixpanel.sinks import MixpanelSink
from target_mixpanel.wiring import DEFAULT_MAX_BATCH_BYTES, SettingError, check_settings
from target_mixpanel.workers import WorkerPool

logger = logging.getLogger("target-mixpanel")
_decode_line = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(decimal_format="number").encode
__all__ = ["SettingError", "TargetMixpanel"]


def default_worker_processes() -> int:
    """CPUs + 1 (a worker waiting on Mixpanel leaves its CPU to another), at most 8."""
    return min(8, (os.cpu_count() or 1) + 1)




class TargetMixpanel(RunEnd, StopAtNextState, SecretSafeConfig, Target):
    """Singer target for Mixpanel's Import API."""

    name = "target-mixpanel"
    package_name = DISTRIBUTION  # for --version
    default_sink_class = MixpanelSink
    message_reader_class = FastReader
    delivered_word, accounted_word = "imported", "accounted"  # the summary's lines (RunEnd)

    config_jsonschema = th.PropertiesList(
        th.Property("project_id", th.StringType,
                    description="Mixpanel project id (required with a service account)."),
        th.Property("service_account_username", th.StringType,
                    description="Service account user name (preferred auth)."),
        th.Property("service_account_secret", th.StringType, secret=True,
                    description="Service account secret."),
        th.Property("project_token", th.StringType, secret=True,
                    description="Project token (auth when no service account is given)."),
        th.Property("api_secret", th.StringType, secret=True,
                    description="Project API secret (deprecated by Mixpanel; works, warns)."),
        th.Property("region", th.StringType, default="US", allowed_values=list(REGION_HOSTS),
                    description="Data residency: US (api), EU (api-eu) or IN (api-in)."),
        th.Property("api_url", th.StringType,
                    description="Base URL overriding region (proxies, tests); POSTs go to "
                    "{api_url}/import."),
        th.Property("mapping", th.StringType, default="braze_currents",
                    allowed_values=["braze_currents", "generic"],
                    description="braze_currents: Braze's own Mixpanel naming; generic: any tap."),
        th.Property("event_name", th.StringType, default="{stream}",
                    description="generic: event name; {field} and {stream} are filled in."),
        th.Property("distinct_id_field", th.StringType, default="distinct_id",
                    description="generic: the field holding the user id."),
        th.Property("time_field", th.StringType, default="time",
                    description="generic: the field holding the event time (epoch s/ms or "
                    "ISO 8601)."),
        th.Property("insert_id_field", th.StringType, default="id",
                    description="generic: the field that identifies an event for dedup "
                    "(absent: a hash of the record)."),
        th.Property("batch_size", th.IntegerType, default=MAX_EVENTS_PER_REQUEST,
                    description="Events per request (at most 2000)."),
        th.Property("max_batch_bytes", th.IntegerType, default=DEFAULT_MAX_BATCH_BYTES,
                    description="Uncompressed bytes per request (at most 10 MB)."),
        th.Property("max_concurrency", th.IntegerType, default=10,
                    description="Requests in flight at once (split across worker processes)."),
        th.Property("adaptive_sending", th.BooleanType, default=True,
                    description="Steer requests in flight and events/s from Mixpanel's "
                    "answers (AIMD on 429s), starting from max_concurrency."),
        th.Property("worker_processes", th.IntegerType,
                    description="Processes that map and send events; default: CPUs + 1, "
                    "at most 8."),
        th.Property("gzip", th.BooleanType, default=True, description="Gzip request bodies."),
        th.Property("gzip_level", th.IntegerType, default=1, allowed_values=[0, 1, 2, 3],
                    description="Gzip level (ISA-L): 0 fastest to 3 smallest."),
        th.Property("strict", th.BooleanType, default=True,
                    description="Ask Mixpanel to validate every event (strict=1)."),
        *output_properties("mixpanel", "imported"),
        th.Property("delete_batch_files", th.BooleanType, default=True,
                    description="BATCH messages: delete each batch file once every record in "
                    "it is imported, skipped or dead-lettered."),
        th.Property("pii", th.StringType, default="keep", allowed_values=["keep", "hash", "drop"],
                    description="Email addresses and phone numbers: keep, hash (salted SHA-256) "
                    "or drop."),
        th.Property("pii_salt", th.StringType, secret=True,
                    description="Salt for pii: hash."),
        *retry_properties(),
        request_timeout_property(),
        th.Property("verify_tls", th.BooleanType, default=True,
                    description="Check TLS certificates (turning it off warns)."),
        progress_property(),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The SDK target, plus the fast path for RECORD lines of streams without maps."""
        super().__init__(*args, **kwargs)
        self._pool: WorkerPool | None = None
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
    def pool(self) -> WorkerPool:
        """The worker processes, started on first use after the settings are checked."""
        if self._pool is None:
            config = dict(self.config)
            check_settings(config)
            processes = config.get("worker_processes") or default_worker_processes()
            if int(processes) < 1:
                msg = f"worker_processes must be at least 1, got {processes}"
                raise SettingError(msg)
            self._pool = WorkerPool(config, int(processes), self._write_state_message,
                                    float(config.get("progress_interval_seconds", 10)))
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
