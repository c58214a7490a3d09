"""One Singer stream per Currents event type: its new files decoded, printed, marked read."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from singer_sdk import Stream, Tap
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

try:
    from singer_sdk.helpers.conform import TypeConformanceLevel
except ImportError:  # singer-sdk before it moved
    from singer_sdk.helpers._typing import TypeConformanceLevel

from tap_braze_currents.avro_decoding import AvroFile
from tap_braze_currents.batch_files import BatchFileWriter
from tap_braze_currents.event_types import EXTRA_FIELDS, JSON_OBJECT_FIELDS, stream_name
from tap_braze_currents.file_groups import FileGroup
from tap_braze_currents.file_ledger import FileLedger
from tap_braze_currents.json_schema import merge_json_schemas, record_fields_schema
from tap_braze_currents.line_format import FileLines
from tap_braze_currents.run import CurrentsRun, StreamFiles
from tap_braze_currents.storage import CurrentsFile


class CorruptFileError(Exception):
    """A Currents file could not be decoded to its end (raised with on_corrupt_file: fail)."""


def stream_schema(avro_record: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The JSON Schema of a stream from an Avro record schema of its event type."""
    properties = record_fields_schema(avro_record)
    for name in JSON_OBJECT_FIELDS.get(event_type, ()):
        if name in properties:
            nullable = "null" in properties[name]["type"]
            properties[name] = {"type": ["object", "string"] + (["null"] if nullable else []),
                                "additionalProperties": True}
    properties.update(EXTRA_FIELDS)
    return {"type": ["object"], "properties": properties, "additionalProperties": True}


@dataclass
class _BatchOutput:
    """BATCH mode's open batch file: records of file groups in, a BATCH message per full file."""

    files: BatchFileWriter
    announce: Callable[[list[str]], None]  # prints a BATCH message for a finished file

    def write(self, group: FileGroup, lines_of: Callable[[AvroFile], FileLines]) -> None:
        for manifest in self.files.write(group, lines_of):
            self.announce(manifest)

    def close(self) -> None:
        """Finish the open batch file, if any, and print its BATCH message."""
        manifest = self.files.close()
        if manifest is not None:
            self.announce(manifest)


class CurrentsStream(Stream):
    """The events of one Currents event type."""

    primary_keys = ("id",)
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # Avro records already match the schema

    def __init__(self, tap: Tap, run: CurrentsRun, event_type: str, avro_record: dict[str, Any]):
        """A stream for `event_type` in `run`, its schema built from an Avro record schema."""
        self.event_type = event_type
        self._seen_writer_schemas: set[str] = set()
        super().__init__(tap, schema=stream_schema(avro_record, event_type),
                         name=stream_name(event_type))
        self._run = run
        self.stream_files = StreamFiles(self.name, event_type, self.logger)
        self._batches: _BatchOutput | None = None  # BATCH mode, while syncing
        # Incremental by the stream's own file ledger (its state), not by a replication key:
        # the catalog says INCREMENTAL, a rerun reads only files not read yet.
        self.forced_replication_method = REPLICATION_INCREMENTAL
        self._schema_printed = False
        self.files_read = 0
        self.corrupt_files = 0
        self.invalid_json = 0

    # -- files ---------------------------------------------------------------------------

    def _decoded_files(self) -> Iterator[FileGroup]:
        """The new files' decoders in groups (file_groups.py), in hour order.

        The caller must have printed every record of a group (or the BATCH messages holding
        them, see `_before_checkpoint`) before asking for the next one; a file enters the
        state only then. A STATE is printed every `state_interval_seconds` and at the end.
        """
        run = self._run
        if run.stop_requested:
            if self._schema_printed:  # the signal came right after it: a STATE ends the output
                run.checkpoints.write(even_unchanged=True)
            return
        checkpoints = run.checkpoints
        group = FileGroup()
        sources = run.sources(self.stream_files)
        ledger = run.ledger(self.stream_files)
        for file, source in sources:
            avro = self._open(file, source)
            if avro is None:  # not Avro at all: reported, nothing to print
                source.close()
                self._done(ledger, file)
                continue
            if not group.takes(file, avro):
                yield group
                self._group_done(ledger, group)
                group = FileGroup()
            self._adopt_writer_schema(avro)
            group.add(file, avro)
            if group.small:
                avro.load()
                source.close()
            else:
                avro.source = source
            stop = run.stop_requested
            if group.full or stop:
                yield group
                self._group_done(ledger, group)
                group = FileGroup()
            if stop:
                run.stop_reading(self.stream_files, file)
                break
            if checkpoints.due():
                self._checkpoint()
        if group.members:
            yield group
            self._group_done(ledger, group)
        self._end_of_stream_checkpoint()

    def _end_of_stream_checkpoint(self) -> None:
        """A STATE when one is due, on a stop signal, and always at the end of the run.

        Not after every stream: each STATE holds every stream's lookback window, so an hourly
        run printing one per stream printed the whole state 58 times (45% of its bytes). The
        run's last STATE is printed even when nothing was read, so every run ends with one.
        """
        run = self._run
        if run.is_last(self.stream_files):
            self._before_checkpoint()
            run.checkpoints.write(even_unchanged=True)
        elif run.stop_requested or run.checkpoints.due():
            self._checkpoint()

    def _open(self, file: CurrentsFile, source: BinaryIO) -> AvroFile | None:
        url = self._run.storage.url_of(file.path)
        try:
            return AvroFile(source, self.event_type, url)
        except Exception as exc:
            self._report_damage(url, exc, 0)
            return None

    def _group_done(self, ledger: FileLedger, group: FileGroup) -> None:
        """A group's records are printed: report damage, and its files enter the state."""
        for file, avro in group.members:
            if avro.source is not None:
                avro.source.close()
            if avro.error is not None:
                self._report_damage(avro.source_url, avro.error, avro.count)
            self.invalid_json += avro.invalid_json
            if avro.invalid_json:
                self.logger.warning("%s: %d values in %s are not JSON objects; kept as strings",
                                    self.name, avro.invalid_json, avro.source_url)
            self._done(ledger, file)

    def _done(self, ledger: FileLedger, file: CurrentsFile) -> None:
        ledger.mark_read(file)
        self.files_read += 1
        self._run.checkpoints.changed()

    def _checkpoint(self) -> None:
        """Print what is held back (an open batch file's BATCH message), then a STATE."""
        checkpoints = self._run.checkpoints
        if checkpoints.pending:
            self._before_checkpoint()
            checkpoints.write()

    def _before_checkpoint(self) -> None:
        """Print what the next STATE covers and is not printed yet (BATCH mode: the open file)."""
        if self._batches is not None:
            self._batches.close()

    def _abort_sync(self, abort_reason: Exception) -> None:
        """A record limit or an error: a STATE of the files done, then the SDK's handling."""
        self._before_checkpoint()
        self._run.checkpoints.write(even_unchanged=True)
        super()._abort_sync(abort_reason)

    def _write_schema_message(self) -> None:
        """The SDK's, except for streams left to the next run by a stop signal."""
        if not self._run.stop_requested:
            super()._write_schema_message()
            self._schema_printed = True

    def _write_state_message(self) -> None:
        """The SDK's checkpoints (every N records, end of a sync) follow the interval too."""
        if self._run.checkpoints.due():
            self._checkpoint()

    def _report_damage(self, url: str, exc: BaseException, count: int) -> None:
        detail = self._run.storage.describe_error(exc)
        if self._run.settings.on_corrupt_file == "fail":
            msg = (f"{url} is damaged after {count} records ({detail}). Set on_corrupt_file "
                   "to 'skip' to read what can be read and go on.")
            raise CorruptFileError(msg)
        self.corrupt_files += 1
        self.logger.warning("%s: %s is damaged (%s); kept the %d records before the damage and "
                            "skipped the rest", self.name, url, detail, count)

    def _adopt_writer_schema(self, avro: AvroFile) -> None:
        """Widen the stream schema when a file brings fields or types it lacks (schema drift)."""
        if avro.fingerprint in self._seen_writer_schemas:
            return
        self._seen_writer_schemas.add(avro.fingerprint)
        writer_schema = avro.writer_schema
        merged = merge_json_schemas(self.schema, stream_schema(writer_schema, self.event_type))
        if merged == self.schema:
            return
        added = sorted(set(merged["properties"]) - set(self.schema["properties"]))
        self.logger.info("%s: a file's writer schema widens the stream schema (new fields: %s)",
                         self.name, ", ".join(added) or "none, wider types")
        self._schema = merged
        if self._tap.mapper is not None:
            self._tap.mapper.register_raw_stream_schema(self.name, merged, self.primary_keys)
            self._stream_maps = []
        if self.selected:
            self._write_schema_message()

    def _increment_stream_state(self, latest_record: Any, *, context: Any = None) -> None:
        """Nothing per record: the file ledger advances after each file (_decoded_files)."""

    # -- records -------------------------------------------------------------------------

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """Records of every new file (the SDK's generic path: stream maps, dry runs)."""
        for group in self._decoded_files():
            for _, avro in group.members:
                yield from avro.records()
        self._log_summary()

    def _can_write_directly(self, write_messages: bool) -> bool:
        """Whether records can skip the SDK's per-record path (nothing would change them)."""
        mask = self.mask
        return (write_messages and self.ABORT_AT_RECORD_COUNT is None
                and not self.config.get("stream_maps")
                and not self.config.get("flattening_enabled")
                and all(mask.values()))

    def _sync_records(self, context: Mapping[str, Any] | None = None, *,
                      write_messages: bool = True) -> Generator[dict, Any, Any]:
        if not self._can_write_directly(write_messages):
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        sys.stdout.flush()
        out = sys.stdout.buffer

        def lines_of(avro: AvroFile) -> FileLines:
            extracted = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
            message = {"type": "RECORD", "stream": self.name, "time_extracted": extracted}
            return FileLines(message, self._shared_fields(avro))

        checkpoints = self._run.checkpoints

        def write(group: FileGroup) -> None:
            for _, chunk in group.lines(lines_of):
                out.write(chunk)
                checkpoints.printed(len(chunk))
            out.flush()

        self._write_directly(write)
        yield from ()

    def _sync_batches(self, batch_config: Any, context: Mapping[str, Any] | None = None) -> None:
        """BATCH mode (`batch_config` set): records go to batch files, one BATCH message each."""
        if not self._can_write_directly(write_messages=True):
            super()._sync_batches(batch_config, context)
            return
        files = BatchFileWriter(batch_config, self.tap_name, self.name)
        with self.get_batch_counter() as batches:

            def announce(manifest: list[str]) -> None:
                self._write_batch_message(batch_config.encoding, manifest)
                batches.increment()

            output = self._batches = _BatchOutput(files, announce)
            try:
                self._write_directly(lambda group: output.write(group, self._batch_lines))
                output.close()
            finally:
                self._batches = None

    def _batch_lines(self, avro: AvroFile) -> FileLines:
        return FileLines({}, self._shared_fields(avro))

    @staticmethod
    def _shared_fields(avro: AvroFile) -> dict[str, str]:
        """The fields every record of a file gets besides its Avro fields."""
        return {"event_type": avro.event_type, "_sdc_source_file": avro.source_url}

    def _write_directly(self, write: Callable[[FileGroup], None]) -> None:
        """Write each group of new files with `write`; the final state follows."""
        try:
            with self.get_record_counter() as counter, self.get_sync_timer():
                for group in self._decoded_files():
                    write(group)
                    counter.increment(sum(avro.count for _, avro in group.members))
        except BrokenPipeError:
            if not self._run.stop_requested:
                raise
            # stopped by a signal too, the target read up to a STATE and left; what follows
            # it is read again by the next run
            self._run.discard_output()
            return
        self._log_summary()

    def _log_summary(self) -> None:
        self.logger.info("%s: %d files read, %d damaged files, %d non-JSON property values",
                         self.name, self.files_read, self.corrupt_files, self.invalid_json)
