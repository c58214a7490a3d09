"""Which files a BATCH message may make the target read (and then delete): batch files only.

A BATCH message names files by URL, and the target deletes each once its records are
accounted for; a manifest naming any other file (an application log, a config) must not make
it read or delete that file. A file is taken only when it lies under one of `batch_roots` and
is named as the Singer SDK (and tap-braze-currents) name batch files:
`<prefix><tap>--<stream>-<run id>-<n>.json[l][.gz]`, with the message's stream (or, for a
long one, its first part and a digest of 12 hex digits, as tap-braze-currents shortens it).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable

from fsspec.core import split_protocol

LOCAL_PROTOCOLS = (None, "file", "local")
RUN_ID = r"(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"


def _location(url: str) -> tuple[str, str]:
    """(protocol, normalized absolute path) of a local path or fsspec URL; `..` resolved."""
    protocol, path = split_protocol(url)
    if protocol in LOCAL_PROTOCOLS:
        return "file", os.path.realpath(path)
    return protocol or "", posixpath.normpath("/" + path.lstrip("/"))


BATCH_FILE_NAME = re.compile(rf"[^/]*?--(?P<stream>.+)-{RUN_ID}-[0-9]+\.jsonl?(?:\.gz)?")
SHORTENED = re.compile(r"(?P<start>.+)-[0-9a-f]{12}")


def _names_stream(name: str, stream: str) -> bool:
    """Whether `name` is a batch file name of `stream` (whole, or shortened)."""
    match = BATCH_FILE_NAME.fullmatch(name)
    if match is None:
        return False
    part = match["stream"]
    shortened = SHORTENED.fullmatch(part)
    return part == stream or (shortened is not None and len(part) < len(stream)
                              and stream.startswith(shortened["start"]))


class BatchManifestError(ValueError):
    """A BATCH message names a file that is not a batch file of this pipeline."""


class BatchRoots:
    """The folders batch files may be in (`batch_roots`), and the check of each file."""

    def __init__(self, roots: Iterable[str]):
        """Roots as paths (relative to the working folder) or fsspec URLs."""
        self.roots = list(roots)
        self._locations = [_location(root) for root in self.roots]

    def check(self, stream: str, url: str) -> None:
        """Raise BatchManifestError, naming the file and the setting, unless it may be read."""
        protocol, path = _location(url)
        if not any(protocol == root_protocol and path.startswith(root.rstrip("/") + "/")
                   for root_protocol, root in self._locations):
            self._refuse(stream, url, f"under a folder of batch_roots {self.roots}")
        if not _names_stream(posixpath.basename(path), stream):
            self._refuse(stream, url, f"named as a batch file of stream {stream!r} "
                         f"(<prefix><tap>--{stream}-<run id>-<n>.jsonl[.gz])")

    @staticmethod
    def _refuse(stream: str, url: str, what: str) -> None:
        msg = (f"The BATCH message of stream {stream!r} names {url}, which is not {what}. "
               "target-mixpanel reads, and deletes, only the batch files of this pipeline; "
               "nothing was read or deleted. If the tap writes its batch files elsewhere, "
               "add that folder to the setting batch_roots.")
        raise BatchManifestError(msg)
