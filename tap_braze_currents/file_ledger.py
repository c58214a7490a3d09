"""Which files a stream has read, kept in the stream's Singer state and bounded by the lookback.

State of one stream:

    {"newest_hour": "2025-04-01-17",
     "read": {"2025-04-01-16": ["3f2a9c0d1e4b5a67", ...], "2025-04-01-17": [...]}}

`read` holds a 16-hex-digit digest of (path, size + etag/mtime) per file read, only for the
hours inside the window [newest_hour - lookback_hours, ...]; older hours are dropped, so the
state stays the same size however many files were ever read. A key rewritten with new content
has a new digest and is read again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tap_braze_currents.layout import shift_hour
from tap_braze_currents.storage import CurrentsFile


def file_digest(file: CurrentsFile) -> str:
    """A short digest of a file's key and content version."""
    data = f"{file.path}\n{file.version}".encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class FileLedger:
    """The files one stream has read, inside its lookback window."""

    def __init__(self, state: dict[str, Any], lookback_hours: int):
        """Use (and update in place) one stream's state dict."""
        self._state = state
        self._lookback = lookback_hours
        self._read: dict[str, list[str]] = state.get("read", {})
        self._sets = {hour: set(digests) for hour, digests in self._read.items()}

    @property
    def newest_hour(self) -> str | None:
        """The newest `date=` hour a file was read from."""
        newest: str | None = self._state.get("newest_hour")
        return newest

    def window_start(self, start_hour: str | None) -> str | None:
        """The oldest hour to list: the lookback window once anything was read, else start_hour."""
        if self.newest_hour is None:
            return start_hour
        window = shift_hour(self.newest_hour, -self._lookback)
        return max(window, start_hour) if start_hour else window

    def is_read(self, file: CurrentsFile) -> bool:
        """Whether this file, at this content version, was read already."""
        return file_digest(file) in self._sets.get(file.hour, ())

    def mark_read(self, file: CurrentsFile) -> None:
        """Record a file as read, advance the newest hour and drop hours out of the window."""
        digest = file_digest(file)
        seen = self._sets.setdefault(file.hour, set())
        if digest not in seen:
            seen.add(digest)
            self._read.setdefault(file.hour, []).append(digest)
            self._state["read"] = self._read
        if self.newest_hour is None or file.hour > self.newest_hour:
            self._state["newest_hour"] = file.hour
        cutoff = shift_hour(self._state["newest_hour"], -self._lookback)
        for hour in [h for h in self._read if h < cutoff]:
            del self._read[hour]
            self._sets.pop(hour, None)
