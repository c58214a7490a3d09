"""When the tap prints STATE: amortised checkpoints instead of one after every file.

A STATE line holds every stream's read files for the whole lookback window (file_ledger.py), so
printing one after each small file made STATE most of what the tap printed. Streams call
`file_done()` after a file's records (or the BATCH messages holding them) were printed; a STATE
goes out when `interval_seconds` have passed since the last one (and, in RECORD mode, once the
records printed since are 100 times its size), and `write()` prints one at once (end of a
stream, a stop signal). A run killed between checkpoints re-reads at most what it read
since the last STATE; nothing is skipped, since a file enters the state only once its records
were printed.

STATE is encoded here with msgspec straight from the tap's state dict: the SDK's state writer
deep-copies the whole state and compares it with the last one on every write, which costs as
much as the state is large.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
# An interval STATE waits until the records printed since the last one are this many times its
# size: interval STATEs stay under 1% of the bytes printed (the STATEs at the ends of streams
# and on a stop are always written).
BYTES_PER_STATE_BYTE = 100


class Checkpoints:
    """The tap's STATE messages, written at most every `interval_seconds` unless asked now."""

    def __init__(self, tap_state: Mapping[str, Any], interval_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        """Checkpoint `tap_state` (the dict the streams update in place)."""
        self._state = tap_state
        self._interval = interval_seconds
        self._clock = clock
        self._last = clock()
        self.pending = False  # the state changed since the last STATE
        self.written = 0
        self._last_size = 0
        self._printed: int | None = None  # record bytes since the last STATE, where counted

    def due(self) -> bool:
        """Whether the state changed and the interval has passed since the last STATE.

        Where the records printed are counted (`printed()`), also only once they are
        `BYTES_PER_STATE_BYTE` times the last STATE's size: on slow storage, where records come
        slowly, interval STATEs stay a small share of the output all the same.
        """
        if not self.pending or self._clock() - self._last < self._interval:
            return False
        return self._printed is None or self._printed >= BYTES_PER_STATE_BYTE * self._last_size

    def printed(self, nbytes: int) -> None:
        """Records of `nbytes` were printed (RECORD mode counts them)."""
        self._printed = (self._printed or 0) + nbytes

    def changed(self) -> None:
        """The state changed: a file's records were printed and the file marked read."""
        self.pending = True

    def _without_empty_bookmarks(self) -> Mapping[str, Any]:
        """The state without the `{}` bookmarks of streams that read nothing.

        The same state (a missing bookmark is an empty one), without what every STATE would
        otherwise repeat.
        """
        bookmarks = self._state.get("bookmarks")
        if not isinstance(bookmarks, dict):
            return self._state
        return {**self._state, "bookmarks": {name: value for name, value in bookmarks.items()
                                             if value != {}}}

    def write(self, *, even_unchanged: bool = False) -> None:
        """Print a STATE now if the state changed since the last one (or `even_unchanged`)."""
        if not (self.pending or even_unchanged):
            return
        out = sys.stdout.buffer
        line = b'{"type":"STATE","value":' + _encode(self._without_empty_bookmarks()) + b"}\n"
        out.write(line)
        out.flush()
        self._last_size = len(line)
        if self._printed is not None:
            self._printed = 0
        self._last = self._clock()
        self.pending = False
        self.written += 1
