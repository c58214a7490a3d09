"""The end of a target's run: deliver what is left, fail a useless run, emit the state, report.

Mixed in before the SDK's Target (and StopAtNextState) by both targets. At the end of input,
or before failing at a bad input line, the delivery finishes; a run in which a setting kept
every record from being delivered fails naming it, with no state emitted (the target says
which setting, and how, in `_setting_at_fault` and `_fail_if_a_setting_delivered_nothing`);
otherwise the state held back while that was unclear is emitted and the summary logged. An
error on the way abandons the delivery: no state past it is released. An error whose message
says what to do (refused credentials, a certificate, retries spent, a setting: `ACTIONABLE`)
ends the run with that message and exit 1, not a traceback after it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

import msgspec

from plugin_support.clean_exit import wait_until_stdout_is_read
from plugin_support.line_reader import FastReader
from plugin_support.retry import AuthError, RetriesExhausted, TlsError
from plugin_support.setting_checks import SettingError

ACTIONABLE: tuple[type[Exception], ...] = (AuthError, TlsError, RetriesExhausted, SettingError)


class Delivering(Protocol):
    """What a target delivers through: its delivery pipeline, or its worker processes."""

    def finish(self) -> None: ...  # noqa: D102

    def abandon(self) -> None: ...  # noqa: D102

    def summary(self) -> dict[str, Any]: ...  # noqa: D102


class RunEnd:
    """Mixin: the end of a run, the same in every target; the target supplies the hooks."""

    name: str
    message_reader: Any
    _held_state: dict | None  # a state kept back while a setting may be at fault
    # the summary's words: records not `delivered_word`; state past the last fully
    # `accounted_word` record
    delivered_word = "delivered"
    accounted_word = "delivered"

    # -- the target's hooks --------------------------------------------------------------

    def _started_delivery(self) -> Delivering | None:
        """The delivery, once records or states have started it."""
        raise NotImplementedError

    def _setting_at_fault(self) -> str | None:
        """The setting that kept every record so far from being delivered, if one did."""
        raise NotImplementedError

    def _fail_if_a_setting_delivered_nothing(self) -> None:
        """Raise an error naming the setting at fault, if one is."""
        raise NotImplementedError

    def _after_finish(self) -> None:
        """Runs once a finished delivery's summary is logged."""

    # -- the end -------------------------------------------------------------------------

    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        """The SDK's; an `ACTIONABLE` error ends the run with its message alone (exit 1)."""
        try:
            super().invoke(**kwargs)  # type: ignore[misc]
        except ACTIONABLE as exc:
            logging.getLogger(cls.name).error("%s", exc)  # masked by the log redaction
            raise SystemExit(1) from None

    def process_endofpipe(self) -> None:
        """Deliver what is left, emit the last state, log the summary; fail a useless run."""
        if self._started_delivery() is not None:
            self._finish_delivery()
        super().process_endofpipe()  # type: ignore[misc]
        reader = self.message_reader
        if isinstance(reader, FastReader) and (reader.stop_requested
                                               or reader.stop_at_next_state):
            wait_until_stdout_is_read()  # `meltano run` is stopping: let it relay the state

    def _finish_delivery(self) -> None:
        """Let the delivery deliver and release the last state; log the summary."""
        delivery = self._started_delivery()
        assert delivery is not None
        try:
            delivery.finish()
            self._fail_if_a_setting_delivered_nothing()
        except BaseException:
            self._abandon()
            raise
        if self._held_state is not None:
            self._write_state_message(self._held_state)
        self._log_summary(failed=False)
        self._after_finish()

    def _deliver_before_failing(self) -> None:
        """A bad input line: deliver every record before it and emit their state first."""
        if self._started_delivery() is None:
            return
        self._finish_delivery()
        logging.getLogger(self.name).error(
            "Stopped at a bad input line (below); every record before it was delivered and "
            "its state emitted")

    def _abandon(self) -> None:
        delivery = self._started_delivery()
        if delivery is not None:
            self._log_summary(failed=True)
            delivery.abandon()

    def _write_state_message(self, state: dict) -> None:
        if self._setting_at_fault() is not None:
            self._held_state = state  # emitted once the setting is not at fault, or never
            return
        self._held_state = None
        sys.stdout.write(msgspec.json.encode(state).decode() + "\n")
        sys.stdout.flush()

    def _log_summary(self, *, failed: bool) -> None:
        delivery = self._started_delivery()
        if delivery is None:
            return
        logger = logging.getLogger(self.name)
        summary = delivery.summary()
        logger.info("summary: %s", msgspec.json.encode(summary).decode())
        dead = sum((summary.get("dead_lettered") or {}).values())
        if dead:
            logger.warning("%d records were not %s; see %s", dead, self.delivered_word,
                           summary.get("dead_letter_file"))
        if failed:
            logger.error("The run failed; no state was emitted past the last fully %s "
                         "record. Rerun to resume.", self.accounted_word)
