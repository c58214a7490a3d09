"""What each output line holds besides a record's own Avro fields.

A RECORD line is `{"type":"RECORD","stream":…,"time_extracted":…,"record":{shared…, fields…}}`;
a batch-file line is the record alone, `{shared…, fields…}`. The shared fields (event type,
source file) open every record of a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


@dataclass(frozen=True)
class FileLines:
    """The lines of one file's records: the message around each record and its shared fields."""

    message: dict[str, str]  # fields of the RECORD message before "record"; {}: the record alone
    shared: dict[str, str]   # fields that open every record of the file

    @property
    def closing(self) -> bytes:
        """What follows a record's last field: its `}`, and the message's when there is one."""
        return b"}}" if self.message else b"}"

    def prefix(self) -> bytes:
        """A line up to its record's shared fields, left open for the record's own fields."""
        if self.message:
            return msgspec.json.encode({**self.message, "record": self.shared})[:-2]
        return msgspec.json.encode(self.shared)[:-1]

    def tail(self) -> bytes:
        """What ends a line after the record's own `}`."""
        return b"}\n" if self.message else b"\n"
