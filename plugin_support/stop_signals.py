"""Stop signals: one setup for every plugin; in a target, read on to the next STATE and exit 0.

`StopSignalSetup` is mixed in before the SDK's Tap or Target by every plugin, which gives only
what it does on a signal (`_handle_termination`). `StopAtNextState` is that for a target whose
reader is a `FastReader`.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from plugin_support.clean_exit import ignore_stop_signal_while_exiting
from plugin_support.complete_stdout import complete_stdout_writes
from plugin_support.line_reader import FastReader

logger = logging.getLogger(__name__)

# After a stop signal, how long the target reads on waiting for the tap's next STATE.
STATE_WAIT_SECONDS = 30


class StopSignalSetup:
    """Mixin: the SDK's signal handlers, none once exiting, and whole writes to stdout."""

    def _setup_signal_handlers(self) -> None:
        """The SDK's (the plugin's `_handle_termination`); SIGTERM ignored once exiting."""
        super()._setup_signal_handlers()  # type: ignore[misc]
        ignore_stop_signal_while_exiting()
        complete_stdout_writes()  # a signal must not cut a write to stdout short


class StopAtNextState(StopSignalSetup):
    """Mixin: SIGTERM/SIGINT end the run at the next STATE (the SDK's hooks, overridden)."""

    message_reader: Any

    def _handle_termination(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: read on to the next STATE, deliver, emit that state, exit 0.

        The tap (tap-braze-currents) answers the same signal by ending after the file it is
        reading and its STATE, so the run ends with nothing to replay. With no STATE within
        STATE_WAIT_SECONDS the target stops reading anyway; a second signal stops at once.
        Either way no state past what was delivered is emitted.
        """
        reader = self.message_reader
        if not isinstance(reader, FastReader) or reader.stop_at_next_state \
                or reader.stop_requested:
            super()._handle_termination(signum, frame)  # type: ignore[misc]
            return
        logger.info("Received signal %d: reading on to the next STATE, delivering, then "
                    "stopping", signum)
        signal.signal(signal.SIGALRM, self._stop_waiting_for_state)
        signal.alarm(STATE_WAIT_SECONDS)
        reader.request_stop()

    def _stop_waiting_for_state(self, signum: int, frame: Any) -> None:
        reader = self.message_reader
        if isinstance(reader, FastReader) and not reader.stop_requested:
            logger.warning("No STATE arrived within %d s of the stop signal: stopping now; "
                           "records read since the last STATE will be sent again by the next "
                           "run", STATE_WAIT_SECONDS)
            reader.stop_now()
