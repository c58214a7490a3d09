"""The dead-letter file: one JSON line per record that could not be imported, with the reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO, Any

import msgspec


def _fallback(value: Any) -> str:
    return str(value)


class DeadLetterFile:
    """Appends dead letters to a newline-delimited JSON file, opened on first use."""

    def __init__(self, path: str):
        """Dead letters go to `path` (folders are created)."""
        self.path = Path(path)
        self.count = 0
        self._handle: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._encode = msgspec.json.Encoder(enc_hook=_fallback, decimal_format="number").encode

    def write(self, stream: str, record: dict[str, Any], reason: str,
              field: str | None = None, message: str | None = None) -> None:
        """Write one dead letter."""
        line = {"stream": stream, "reason": reason, "field": field, "message": message,
                "record": record}
        data = self._encode(line) + b"\n"
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # unbuffered: one write per line, so worker processes can share the file
                self._handle = self.path.open("ab", buffering=0)
            self._handle.write(data)
            self.count += 1

    @property
    def written_path(self) -> str | None:
        """The file's path once a dead letter was written to it (for the summary)."""
        return str(self.path) if self.count else None

    def flush(self) -> None:
        """Push written lines to disk (before a state that covers them is emitted)."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()

    def close(self) -> None:
        """Flush and close."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
