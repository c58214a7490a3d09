"""The messages between the main process and a worker process, and the errors a worker reports.

The main process sends a worker numbered chunks of RECORD lines (or batch files to read), key
properties and, last, Finish; a worker answers Done for each chunk accounted for, then Finished,
or Failed naming its error. Both sides import this module, so the messages pickle by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException

from plugin_support.retry import AuthError, RetriesExhausted, TlsError


class WorkerError(Exception):
    """A worker stopped on an unexpected error; the message is the worker's."""


class BatchFileError(Exception):
    """A batch file named by a BATCH message could not be read."""


# Errors a worker reports by name, which the main process raises again as they were.
EXPECTED_FAILURES: dict[str, type[Exception]] = {failure.__name__: failure for failure in (
    AuthError, RetriesExhausted, TlsError, MissingKeyPropertiesError,
    RecordsWithoutSchemaException, BatchFileError)}


@dataclass(frozen=True)
class Chunk:
    """Main -> worker: numbered RECORD lines; `runs` raw byte runs of lines follow it."""

    number: int
    runs: int


@dataclass(frozen=True)
class ReceivedChunk:
    """A chunk with its runs of lines, as the worker's receiving thread hands it on."""

    number: int
    lines: list[bytes]


@dataclass(frozen=True)
class BatchFileChunk:
    """Main -> worker: a numbered chunk that is a batch file of one stream, for it to read."""

    number: int
    stream: str
    url: str
    compression: str | None


@dataclass(frozen=True)
class KeyProperties:
    """Main -> worker: a stream's key properties (before any of its records)."""

    stream: str
    keys: list[str]


@dataclass(frozen=True)
class Finish:
    """Main -> worker: deliver what is left and stop."""


@dataclass(frozen=True)
class Done:
    """Worker -> main: every chunk up to `number` is accounted for; the running totals."""

    number: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    """Worker -> main: everything is delivered; the final totals."""

    summary: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """Worker -> main: the worker stopped on an error (`kind` names it); the totals so far."""

    kind: str
    text: str
    summary: dict[str, Any] | None


ToWorker = Chunk | BatchFileChunk | KeyProperties | Finish
Inbound = ReceivedChunk | BatchFileChunk | KeyProperties | Finish
FromWorker = Done | Finished | Failed
