"""Avro object container files -> Currents records, with Braze's quirks straightened out.

- float32 fields come out as the shortest decimal that round-trips (3.14, not 3.140000104904175);
- JSON-encoded object fields (`properties` of CustomEvent and Purchase) come out as objects;
  a value that is not a JSON object is kept as it was and counted;
- a truncated or corrupt file yields the records before the damage and reports the error.

`record_lines()` writes whole output lines (line_format.py), in bulk through polars where the
writer schema allows it (bulk_decoding.py), record by record otherwise.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

import msgspec
from polars.exceptions import PanicException

from tap_braze_currents.avro_container import AvroContainer
from tap_braze_currents.bulk_decoding import BulkBatch, bulk_decodable, rebuilt_container
from tap_braze_currents.event_types import JSON_OBJECT_FIELDS
from tap_braze_currents.line_format import FileLines

_FLOAT32 = struct.Struct("<f")
_json_decode = msgspec.json.decode
_encode_into = msgspec.json.Encoder(decimal_format="number").encode_into
# Decompressed Avro bytes decoded at once by the bulk path: bounds its memory; small batches
# also stay in the processor's cache (measured fastest at about 512 KiB).
BULK_BYTES = 512 << 10
# Fewer records than this are decoded one by one: below it polars' fixed cost per call is more
# than fastavro's 10-20 µs a record (measured crossover 15-30 records, docs/tap-performance.md).
BULK_MIN_RECORDS = 32
OUTPUT_CHUNK_BYTES = 1 << 20


@lru_cache(maxsize=65536)
def shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (3.140000104904175 -> 3.14)."""
    if not math.isfinite(value):
        return value
    for digits in (6, 7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _FLOAT32.unpack(_FLOAT32.pack(candidate))[0] == value:
                return candidate
        except OverflowError:
            continue
    return value


def _is_float32(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_float32(branch) for branch in avro_type)
    if isinstance(avro_type, dict):
        return avro_type.get("type") == "float"
    return avro_type == "float"


def _is_float32_array(avro_type: Any) -> bool:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return any(isinstance(b, dict) and b.get("type") == "array" and _is_float32(b["items"])
               for b in branches)


@dataclass(frozen=True)
class SchemaFacts:
    """What decoding needs to know of a writer schema, worked out once per schema."""

    float_fields: list[str]
    float_array_fields: list[str]
    json_fields: list[str]
    bulk_decodable: bool


@lru_cache(maxsize=1024)
def _schema_facts(fingerprint: str, event_type: str) -> SchemaFacts:
    """The facts of a writer schema, by its text in the file header (files share schemas)."""
    writer_schema = _json_decode(fingerprint)
    fields = writer_schema.get("fields", []) if isinstance(writer_schema, dict) else []
    names = {f["name"] for f in fields}
    return SchemaFacts(
        float_fields=[f["name"] for f in fields if _is_float32(f["type"])],
        float_array_fields=[f["name"] for f in fields if _is_float32_array(f["type"])],
        json_fields=[n for n in JSON_OBJECT_FIELDS.get(event_type, ()) if n in names],
        bulk_decodable=isinstance(writer_schema, dict) and bulk_decodable(writer_schema))


class AvroFile:
    """The records of one Currents Avro file, decoded lazily.

    After `records()` is exhausted, `count` holds the records yielded, `error` the exception
    that stopped decoding early (None for a complete file) and `invalid_json` the number of
    JSON-object fields kept as strings.
    """

    def __init__(self, source: BinaryIO, event_type: str, source_url: str):
        """Read the header; raises on a file that is not Avro at all."""
        self.event_type = event_type
        self.source_url = source_url
        self.count = 0
        self.invalid_json = 0
        self.error: Exception | None = None
        self._reader = AvroContainer(source)
        self._blocks: Iterable[Any] = self._reader
        self._load_error: Exception | None = None  # damage found by load(), reported later
        self.source: BinaryIO | None = None  # still open while the file streams (not loaded)
        self.loaded_records = 0
        self.fingerprint: str = self._reader.fingerprint
        facts = _schema_facts(self.fingerprint, event_type)
        self.facts = facts
        self._float_fields = facts.float_fields
        self._float_array_fields = facts.float_array_fields
        self._json_fields = facts.json_fields

    @property
    def writer_schema(self) -> dict[str, Any]:
        """The Avro schema the file was written with."""
        schema: dict[str, Any] = self._reader.writer_schema
        return schema

    def load(self) -> None:
        """Read (and decompress) every block now, so that the source can be closed.

        Damage found here is kept and reported (`error`) once the records before it are done.
        """
        blocks: list[Any] = []
        try:
            blocks.extend(self._reader)
        except Exception as exc:
            self._load_error = exc
        self._blocks = blocks
        self.loaded_records = sum(block.num_records for block in blocks)

    @property
    def loaded_blocks(self) -> list[Any]:
        """The blocks read by `load()`."""
        return self._blocks if isinstance(self._blocks, list) else []

    def finish_bulk(self, invalid_json: int) -> None:
        """The loaded blocks were written in bulk along with other files' (file_groups.py)."""
        self.count = self.loaded_records
        self.invalid_json += invalid_json
        self.error = self._load_error

    def decoded(self) -> Iterator[dict[str, Any]]:
        """Yield each record as decoded (Avro fields only, quirks fixed); stop at damage."""
        return self._decoded(self._blocks)

    def _decoded(self, blocks: Iterable[Any]) -> Iterator[dict[str, Any]]:
        floats, float_arrays, json_fields = (self._float_fields, self._float_array_fields,
                                             self._json_fields)
        fix = self._fix if (floats or float_arrays or json_fields) else None
        try:
            for block in blocks:
                for record in block:
                    if fix is not None:
                        fix(record, floats, float_arrays, json_fields)
                    self.count += 1
                    yield record
        except Exception as exc:
            self.error = exc
        self.error = self.error or self._load_error

    def record_lines(self, lines: FileLines) -> Iterator[bytes]:
        """Chunks of whole lines, each record written as `lines` says (line_format.py).

        `count` includes every line of a chunk once it is yielded. Stops at damage, like
        `decoded()`.
        """
        if not self.facts.bulk_decodable:
            yield from self._encoded_lines(self.decoded(), lines)
            return
        batch: list[Any] = []
        size = nbytes = 0
        blocks: Iterable[Any] = self._blocks  # fastavro Blocks, their data decompressed
        try:
            for block in blocks:
                batch.append(block)
                size += block.num_records
                nbytes += block.bytes_.getbuffer().nbytes
                if nbytes >= BULK_BYTES:
                    yield from self._bulk_lines(batch, size, lines)
                    if self.error is not None:
                        return
                    batch, size, nbytes = [], 0, 0
        except Exception as exc:
            self.error = exc
        yield from self._bulk_lines(batch, size, lines)
        self.error = self.error or self._load_error

    def _bulk_lines(self, blocks: list[Any], size: int, lines: FileLines) -> Iterator[bytes]:
        if not blocks:
            return
        if size < BULK_MIN_RECORDS:  # polars' fixed cost is more than decoding them one by one
            yield from self._encoded_lines(self._decoded(blocks), lines)
            return
        try:
            bulk = BulkBatch(rebuilt_container(self.fingerprint, blocks), size,
                             self._json_fields)
        except (Exception, PanicException):
            # polars cannot decode these blocks: the record path finds where the damage is.
            error, self.error = self.error, None
            yield from self._encoded_lines(self._decoded(blocks), lines)
            self.error = self.error or error
            return
        [(text, invalid_json)] = bulk.segments([lines], [size])
        self.count += size
        self.invalid_json += invalid_json
        yield text

    @staticmethod
    def _encoded_lines(records: Iterable[dict[str, Any]], lines: FileLines) -> Iterator[bytes]:
        prefix, tail = lines.prefix(), lines.tail()
        buffer = bytearray()
        for record in records:
            buffer += prefix
            start = len(buffer)
            _encode_into(record, buffer, start)
            buffer[start] = 44  # the record's "{" becomes ","
            buffer += tail
            if len(buffer) >= OUTPUT_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield each record with `event_type` and `_sdc_source_file` added; stop at damage."""
        event_type, source_url = self.event_type, self.source_url
        for record in self.decoded():
            record["event_type"] = event_type
            record["_sdc_source_file"] = source_url
            yield record

    def _fix(self, record: dict[str, Any], floats: list[str], float_arrays: list[str],
             json_fields: list[str]) -> None:
        for name in floats:
            value = record.get(name)
            if value is not None:
                record[name] = shortest_float32(value)
        for name in float_arrays:
            values = record.get(name)
            if values:
                record[name] = [None if v is None else shortest_float32(v) for v in values]
        for name in json_fields:
            text = record.get(name)
            if isinstance(text, str):
                try:
                    parsed = _json_decode(text)
                except msgspec.DecodeError:
                    parsed = None
                if isinstance(parsed, dict):
                    record[name] = parsed
                else:
                    self.invalid_json += 1
