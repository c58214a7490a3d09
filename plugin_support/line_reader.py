"""Reading Singer messages fast: RECORD lines handed on unparsed, stops only at a STATE.

The SDK's reader parses every line. A target that sends records on (to worker processes) can
take runs of RECORD lines as they are, in big blocks; every other line is parsed and
dispatched here, in order. A stop signal ends the reading at the next STATE, so everything
read is covered by the state the target emits.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import msgspec
from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException
from singer_sdk.singerlib.encoding.base import GenericSingerReader

logger = logging.getLogger(__name__)
_decode_line = msgspec.json.Decoder().decode
# How RECORD lines start when a tap writes compact or default-spaced JSON: such lines are
# handed to the workers without being parsed here.
RECORD_PREFIXES = (b'{"type":"RECORD","stream":"', b'{"type": "RECORD", "stream": "')
BLOCK_BYTES = 1024 * 1024
# A block made only of RECORD lines written compactly (as tap-braze-currents and the SDK's
# msgspec writer do) goes to the workers whole, without being split into lines here.
COMPACT_RECORD = RECORD_PREFIXES[0]
NEWLINE_RECORD = b"\n" + COMPACT_RECORD

# A line that is not a Singer message, or a message the spec forbids where it is: the run
# fails naming it, after delivering the records before it and emitting their state.
INPUT_ERRORS = (ValueError, RecordsWithoutSchemaException, MissingKeyPropertiesError)


class StopReading(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the termination handler to leave a blocking read."""


class FastReader(GenericSingerReader[Any]):
    """Singer lines; RECORD lines of known streams go to the workers unparsed."""

    # Set by the target: takes a run of RECORD lines for the workers, returns how many.
    take_record_lines: Callable[[list[bytes]], int] | None = None
    # Set by the target with take_record_lines: takes a run of RECORD lines joined by newlines
    # and their count.
    take_record_block: Callable[[bytes, int], None] | None = None
    on_failure: Callable[[], None] | None = None
    # Set by the target: called on a bad input line, to deliver what came before it.
    on_input_error: Callable[[], None] | None = None
    stop_requested = False   # stop reading now; deliver what was read
    stop_at_next_state = False  # set on SIGTERM/SIGINT: stop reading after the next STATE
    at_state = True          # no record was read since the last STATE (or the start)
    reading = False          # True while blocked reading input (a stop may interrupt it)

    def request_stop(self) -> None:
        """Stop reading at the next STATE (at once if nothing was read since the last one).

        Stopping right after a STATE means every record read is covered by the state the
        target emits, so the next run replays nothing.
        """
        if self.at_state:
            self.stop_now()
        else:
            self.stop_at_next_state = True

    def stop_now(self) -> None:
        """Stop reading now (a blocking read is interrupted)."""
        self.stop_requested = True
        if self.reading:
            raise StopReading

    @property
    def default_input(self) -> IO[bytes]:
        """Standard input, as bytes."""
        return sys.stdin.buffer

    def deserialize_json(self, line: Any) -> dict:
        """One line as a dict, or an error naming the line."""
        try:
            message = _decode_line(line)
        except msgspec.DecodeError as exc:
            text = line if isinstance(line, str) else line.decode("utf-8", "replace")
            msg = f"Input line is not valid JSON ({exc}): {text[:200]!r}"
            raise ValueError(msg) from None
        if not isinstance(message, dict) or "type" not in message:
            msg = f"Input line is not a Singer message: {str(line)[:200]!r}"
            raise ValueError(msg)
        if message["type"] == "STATE" and "value" in message \
                and not isinstance(message["value"], dict):
            # passed on, it would be saved, and the tap's next run would fail on it
            text = line if isinstance(line, str) else line.decode("utf-8", "replace")
            msg = (f"Input line is a STATE message whose value is not a JSON object "
                   f"(a {type(message['value']).__name__}): {text[:200]!r}")
            raise ValueError(msg)
        return message

    def process_lines(self, file_input: IO[Any] | None, callbacks: dict) -> Counter[str]:
        """Dispatch every line; count lines by message type."""
        try:
            return self._process_lines(file_input, callbacks)
        except INPUT_ERRORS:
            if self.on_input_error is not None:
                self.on_input_error()
            raise
        except BaseException:
            if self.on_failure is not None:
                self.on_failure()
            raise

    def _process_lines(self, file_input: IO[Any] | None, callbacks: dict) -> Counter[str]:
        source = file_input or self.default_input
        if self.take_record_lines is not None and isinstance(source.read(0), bytes):
            return self._process_blocks(source, callbacks)
        stats: Counter[str] = Counter()
        lines = iter(source)
        while not self.stop_requested:
            try:
                self.reading = True
                line = next(lines)
            except (StopIteration, StopReading):
                break
            finally:
                self.reading = False
            if line.strip():
                stats[self._dispatch(line, callbacks)] += 1
        return stats

    def _dispatch(self, line: Any, callbacks: dict) -> str:
        message = self.deserialize_json(line)
        kind = message["type"]
        callback = callbacks.get(kind)
        if callback is None:
            self._process_unknown_message(message)
        else:
            callback(message)
        if kind == "STATE":
            self.at_state = True
            self.stop_requested = self.stop_requested or self.stop_at_next_state
        elif kind in ("RECORD", "BATCH"):
            self.at_state = False
        return str(kind)

    def _hand_over(self, whole: bytes, callbacks: dict, stats: Counter[str]) -> None:
        """Complete lines: runs of RECORD lines to the workers, the rest dispatched here."""
        take, take_block = self.take_record_lines, self.take_record_block
        assert take is not None
        assert take_block is not None
        count = whole.count(b"\n") + 1
        if whole.startswith(COMPACT_RECORD) and whole.count(NEWLINE_RECORD) == count - 1:
            take_block(whole, count)
            self.at_state = False
            stats["RECORD"] += count
            return
        lines = whole.split(b"\n")
        start = 0
        for index in [i for i, line in enumerate(lines)
                      if not line.startswith(RECORD_PREFIXES)]:
            if index > start:
                stats["RECORD"] += take(lines[start:index])
                self.at_state = False
            if lines[index].strip():
                stats[self._dispatch(lines[index], callbacks)] += 1
            start = index + 1
            if self.stop_requested:
                self._leave(lines[start:])
                return
        if start < len(lines):
            stats["RECORD"] += take(lines[start:])
            self.at_state = False

    @staticmethod
    def _leave(lines: list[bytes]) -> None:
        """Lines read after the STATE a stop ends at: the next run reads them again."""
        left = sum(1 for line in lines if line.strip())
        if left:
            logger.info("Stopping after a STATE: %d lines read past it are left to the next "
                        "run", left)

    def _process_blocks(self, source: IO[bytes], callbacks: dict) -> Counter[str]:
        """Read big blocks; pass runs of RECORD lines to the workers unparsed.

        Every other line is parsed and dispatched here, in order.
        """
        stats: Counter[str] = Counter()
        carry = b""
        read = getattr(source, "read1", source.read)  # what is there now, up to a block
        while not self.stop_requested:
            try:
                self.reading = True
                block = read(BLOCK_BYTES)
            except StopReading:
                break
            finally:
                self.reading = False
            if not block:
                break
            data = carry + block if carry else block
            end = data.rfind(b"\n")
            if end < 0:
                carry = data
                continue
            whole, carry = data[:end], data[end + 1:]
            self._hand_over(whole, callbacks, stats)
        if carry.strip() and not self.stop_requested:
            self._hand_over(carry, callbacks, stats)
        return stats
