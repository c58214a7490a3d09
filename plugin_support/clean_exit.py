"""Exit only once the reader of standard output has taken what was written.

`meltano run` stops its plugins on SIGTERM and then stops relaying their output as soon as
each process has exited. A plugin that writes its last STATE and exits at once can lose that
line in the pipe; one that waits until the pipe is empty has it relayed (and saved).
"""

from __future__ import annotations

import array
import atexit
import fcntl
import signal
import sys
import termios
import time

# After the pipe is empty, the reader may still hold the last read in memory for a moment.
RELAY_GRACE_SECONDS = 0.3


def unread_bytes(fd: int) -> int:
    """Bytes written to the pipe `fd` and not read yet (0 when `fd` is not a pipe)."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return 0
    return int(count[0])


def wait_until_stdout_is_read(timeout: float = 10.0) -> None:
    """Flush standard output, then wait (at most `timeout`) until its reader has taken it."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone: nothing to wait for
        return
    fd = sys.stdout.fileno()
    deadline = time.monotonic() + timeout
    while unread_bytes(fd) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(RELAY_GRACE_SECONDS)


def ignore_stop_signal_while_exiting() -> None:
    """From the start of interpreter exit on, ignore SIGTERM.

    Python puts back the default handlers while it shuts down, so a SIGTERM landing then (a
    scheduler stopping a run that is ending anyway) would kill the process (exit -15) after a
    complete run. Call once, at start-up; exit handlers registered later run before this one.
    """
    atexit.register(signal.signal, signal.SIGTERM, signal.SIG_IGN)
