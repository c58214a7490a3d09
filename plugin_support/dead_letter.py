"""The dead-letter file: one JSON line per record that could not be imported, with the reason.

The reason and message (often copied from a service's answer) go through the redaction; the
record is written as it came. `unwritable_reason` lets a target refuse the setting at start.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from plugin_support import redacted_output
from plugin_support.redaction import Redactor


def _fallback(value: Any) -> str:
    return str(value)


class DeadLetterFile:
    """Appends dead letters to a newline-delimited JSON file, opened on first use."""

    def __init__(self, path: str, redactor: Redactor | None = None):
        """Dead letters go to `path` (folders are created).

        Reasons and messages are masked by `redactor` (default: the one installed when the
        first dead letter is written).
        """
        self.path = Path(path)
        self._redactor = redactor
        self._redact: Callable[[str], str] | None = None
        self.count = 0
        self._handle: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._encode = msgspec.json.Encoder(enc_hook=_fallback, decimal_format="number").encode

    def write(self, stream: str, record: dict[str, Any], reason: str,
              field: str | None = None, message: str | None = None) -> None:
        """Write one dead letter."""
        redact = self._redact
        if redact is None:  # reasons and messages repeat: each is redacted once
            redact = self._redact = functools.lru_cache(maxsize=4096)(
                self._redactor or redacted_output.installed())
        line = {"stream": stream, "reason": redact(reason), "field": field,
                "message": None if message is None else redact(message), "record": record}
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


def unwritable_reason(path: str) -> str | None:
    """Why dead letters could not be written to `path`, or None if they could.

    Nothing is created: the file, or the nearest folder that exists above it, is checked.
    """
    target = Path(path).absolute()
    if target.is_dir():
        return f"{path} is a folder"
    if target.exists():
        return None if os.access(target, os.W_OK) else f"{path} is not writable"
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return None
