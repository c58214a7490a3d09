"""Which files a stream has read, kept in the stream's Singer state and bounded by the lookback.

State of one stream:

    {"newest_hour": "2025-04-01-17",
     "read": {"2025-04-01-16": "Pyqc0R5L...", "2025-04-01-17": "..."}}

`read` holds, per `date=` hour, the digests of the files read from it: a 6-byte digest of
(path, size + etag/mtime) per file, concatenated and base64url-encoded (8 characters a file),
only for the hours inside the window [newest_hour - lookback_hours, ...]; older hours are
dropped, so the state stays the same size however many files were ever read. A key rewritten
with new content has a new digest and is read again. States written by earlier versions (a list
of 16-hex-digit digests per hour) are read and rewritten in this form.

Six bytes keep the state small enough to be printed at every checkpoint (a STATE line holds every
stream's window): the chance that a new file's digest equals one of the n already read in its
hour is n / 2**48 (about 4e-14 for 12 files an hour).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tap_braze_currents.layout import shift_hour
from tap_braze_currents.storage import CurrentsFile

DIGEST_BYTES = 6


def file_digest(file: CurrentsFile) -> bytes:
    """A short digest of a file's key and content version."""
    data = f"{file.path}\n{file.version}".encode()
    return hashlib.blake2b(data, digest_size=8).digest()[:DIGEST_BYTES]


def unpack_digests(value: str | list[str]) -> list[bytes]:
    """An hour's digests from the state: packed base64url, or the older list of hex digests.

    ValueError (or TypeError) when the value is neither.
    """
    if isinstance(value, list):
        return [bytes.fromhex(digest)[:DIGEST_BYTES] for digest in value]
    packed = base64.b64decode(value, altchars=b"-_", validate=True)
    return [packed[i:i + DIGEST_BYTES] for i in range(0, len(packed), DIGEST_BYTES)]


def _pack(digests: list[bytes]) -> str:
    return base64.urlsafe_b64encode(b"".join(digests)).decode("ascii")


class FileLedger:
    """The files one stream has read, inside its lookback window."""

    def __init__(self, state: dict[str, Any], lookback_hours: int):
        """Use (and update in place) one stream's state dict."""
        self._state = state
        self._lookback = lookback_hours
        newest = state.get("newest_hour")
        cutoff = shift_hour(newest, -lookback_hours) if newest else ""
        read = state.get("read", {})
        self._digests = {hour: unpack_digests(value) for hour, value in read.items()
                         if hour >= cutoff}  # a smaller lookback_hours than last run's
        self._sets = {hour: set(digests) for hour, digests in self._digests.items()}
        self._read: dict[str, str] = {hour: _pack(d) for hour, d in self._digests.items()}
        if "read" in state:
            state["read"] = self._read

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
        """Record a file as read, advance the newest hour and drop hours out of the window.

        Costs the same however many hours the window holds: only the file's own hour is
        re-encoded, and hours are dropped only when the newest hour moves.
        """
        digest = file_digest(file)
        seen = self._sets.setdefault(file.hour, set())
        if digest not in seen:
            seen.add(digest)
            digests = self._digests.setdefault(file.hour, [])
            digests.append(digest)
            self._read[file.hour] = _pack(digests)
            self._state["read"] = self._read
        if self.newest_hour is None or file.hour > self.newest_hour:
            self._state["newest_hour"] = file.hour
            cutoff = shift_hour(file.hour, -self._lookback)
            for hour in [h for h in self._read if h < cutoff]:
                del self._read[hour]
                del self._digests[hour]
                self._sets.pop(hour, None)
