"""Avro object container files -> header and blocks, each writer schema parsed once.

fastavro's `block_reader` parses the writer schema of every file it opens (`json.loads` and
`parse_schema`, about 0.2 ms), most of what a small Currents file costs; the files of one event
type share a handful of schemas. This reads the header with fastavro's own decoder and the
header schema of the Avro specification, keeps parsed writer schemas by their text (the
fingerprint), and reads blocks with fastavro's codecs (`fastavro._read.BLOCK_READERS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any, BinaryIO

import fastavro
from fastavro._read import BLOCK_READERS

MAGIC = b"Obj\x01"
# The file header, as the Avro specification declares it.
HEADER_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "org.apache.avro.file.Header",
    "fields": [{"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
               {"name": "meta", "type": {"type": "map", "values": "bytes"}},
               {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}}]})
LONG_SCHEMA = fastavro.parse_schema("long")
_read: Callable[..., Any] = fastavro.schemaless_reader


@lru_cache(maxsize=1024)
def parsed_writer_schema(fingerprint: str) -> Any:
    """A writer schema parsed by fastavro, from its JSON text in a file header."""
    return fastavro.parse_schema(json.loads(fingerprint), _write_hint=False, _force=True)


@dataclass
class Block:
    """One block of records, decompressed; iterating decodes its records."""

    num_records: int
    bytes_: BytesIO
    schema: Any

    def __iter__(self) -> Iterator[Any]:
        """Each record, decoded."""
        data, schema = self.bytes_, self.schema
        for _ in range(self.num_records):
            yield _read(data, schema, None)


class AvroContainer:
    """The header of an Avro container file; iterating reads its blocks (raises at damage)."""

    def __init__(self, source: BinaryIO):
        """Read the header; raises ValueError on a file that is not Avro."""
        self._source = source
        try:
            header = _read(source, HEADER_SCHEMA, None)
        except Exception:
            msg = "cannot read header - is it an avro file?"
            raise ValueError(msg) from None
        if header["magic"] != MAGIC:
            msg = "not an Avro object container file (its first bytes are not Obj\\x01)"
            raise ValueError(msg)
        meta = header["meta"]
        self.fingerprint: str = meta["avro.schema"].decode()
        self.codec: str = meta.get("avro.codec", b"null").decode() or "null"
        self.writer_schema = parsed_writer_schema(self.fingerprint)
        self._sync: bytes = header["sync"]
        self._read_block = BLOCK_READERS.get(self.codec)
        if self._read_block is None:
            msg = f"Unrecognized codec: {self.codec}"
            raise ValueError(msg)

    def __iter__(self) -> Iterator[Block]:
        """The blocks, in order."""
        source, read_block, schema = self._source, self._read_block, self.writer_schema
        while source.read(1):
            source.seek(-1, 1)
            count = _read(source, LONG_SCHEMA, None)
            data = read_block(source)  # type: ignore[misc]
            if source.read(16) != self._sync:
                msg = "expected sync marker not found"
                raise ValueError(msg)
            yield Block(count, data, schema)
