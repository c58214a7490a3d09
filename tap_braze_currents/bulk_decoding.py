"""Whole Avro blocks -> Singer RECORD lines in bulk, decoded and JSON-encoded by polars (Rust).

Decoding record by record in Python costs about 8 µs a record; polars decodes a batch of blocks
into columns and writes them as JSON lines at a fraction of that. It is used only where its output
is the same as the record-by-record path's: writer schemas made of plain primitives, nullable
primitives and arrays of them (every Currents schema), with float32 written as the shortest decimal
that round-trips and NaN as null, as the record path does. Anything else, and any batch polars
cannot decode, goes back to the record path, which knows how to stop at the damage.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import fastavro
import msgspec
import polars as pl
from fastavro.io.binary_encoder import BinaryEncoder

_PLAIN = frozenset({"null", "boolean", "int", "long", "float", "double", "string"})
_SYNC = b"braze-currents!!"  # sync marker of the rebuilt container; any 16 bytes do
_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


def _plain(avro_type: Any, *, arrays: bool = True) -> bool:
    if isinstance(avro_type, str):
        return avro_type in _PLAIN
    if isinstance(avro_type, list):
        return sum(branch != "null" for branch in avro_type) == 1 and all(
            _plain(branch, arrays=arrays) for branch in avro_type)
    if isinstance(avro_type, dict) and "logicalType" not in avro_type:
        kind = avro_type.get("type")
        if kind == "array":
            return arrays and _plain(avro_type.get("items"), arrays=False)
        return isinstance(kind, str) and kind in _PLAIN
    return False


def bulk_decodable(writer_schema: dict[str, Any]) -> bool:
    """Whether polars decodes files of this writer schema exactly as the record path does."""
    fields = writer_schema.get("fields") or []
    return (writer_schema.get("type") == "record" and bool(fields)
            and all(_plain(field["type"]) for field in fields))


@lru_cache(maxsize=256)
def _container_header(fingerprint: str) -> bytes:
    """The header of an uncompressed container of a writer schema (given as its JSON text)."""
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(_json_decode(fingerprint)), [], codec="null",
                    sync_marker=_SYNC)
    return out.getvalue()


def rebuilt_container(fingerprint: str, blocks: Sequence[Any]) -> bytes:
    """One uncompressed Avro container holding already decompressed fastavro blocks.

    `fingerprint` is the writer schema's JSON text, as the files' headers hold it.
    """
    out = io.BytesIO()
    out.write(_container_header(fingerprint))
    encoder = BinaryEncoder(out)
    for block in blocks:
        data = block.bytes_.getvalue()
        encoder.write_long(block.num_records)
        encoder.write_long(len(data))
        out.write(data)
        out.write(_SYNC)
    return out.getvalue()


class BulkBatch:
    """The records of a run of blocks as RECORD lines; `invalid_json` counts kept strings."""

    def __init__(self, container: bytes, expected: int, json_fields: Iterable[str]):
        """Decode now; raises when polars cannot decode the batch or miscounts it."""
        frame = pl.read_avro(io.BytesIO(container))
        if frame.height != expected:
            msg = f"decoded {frame.height} records of {expected}"
            raise ValueError(msg)
        self.invalid_json = 0
        self._json_texts = {name: frame.get_column(name).to_list() for name in json_fields}
        self._frame = frame.drop(list(self._json_texts)) if self._json_texts else frame
        if self._frame.width == 0:
            msg = "no plain fields to write"
            raise ValueError(msg)

    def lines(self, prefix: bytes, tail: bytes) -> bytes:
        """Each record as `prefix` + `,` + its fields + `}` + `tail`.

        `prefix` opens the line and the record object (it may carry fields of its own);
        `tail` closes the line after the record's closing brace.
        """
        written = io.BytesIO()
        self._frame.write_ndjson(written)
        ndjson = written.getvalue()
        if self._json_texts:
            return self._lines_with_json(ndjson, prefix, tail)
        # Strings never hold a raw newline in JSON, so "\n{" only ever starts a record.
        body = ndjson[1:-1].replace(b"\n{", tail + prefix + b",")
        return prefix + b"," + body + tail

    def segment_lines(self, prefixes: Sequence[bytes], counts: Sequence[int],
                      tail: bytes) -> list[tuple[bytes, int]]:
        """The records as consecutive segments (one per file of a group), each with its prefix.

        Returns (lines, JSON values kept as strings) per segment.
        """
        written = io.BytesIO()
        self._frame.write_ndjson(written)
        lines = written.getvalue().split(b"\n")
        result = []
        start = 0
        for prefix, count in zip(prefixes, counts, strict=True):
            before = self.invalid_json
            if self._json_texts:
                text = self._json_rows(lines, start, count, prefix, tail)
            else:
                separator = tail + prefix + b","
                text = (prefix + b"," + separator.join(line[1:] for line in
                                                       lines[start:start + count]) + tail)
            result.append((text if count else b"", self.invalid_json - before))
            start += count
        return result

    def _lines_with_json(self, ndjson: bytes, prefix: bytes, tail: bytes) -> bytes:
        lines = ndjson.splitlines()
        return self._json_rows(lines, 0, len(lines), prefix, tail)

    def _json_rows(self, lines: list[bytes], start: int, count: int, prefix: bytes,
                   tail: bytes) -> bytes:
        columns = [(b',"' + name.encode() + b'":', texts)
                   for name, texts in self._json_texts.items()]
        out = bytearray()
        end = b"}" + tail
        for index in range(start, start + count):
            out += prefix
            out += b","
            out += lines[index][1:-1]
            for key, texts in columns:
                out += key
                out += self._json_object(texts[index])
            out += end
        return bytes(out)

    def _json_object(self, text: str | None) -> bytes:
        if text is None:
            return b"null"
        try:
            parsed = _json_decode(text)
        except msgspec.DecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return _json_encode(parsed)
        self.invalid_json += 1
        return _json_encode(text)
