"""Whole Avro blocks -> output lines in bulk, decoded and JSON-encoded by polars (Rust).

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
from itertools import chain, repeat
from typing import Any

import fastavro
import msgspec
import polars as pl
from fastavro.io.binary_encoder import BinaryEncoder

from tap_braze_currents.line_format import FileLines

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
    """The records of a run of blocks as output lines; `invalid_json` counts kept strings."""

    def __init__(self, container: bytes, expected: int, json_fields: Iterable[str]):
        """Decode now; raises when polars cannot decode the batch or miscounts it."""
        frame = pl.read_avro(io.BytesIO(container))
        if frame.height != expected:
            msg = f"decoded {frame.height} records of {expected}"
            raise ValueError(msg)
        self.invalid_json = 0
        self._json_texts = {name: frame.get_column(name).to_list() for name in json_fields}
        self._frame = frame.drop(list(self._json_texts)) if self._json_texts else frame
        if self._frame.width == 0:  # literals alone would make one row, not `expected`
            msg = "no plain fields to write"
            raise ValueError(msg)

    def segments(self, files: Sequence[FileLines],
                 counts: Sequence[int]) -> list[tuple[bytes, int]]:
        """The lines of consecutive runs of records, `counts[i]` of them written as `files[i]`.

        polars writes whole lines, message and shared fields included, so no line is cut or
        pasted in Python unless it carries a JSON field. Returns (lines, JSON values kept as
        strings) per run.
        """
        written = io.BytesIO()
        self._framed(files, counts).write_ndjson(written)
        ndjson = written.getvalue()
        if len(files) == 1 and not self._json_texts:
            return [(ndjson, 0)]
        lines = ndjson.split(b"\n")
        result = []
        start = 0
        for file, count in zip(files, counts, strict=True):
            before = self.invalid_json
            if not count:
                text = b""
            elif self._json_texts:
                text = self._json_rows(lines, start, count, file.closing)
            else:
                text = b"\n".join(lines[start:start + count]) + b"\n"
            result.append((text, self.invalid_json - before))
            start += count
        return result

    def _framed(self, files: Sequence[FileLines], counts: Sequence[int]) -> pl.DataFrame:
        """The frame with each file's message and shared fields as columns around its records."""

        def column(name: str, values: list[str]) -> pl.Expr:
            if all(value == values[0] for value in values):
                return pl.lit(values[0], dtype=pl.String).alias(name)
            each = chain.from_iterable(repeat(v, n) for v, n in zip(values, counts, strict=True))
            return pl.lit(pl.Series(name, list(each), dtype=pl.String))

        first = files[0]
        shared = [column(name, [f.shared[name] for f in files]) for name in first.shared]
        if not first.message:
            return self._frame.select(*shared, pl.all())
        message = [column(name, [f.message[name] for f in files]) for name in first.message]
        return self._frame.select(*message, pl.struct(*shared, pl.all()).alias("record"))

    def _json_rows(self, lines: list[bytes], start: int, count: int, closing: bytes) -> bytes:
        columns = [(b',"' + name.encode() + b'":', texts)
                   for name, texts in self._json_texts.items()]
        out = bytearray()
        cut = -len(closing)
        end = closing + b"\n"
        for index in range(start, start + count):
            out += lines[index][:cut]
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
