"""Standard output whose every write is complete, even when a signal interrupts it.

With `PYTHONUNBUFFERED=1` (set in most Python container images) `sys.stdout.buffer` is the raw
file, and a write into a full pipe that a signal interrupts returns a short count: the rest of
the chunk is dropped unless the caller loops. Neither the Singer SDK nor a plain
`sys.stdout.buffer.write(...)` loops, so a stop signal could cut a line in two or, cut on a line
boundary, leave a STATE covering records that were never written. A buffered writer loops on
short writes until all is written; putting one back makes every write complete.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import Message


def complete_stdout_writes() -> None:
    """Make `sys.stdout` write whole chunks: a buffered writer where it is the raw file.

    Does nothing when standard output is already buffered (the default) or has been replaced
    (a test's capture). Call once, before anything is written.
    """
    stdout = sys.__stdout__
    raw = getattr(stdout, "buffer", None)
    if stdout is None or sys.stdout is not stdout or not isinstance(raw, io.RawIOBase):
        return
    stdout.flush()
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=stdout.encoding,
                                  errors=stdout.errors, newline="\n")


class WholeMessageWriter(MsgSpecWriter):
    """The SDK's msgspec writer, able to run a stop between two messages.

    A signal handler that writes (the SDK's tap writes its STATE on SIGTERM) must not do so in
    the middle of a message the main thread is writing: the two would interleave into a line
    that no target can read (or, with a buffered writer, fail as a reentrant call).
    """

    _writing = False
    _after_message: Callable[[], None] | None = None

    def write_message(self, message: Message) -> None:
        """Write one whole message; then run a stop deferred while it was written."""
        self._writing = True
        try:
            super().write_message(message)
        finally:
            self._writing = False
        after, self._after_message = self._after_message, None
        if after is not None:
            after()

    def between_messages(self, action: Callable[[], None]) -> None:
        """Run `action` now, or right after the message being written, if there is one."""
        if self._writing:
            self._after_message = action
        else:
            action()

    @property
    def stop_pending(self) -> bool:
        """Whether a stop waits for the message being written."""
        return self._after_message is not None
