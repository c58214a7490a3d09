"""The spool of Mixpanel cohort webhook messages: written by the receiver, read by the tap.

One object per message, under `<spool_url>/cohort=<id>/<digest>.json`, named by the SHA-256
of the body: a message Mixpanel delivers twice (a retry after a lost answer) lands on the same
name and is stored once. The object is an envelope, `{"received_ns": ..., "message": <body>}`:
the time of first arrival orders a cohort's messages (`add_members`/`remove_members` apply in
arrival order). A local spool is written durably (a temporary file, fsync'd, renamed, and the
folder fsync'd) and a remote one (`s3://`, `gs://`, `az://`) by a finished upload, before the
receiver answers success.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from plugin_support.storage_location import open_location

DIGEST_CHARACTERS = 32  # 128 bits of SHA-256: a name per body, collisions out of reach


@dataclass(frozen=True)
class SpooledMessage:
    """A stored message's place: its cohort, name and first arrival."""

    cohort_id: str
    path: str
    received_ns: int


class Envelope(msgspec.Struct):
    """What is stored: the time of first arrival and the message as Mixpanel sent it."""

    received_ns: int
    message: msgspec.Raw


def cohort_folder(cohort_id: str) -> str:
    """The folder of one cohort's messages (ids are Mixpanel's numbers; kept to safe text)."""
    safe = "".join(c for c in str(cohort_id) if c.isalnum() or c in "-_")
    if not safe or safe != str(cohort_id):
        raise ValueError(f"cohort id {cohort_id!r} is not a Mixpanel cohort id")
    return f"cohort={safe}"


class WebhookSpool:
    """Messages of Mixpanel's cohort webhooks, stored once each, in arrival order per cohort."""

    def __init__(self, url: str, options: dict[str, Any] | None = None):
        self.fs, self.root = open_location(url, options, "spool_url", "spool_options")
        protocols = self.fs.protocol
        self.local = "file" in (protocols if isinstance(protocols, tuple) else (protocols,))

    def store(self, cohort_id: str, body: bytes) -> tuple[str, bool]:
        """Store `body` durably unless stored already; (its path, whether it is new)."""
        folder = f"{self.root}/{cohort_folder(cohort_id)}"
        path = f"{folder}/{hashlib.sha256(body).hexdigest()[:DIGEST_CHARACTERS]}.json"
        if self.fs.exists(path):
            return path, False
        data = b'{"received_ns":%d,"message":%s}' % (time.time_ns(), body)
        if self.local:
            _write_durably(folder, path, data)
        else:
            self.fs.pipe_file(path, data)  # returns once the upload has finished
        return path, True

    def cohorts(self) -> list[str]:
        """The ids of the cohorts with stored messages."""
        if not self.fs.exists(self.root):
            return []
        return sorted(name.rsplit("/", 1)[-1].removeprefix("cohort=")
                      for name in self.fs.ls(self.root, detail=False)
                      if name.rsplit("/", 1)[-1].startswith("cohort="))

    def messages(self, cohort_id: str) -> Iterator[tuple[SpooledMessage, bytes]]:
        """One cohort's messages in arrival order: (its place, the message's JSON)."""
        folder = f"{self.root}/{cohort_folder(cohort_id)}"
        if not self.fs.exists(folder):
            return
        paths = [p for p in self.fs.ls(folder, detail=False) if p.endswith(".json")]
        contents = self.fs.cat(paths) if paths else {}
        envelopes = []
        for path, data in contents.items():
            envelope = msgspec.json.decode(data, type=Envelope)
            envelopes.append((envelope.received_ns, path, bytes(envelope.message)))
        for received_ns, path, message in sorted(envelopes):
            yield SpooledMessage(str(cohort_id), path, received_ns), message

    def delete(self, messages: list[SpooledMessage]) -> None:
        """Delete messages once a delivered state covers them."""
        if messages:
            self.fs.rm([m.path for m in messages])


def _write_durably(folder: str, path: str, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either nothing or the whole file."""
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: leave no partial file behind
            os.remove(temporary)
        raise
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
