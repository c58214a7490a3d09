"""BATCH mode: records written to JSON Lines batch files, which BATCH messages then announce.

With the SDK's `batch_config` set, the tap writes records (the record objects alone, one per
line, as the Singer SDK's batch format has them) to files under `batch_config.storage.root`
and emits a BATCH message per file instead of a RECORD message per record. Meltano then relays
one line per file rather than one per event. A Currents file's records go into one or more
batch files of about `batch_config.batch_size` records each (a file is closed at the first
512 KiB chunk boundary past it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

from isal import igzip

from tap_braze_currents.avro_decoding import AvroFile

BATCH_LINE_TAIL = b"\n"  # a batch line ends with its record


class BatchFileWriter:
    """Batch files of one stream for one run; `write()` yields a manifest per file written."""

    def __init__(self, batch_config: Any, tap_name: str, stream_name: str):
        """Files named `<prefix><tap>--<stream>-<run id>-<n>.jsonl[.gz]` under the root."""
        encoding = batch_config.encoding
        if encoding.format != "jsonl":
            msg = (f"batch_config.encoding.format {encoding.format!r} is not supported by "
                   "tap-braze-currents; use 'jsonl'")
            raise ValueError(msg)
        if encoding.compression not in (None, "none", "gzip"):
            msg = (f"batch_config.encoding.compression {encoding.compression!r} is not "
                   "supported; use 'gzip' or 'none'")
            raise ValueError(msg)
        self._gzip = encoding.compression == "gzip"
        self._storage = batch_config.storage
        self._batch_size = max(1, int(batch_config.batch_size))
        self._stem = (f"{self._storage.prefix or ''}{tap_name}--{stream_name}-"
                      f"{uuid.uuid4().hex}")
        self._files = 0

    def write(self, avro: AvroFile, prefix: bytes) -> Iterator[list[str]]:
        """Write the records of one Currents file; yield the manifest of each file closed.

        `prefix` opens each line and its record object (fields every record shares).
        """
        chunks = avro.record_lines(prefix, BATCH_LINE_TAIL)
        closed = 0  # records in the files already closed
        chunk = next(chunks, None)
        while chunk is not None:
            self._files += 1
            name = f"{self._stem}-{self._files}.jsonl" + (".gz" if self._gzip else "")
            with ExitStack() as stack:
                out: IO[bytes] = stack.enter_context(self._storage.open(name, "wb"))
                if self._gzip:
                    out = stack.enter_context(
                        igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=1))  # type: ignore[arg-type]
                while chunk is not None:
                    out.write(chunk)
                    written = avro.count  # counts every chunk yielded so far
                    chunk = next(chunks, None)
                    if written - closed >= self._batch_size:
                        break
            closed = written
            yield [self._storage.get_url(name)]
