"""BATCH mode: records written to JSON Lines batch files, which BATCH messages then announce.

With the SDK's `batch_config` set, the tap writes records (the record objects alone, one per
line, as the Singer SDK's batch format has them) to files under `batch_config.storage.root`
and emits a BATCH message per file instead of a RECORD message per record. Meltano then relays
one line per batch file rather than one per event. A batch file holds the records of several
Currents files, up to about `batch_config.batch_size` records (it is closed at the first chunk
boundary past that) or until the next STATE, whichever comes first: a STATE only follows the
BATCH messages of the records it covers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import IO, Any

from isal import igzip

from tap_braze_currents.avro_decoding import AvroFile
from tap_braze_currents.file_groups import FileGroup
from tap_braze_currents.line_format import FileLines

# Longest stream name kept whole in a batch file name (file systems allow 255 bytes a name; the
# rest of the name takes about 70).
MAX_NAME_PART = 100


def file_name_part(stream_name: str) -> str:
    """A stream name as it goes into a file name: long ones cut, with a digest of the whole."""
    if len(stream_name.encode()) <= MAX_NAME_PART:
        return stream_name
    digest = hashlib.blake2b(stream_name.encode(), digest_size=6).hexdigest()
    return f"{stream_name.encode()[:MAX_NAME_PART - 13].decode(errors='ignore')}-{digest}"


class BatchFileWriter:
    """Batch files of one stream for one run; `write()` yields a manifest per file closed."""

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
        self._stem = (f"{self._storage.prefix or ''}{tap_name}--{file_name_part(stream_name)}-"
                      f"{uuid.uuid4().hex}")
        self._files = 0
        self._open: tuple[ExitStack, IO[bytes], str] | None = None
        self._records = 0  # in the open file

    def write(self, group: FileGroup,
              lines_of: Callable[[AvroFile], FileLines]) -> Iterator[list[str]]:
        """Write the records of a group of Currents files; yield the manifest of each file closed.

        The open batch file goes on across calls until it holds `batch_size` records or
        `close()` is called (before a STATE: the BATCH message must come first).
        `lines_of(file)` gives the fields every record of a file shares (its `message` is {}).
        """
        for _, chunk in group.lines(lines_of):
            out = self._out()
            out.write(chunk)
            self._records += chunk.count(b"\n")  # JSON strings never hold a raw newline
            if self._records >= self._batch_size:
                manifest = self.close()
                if manifest is not None:
                    yield manifest

    def _out(self) -> IO[bytes]:
        if self._open is None:
            self._files += 1
            name = f"{self._stem}-{self._files}.jsonl" + (".gz" if self._gzip else "")
            stack = ExitStack()
            out: IO[bytes] = stack.enter_context(self._storage.open(name, "wb"))
            if self._gzip:
                out = stack.enter_context(
                    igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=1))  # type: ignore[arg-type]
            self._open = (stack, out, name)
            self._records = 0
        return self._open[1]

    def close(self) -> list[str] | None:
        """Close the open batch file; its manifest, or None when none is open."""
        if self._open is None:
            return None
        stack, _, name = self._open
        self._open = None
        stack.close()
        return [self._storage.get_url(name)]
