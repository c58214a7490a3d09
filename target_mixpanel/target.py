"""target-mixpanel: the Singer target, its settings, and the glue from messages to delivery."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import fsspec
import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from plugin_support.clean_exit import ignore_stop_signal_while_exiting, wait_until_stdout_is_read
from plugin_support.config_errors import SecretSafeConfig
from plugin_support.distribution import DISTRIBUTION
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, REGION_HOSTS
from target_mixpanel.sinks import MixpanelSink
from target_mixpanel.wiring import DEFAULT_MAX_BATCH_BYTES, SettingError, check_settings
from target_mixpanel.workers import WorkerPool

logger = logging.getLogger("target-mixpanel")
_decode_line = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(decimal_format="number").encode
# How RECORD lines start when a tap writes compact or default-spaced JSON: such lines are
# handed to the workers without being parsed here.
RECORD_PREFIXES = (b'{"type":"RECORD","stream":"', b'{"type": "RECORD", "stream": "')
BLOCK_BYTES = 1024 * 1024
# A block made only of RECORD lines written compactly (as tap-braze-currents and the SDK's
# msgspec writer do) goes to the workers whole, without being split into lines here.
COMPACT_RECORD = RECORD_PREFIXES[0]
NEWLINE_RECORD = b"\n" + COMPACT_RECORD
# After a stop signal, how long the target reads on waiting for the tap's next STATE.
STATE_WAIT_SECONDS = 30

__all__ = ["SettingError", "TargetMixpanel"]


def default_worker_processes() -> int:
    """CPUs + 1 (a worker waiting on Mixpanel leaves its CPU to another), at most 8."""
    return min(8, (os.cpu_count() or 1) + 1)


# Durations: a number, or a string holding one. Meltano (4.4) turns a "decimal" setting given
# by an environment variable into a Decimal it then cannot write as JSON, so meltano.yml
# declares these as strings and the target reads both.
SECONDS = th.CustomType({"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$"})


# A line that is not a Singer message, or a message the spec forbids where it is: the run
# fails naming it, after delivering the records before it and emitting their state.
INPUT_ERRORS = (ValueError, RecordsWithoutSchemaException, MissingKeyPropertiesError)


class StopReading(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the termination handler to leave a blocking read."""


class FastReader(GenericSingerReader[Any]):
    """Singer lines; RECORD lines of known streams go to the workers unparsed."""

    # Set by the target: takes a run of RECORD lines for the workers, returns how many.
    take_record_lines: Callable[[list[bytes]], int] | None = None
    # Set by the target with take_record_lines: takes a run of RECORD lines joined by newlines
    # and their count.
    take_record_block: Callable[[bytes, int], None] | None = None
    on_failure: Callable[[], None] | None = None
    # Set by the target: called on a bad input line, to deliver what came before it.
    on_input_error: Callable[[], None] | None = None
    stop_requested = False   # stop reading now; deliver what was read
    stop_at_next_state = False  # set on SIGTERM/SIGINT: stop reading after the next STATE
    at_state = True          # no record was read since the last STATE (or the start)
    reading = False          # True while blocked reading input (a stop may interrupt it)

    def request_stop(self) -> None:
        """Stop reading at the next STATE (at once if nothing was read since the last one).

        Stopping right after a STATE means every record read is covered by the state the
        target emits, so the next run replays nothing.
        """
        if self.at_state:
            self.stop_now()
        else:
            self.stop_at_next_state = True

    def stop_now(self) -> None:
        """Stop reading now (a blocking read is interrupted)."""
        self.stop_requested = True
        if self.reading:
            raise StopReading

    @property
    def default_input(self) -> IO[bytes]:
        """Standard input, as bytes."""
        return sys.stdin.buffer

    def deserialize_json(self, line: Any) -> dict:
        """One line as a dict, or an error naming the line."""
        try:
            message = _decode_line(line)
        except msgspec.DecodeError as exc:
            text = line if isinstance(line, str) else line.decode("utf-8", "replace")
            msg = f"Input line is not valid JSON ({exc}): {text[:200]!r}"
            raise ValueError(msg) from None
        if not isinstance(message, dict) or "type" not in message:
            msg = f"Input line is not a Singer message: {str(line)[:200]!r}"
            raise ValueError(msg)
        return message

    def process_lines(self, file_input: IO[Any] | None, callbacks: dict) -> Counter[str]:
        """Dispatch every line; count lines by message type."""
        try:
            return self._process_lines(file_input, callbacks)
        except INPUT_ERRORS:
            if self.on_input_error is not None:
                self.on_input_error()
            raise
        except BaseException:
            if self.on_failure is not None:
                self.on_failure()
            raise

    def _process_lines(self, file_input: IO[Any] | None, callbacks: dict) -> Counter[str]:
        source = file_input or self.default_input
        if self.take_record_lines is not None and isinstance(source.read(0), bytes):
            return self._process_blocks(source, callbacks)
        stats: Counter[str] = Counter()
        lines = iter(source)
        while not self.stop_requested:
            try:
                self.reading = True
                line = next(lines)
            except (StopIteration, StopReading):
                break
            finally:
                self.reading = False
            if line.strip():
                stats[self._dispatch(line, callbacks)] += 1
        return stats

    def _dispatch(self, line: Any, callbacks: dict) -> str:
        message = self.deserialize_json(line)
        kind = message["type"]
        callback = callbacks.get(kind)
        if callback is None:
            self._process_unknown_message(message)
        else:
            callback(message)
        if kind == "STATE":
            self.at_state = True
            self.stop_requested = self.stop_requested or self.stop_at_next_state
        elif kind in ("RECORD", "BATCH"):
            self.at_state = False
        return str(kind)

    def _hand_over(self, whole: bytes, callbacks: dict, stats: Counter[str]) -> None:
        """Complete lines: runs of RECORD lines to the workers, the rest dispatched here."""
        take, take_block = self.take_record_lines, self.take_record_block
        assert take is not None
        assert take_block is not None
        count = whole.count(b"\n") + 1
        if whole.startswith(COMPACT_RECORD) and whole.count(NEWLINE_RECORD) == count - 1:
            take_block(whole, count)
            self.at_state = False
            stats["RECORD"] += count
            return
        lines = whole.split(b"\n")
        start = 0
        for index in [i for i, line in enumerate(lines)
                      if not line.startswith(RECORD_PREFIXES)]:
            if index > start:
                stats["RECORD"] += take(lines[start:index])
                self.at_state = False
            if lines[index].strip():
                stats[self._dispatch(lines[index], callbacks)] += 1
            start = index + 1
            if self.stop_requested:
                self._leave(lines[start:])
                return
        if start < len(lines):
            stats["RECORD"] += take(lines[start:])
            self.at_state = False

    @staticmethod
    def _leave(lines: list[bytes]) -> None:
        """Lines read after the STATE a stop ends at: the next run reads them again."""
        left = sum(1 for line in lines if line.strip())
        if left:
            logger.info("Stopping after a STATE: %d lines read past it are left to the next "
                        "run", left)

    def _process_blocks(self, source: IO[bytes], callbacks: dict) -> Counter[str]:
        """Read big blocks; pass runs of RECORD lines to the workers unparsed.

        Every other line is parsed and dispatched here, in order.
        """
        stats: Counter[str] = Counter()
        carry = b""
        read = getattr(source, "read1", source.read)  # what is there now, up to a block
        while not self.stop_requested:
            try:
                self.reading = True
                block = read(BLOCK_BYTES)
            except StopReading:
                break
            finally:
                self.reading = False
            if not block:
                break
            data = carry + block if carry else block
            end = data.rfind(b"\n")
            if end < 0:
                carry = data
                continue
            whole, carry = data[:end], data[end + 1:]
            self._hand_over(whole, callbacks, stats)
        if carry.strip() and not self.stop_requested:
            self._hand_over(carry, callbacks, stats)
        return stats


class TargetMixpanel(SecretSafeConfig, Target):
    """Singer target for Mixpanel's Import API."""

    name = "target-mixpanel"
    package_name = DISTRIBUTION  # for --version
    default_sink_class = MixpanelSink
    message_reader_class = FastReader

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
        th.Property("dead_letter_path", th.StringType, default="mixpanel-dead-letters.jsonl",
                    description="Newline-delimited JSON file of records not imported, with "
                    "the reason."),
        th.Property("dry_run", th.BooleanType, default=False,
                    description="Send nothing; write the request bodies to dry_run_path."),
        th.Property("dry_run_path", th.StringType, default="mixpanel-dry-run",
                    description="Folder for dry-run request bodies."),
        th.Property("delete_batch_files", th.BooleanType, default=True,
                    description="BATCH messages: delete each batch file once every record in "
                    "it is imported, skipped or dead-lettered."),
        th.Property("pii", th.StringType, default="keep", allowed_values=["keep", "hash", "drop"],
                    description="Email addresses and phone numbers: keep, hash (salted SHA-256) "
                    "or drop."),
        th.Property("pii_salt", th.StringType, secret=True,
                    description="Salt for pii: hash."),
        th.Property("max_retry_seconds", SECONDS, default=900,
                    description="Total time one batch may spend retrying 429/5xx/network "
                    "errors before the run fails."),
        th.Property("retry_first_delay_seconds", SECONDS, default=2.0,
                    description="First backoff delay (doubles up to retry_max_delay_seconds)."),
        th.Property("retry_max_delay_seconds", SECONDS, default=60.0,
                    description="Longest backoff delay."),
        th.Property("retry_jitter_seconds", th.ArrayType(th.NumberType), default=[1.0, 5.0],
                    description="Random jitter added to each delay: [min, max] seconds."),
        th.Property("request_timeout_seconds", SECONDS, default=120,
                    description="Timeout of one HTTP request."),
        th.Property("verify_tls", th.BooleanType, default=True,
                    description="Check TLS certificates (turning it off warns)."),
        th.Property("progress_interval_seconds", SECONDS, default=10,
                    description="How often a progress line is logged."),
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

    def _deliver_before_failing(self) -> None:
        """A bad input line: deliver every record before it and emit their state first."""
        if self._pool is None:
            return
        self._finish_pool()
        logger.error("Stopped at a bad input line (below); every record before it was "
                     "delivered and its state emitted")

    def _finish_pool(self) -> None:
        """Let every worker deliver and release the last state; log the summary."""
        assert self._pool is not None
        try:
            self._pool.finish()
            self._fail_if_a_setting_refused_everything()
        except BaseException:
            self._abandon()
            raise
        if self._held_state is not None:
            self._write_state_message(self._held_state)
        self._log_summary(failed=False)
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

    def _abandon(self) -> None:
        if self._pool is not None:
            self._log_summary(failed=True)
            self._pool.abandon()

    # -- Singer messages -----------------------------------------------------------------

    def _take_record_lines(self, lines: list[bytes]) -> int:
        """Hand RECORD lines to the workers unparsed (they check stream and keys)."""
        self.pool.add_lines(lines)
        return len(lines)

    def _take_record_block(self, block: bytes, count: int) -> None:
        """Hand a run of RECORD lines to the workers as it was read."""
        self.pool.add_block(block, count)

    def _process_record_message(self, message_dict: dict) -> None:
        stream = message_dict.get("stream")
        record = message_dict.get("record")
        if not isinstance(stream, str) or not isinstance(record, dict):
            msg = f"RECORD message without a stream name or a record object: {stream!r}"
            raise ValueError(msg)
        stream_maps = self.mapper.stream_maps.get(stream)
        if stream_maps is None:
            msg = (f"A record for stream {stream!r} arrived before its SCHEMA message. "
                   "Check that the tap emits a SCHEMA message first.")
            raise RecordsWithoutSchemaException(msg)
        for stream_map in stream_maps:
            mapped = stream_map.transform(dict(record))
            if mapped is None:
                continue
            keys = stream_map.transformed_key_properties or ()
            missing = [k for k in keys if k not in mapped]
            if missing:
                msg = (f"A record of stream {stream_map.stream_alias!r} lacks its key "
                       f"properties {missing}: it has {list(mapped)[:20]}")
                raise MissingKeyPropertiesError(msg)
            self.pool.add_line(_encode({"type": "RECORD", "stream": stream_map.stream_alias,
                                        "record": mapped}))

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

    def _write_state_message(self, state: dict) -> None:
        if self._setting_at_fault() is not None:
            self._held_state = state  # emitted once a record is imported, or never
            return
        self._held_state = None
        sys.stdout.write(msgspec.json.encode(state).decode() + "\n")
        sys.stdout.flush()

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

    def _fail_if_a_setting_refused_everything(self) -> None:
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

    def process_endofpipe(self) -> None:
        """Deliver what is left, emit the last state, log the summary."""
        if self._pool is not None:
            self._finish_pool()
        super().process_endofpipe()
        reader = self.message_reader
        if isinstance(reader, FastReader) and (reader.stop_requested
                                               or reader.stop_at_next_state):
            wait_until_stdout_is_read()  # `meltano run` is stopping: let it relay the state

    def _setup_signal_handlers(self) -> None:
        """The SDK's (ours: `_handle_termination`), and none once the process is exiting."""
        super()._setup_signal_handlers()
        ignore_stop_signal_while_exiting()

    def _handle_termination(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: read on to the next STATE, deliver, emit that state, exit 0.

        The tap (tap-braze-currents) answers the same signal by ending after the file it is
        reading and its STATE, so the run ends with nothing to replay. With no STATE within
        STATE_WAIT_SECONDS the target stops reading anyway; a second signal stops at once.
        Either way no state past what was delivered is emitted.
        """
        reader = self.message_reader
        if not isinstance(reader, FastReader) or reader.stop_at_next_state \
                or reader.stop_requested:
            super()._handle_termination(signum, frame)
            return
        logger.info("Received signal %d: reading on to the next STATE, delivering, then "
                    "stopping", signum)
        signal.signal(signal.SIGALRM, self._stop_waiting_for_state)
        signal.alarm(STATE_WAIT_SECONDS)
        reader.request_stop()

    def _stop_waiting_for_state(self, signum: int, frame: Any) -> None:
        reader = self.message_reader
        if isinstance(reader, FastReader) and not reader.stop_requested:
            logger.warning("No STATE arrived within %d s of the stop signal: stopping now; "
                           "records read since the last STATE will be sent again by the next "
                           "run", STATE_WAIT_SECONDS)
            reader.stop_now()

    def _log_summary(self, *, failed: bool) -> None:
        if self._pool is None:
            return
        summary = self._pool.summary()
        logger.info("summary: %s", msgspec.json.encode(summary).decode())
        dead = sum((summary.get("dead_lettered") or {}).values())
        if dead:
            logger.warning("%d records were not imported; see %s", dead,
                           summary.get("dead_letter_file"))
        if failed:
            logger.error("The run failed; no state was emitted past the last fully accounted "
                         "record. Rerun to resume.")


if __name__ == "__main__":
    TargetMixpanel.cli()
