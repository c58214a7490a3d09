"""Small Avro files decoded together: one polars call for a run of files of one writer schema.

Braze writes a file per event type about every 5 minutes, most holding a few to a few hundred
events; polars' fixed cost per call (about 0.7 ms) is then most of a file's cost. Files of at most
`SMALL_FILE_BYTES` are loaded whole (their source closed at once) and gathered while they share a
writer schema, up to `GROUP_BYTES` of files; a group is decoded in one call and its lines cut back
per file, each file with its own shared fields (`_sdc_source_file`). A larger file is a group of
its own and is decoded as it streams, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from polars.exceptions import PanicException

from tap_braze_currents.avro_decoding import BULK_MIN_RECORDS, AvroFile
from tap_braze_currents.bulk_decoding import BulkBatch, rebuilt_container
from tap_braze_currents.line_format import FileLines
from tap_braze_currents.storage import CurrentsFile

SMALL_FILE_BYTES = 256 << 10  # on storage (compressed)
GROUP_BYTES = 512 << 10       # on storage, of all the files of a group
GROUP_FILES = 512


@dataclass
class FileGroup:
    """Files whose records are printed together; `members` pairs each file with its decoder."""

    members: list[tuple[CurrentsFile, AvroFile]] = field(default_factory=list)
    size: int = 0
    largest: int = 0

    @property
    def small(self) -> bool:
        """Whether the group holds loaded small files (else: one file, streamed)."""
        return bool(self.members) and self.largest <= SMALL_FILE_BYTES

    def takes(self, file: CurrentsFile, avro: AvroFile) -> bool:
        """Whether a file can join (an empty group takes any file)."""
        if not self.members:
            return True
        return (file.size <= SMALL_FILE_BYTES and self.small
                and self.size + file.size <= GROUP_BYTES and len(self.members) < GROUP_FILES
                and avro.fingerprint == self.members[0][1].fingerprint)

    def add(self, file: CurrentsFile, avro: AvroFile) -> None:
        """Add a file (a small one should have been loaded)."""
        self.members.append((file, avro))
        self.size += file.size
        self.largest = max(self.largest, file.size)

    @property
    def full(self) -> bool:
        """Whether no further file should wait for this group."""
        return not self.small or self.size >= GROUP_BYTES or len(self.members) >= GROUP_FILES

    def lines(self, lines_of: Callable[[AvroFile], FileLines]) -> Iterator[tuple[AvroFile, bytes]]:
        """(file, chunk of its lines) in file order, each file's written as `lines_of(file)` says.

        A file's `count`, `error` and `invalid_json` are final once its last chunk is out.
        """
        avros = [avro for _, avro in self.members]
        loaded = sum(avro.loaded_records for avro in avros)
        first = avros[0]
        if (len(avros) > 1 and loaded >= BULK_MIN_RECORDS and first.facts.bulk_decodable):
            try:
                blocks = [block for avro in avros for block in avro.loaded_blocks]
                bulk = BulkBatch(rebuilt_container(first.fingerprint, blocks), loaded,
                                 first.facts.json_fields)
                segments = bulk.segments([lines_of(avro) for avro in avros],
                                         [avro.loaded_records for avro in avros])
            except (Exception, PanicException):
                segments = None  # each file on its own finds the damage
            if segments is not None:
                for avro, (text, invalid_json) in zip(avros, segments, strict=True):
                    avro.finish_bulk(invalid_json)
                    if text:
                        yield avro, text
                return
        for avro in avros:
            for chunk in avro.record_lines(lines_of(avro)):
                yield avro, chunk
