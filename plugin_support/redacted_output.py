"""Everything a plugin prints goes through the redaction: log lines, uncaught errors, dead letters.

`install(redactor)` is called once the config is validated (plugin_support.config_errors): it
puts the log filter on every handler, wraps sys.excepthook and threading.excepthook so that a
traceback printed at exit is masked too, and keeps the redactor for the dead-letter file.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import IO, Any

from plugin_support.redaction import RedactingFilter, Redactor, redact_logs

_installed = Redactor()


class _RedactingStream:
    """A text stream that masks secrets in what is written to it."""

    def __init__(self, stream: IO[str], redactor: Redactor):
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _masked(hook: Any) -> Any:
    """`hook`, with whatever it writes to sys.stderr masked (logging is masked by the filter)."""
    def masked_hook(*args: Any) -> None:
        real = sys.stderr
        sys.stderr = _RedactingStream(real, _installed)
        try:
            hook(*args)
        finally:
            sys.stderr = real

    masked_hook.__wrapped__ = hook  # type: ignore[attr-defined]
    return masked_hook


def install(redactor: Redactor) -> None:
    """Mask secrets in log lines, uncaught exceptions and dead letters from now on."""
    global _installed  # noqa: PLW0603 - one redaction per process
    _installed = redactor
    redact_logs(redactor)
    for handler in logging.getLogger().handlers:  # a filter of an earlier install: this one
        for log_filter in handler.filters:
            if isinstance(log_filter, RedactingFilter):
                log_filter.redactor = redactor
    if not hasattr(sys.excepthook, "__wrapped__"):
        sys.excepthook = _masked(sys.excepthook)
    if not hasattr(threading.excepthook, "__wrapped__"):
        threading.excepthook = _masked(threading.excepthook)


def installed() -> Redactor:
    """The redactor installed in this process (none yet: one that masks credential shapes)."""
    return _installed
