"""Listing a Currents export through fsspec: which files exist, of which type, hour and version.

Works the same on a local folder, S3, Google Cloud Storage and Azure Blob. The walk goes down
to the `event_type=` folders (across every integration folder), keeps the `date=` hours inside
the wanted range, and lists each kept hour recursively, whatever layout sits below it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.utils import get_protocol

from plugin_support.redaction import Redactor
from plugin_support.storage_location import StorageLocationError, open_location, option_secrets
from tap_braze_currents.event_types import catalog, stream_name
from tap_braze_currents.layout import (
    AVRO_SUFFIX,
    DATE_PREFIX,
    EVENT_TYPE_PREFIX,
    basename,
    parse_hour,
    segment_value,
)

logger = logging.getLogger(__name__)

# How deep below `storage_url` the walk looks for `event_type=` folders
# (prefix/currents/dataexport...integration.<id>/event_type=...).
MAX_WALK_DEPTH = 5

# fsspec info keys that change when an object is rewritten, best first, per backend.
VERSION_KEYS = ("ETag", "etag", "generation", "md5Hash", "mtime", "LastModified",
                "last_modified", "updated", "created")

# Remote hour folders listed at once (each listing is a round trip of its own).
LISTING_THREADS = 16

# Client connection pools smaller by default than the requests the tap keeps in flight, by URL
# scheme: where in storage_options their size goes. botocore pools 10 connections (s3fs hands
# config_kwargs to its Config), which capped 32 fetches and 64 listings at 10 round trips at
# once; gcsfs and adlfs use aiohttp's default of 100.
POOL_SIZE_OPTIONS = {"s3": ("config_kwargs", "max_pool_connections"),
                     "s3a": ("config_kwargs", "max_pool_connections")}

# storage_options keys that turn TLS certificate checks off when false (botocore/s3fs
# client_kwargs.verify, Azure's connection_verify, aiohttp's ssl/verify_ssl).
TLS_CHECK_KEYS = ("verify", "connection_verify", "ssl", "verify_ssl")


class StorageSettingError(Exception):
    """The export cannot be reached or listed; the message names the setting to fix."""


@dataclass(frozen=True, order=True)
class CurrentsFile:
    """One Avro file of the export."""

    hour: str          # the `date=` hour, YYYY-MM-DD-HH (sorts in time order)
    path: str          # fsspec path, without protocol
    event_type: str
    size: int
    version: str       # changes when the key is rewritten with other content


def tls_checks_off(options: Mapping[str, Any], where: str = "storage_options") -> list[str]:
    """The storage_options entries (dotted) that turn TLS certificate checks off."""
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, Mapping):
            found.extend(tls_checks_off(value, f"{where}.{key}"))
        elif key in TLS_CHECK_KEYS and value is False:
            found.append(f"{where}.{key}")
    return found


def storage_secrets(storage_url: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every secret the storage settings hold: the options' strings and the URL's user info.

    `s3://key:secret@bucket/prefix` carries credentials in the URL itself (both parts count).
    """
    found = option_secrets(storage_options or {})
    try:
        parts = urlsplit(storage_url)
    except ValueError:
        return found
    for value in (parts.username, parts.password):
        if value:
            found += [value, unquote(value)]
    return found


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _version(info: Mapping[str, Any]) -> str:
    marker = next((info[k] for k in VERSION_KEYS if info.get(k) not in (None, "")), "")
    return f"{info.get('size', 0)}:{marker}"


def _local_find(folder: str) -> dict[str, dict[str, Any]]:
    """What fsspec's local `find(folder, detail=True)` gives for files: path -> size, mtime.

    From os.scandir, without fsspec's per-entry path handling (which was a fifth of a small
    file's cost).
    """
    found: dict[str, dict[str, Any]] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                found.update(_local_find(entry.path))
                continue
            stat = entry.stat(follow_symlinks=False)
            size = stat.st_size
            if entry.is_symlink():
                try:
                    size = entry.stat(follow_symlinks=True).st_size
                except OSError:
                    size = 0
        except FileNotFoundError:
            continue
        found[entry.path] = {"name": entry.path, "size": size, "type": "file",
                             "mtime": stat.st_mtime}
    return found


def _with_pool_size(options: dict[str, Any], url: str, connections: int | None) -> dict[str, Any]:
    where = POOL_SIZE_OPTIONS.get(get_protocol(url).lower())
    if where is None or connections is None:
        return options
    section, key = where
    nested = dict(options.get(section) or {})
    nested.setdefault(key, connections)
    return {**options, section: nested}


class CurrentsStorage:
    """The export under one `storage_url`, reached with `storage_options`."""

    def __init__(self, storage_url: str, storage_options: Mapping[str, Any] | None = None,
                 connections: int | None = None):
        """Open the filesystem (no network yet).

        `connections`: the requests the caller keeps in flight; a client pool that is smaller
        by default grows to it, unless storage_options set its size.
        """
        self.redact = Redactor(storage_secrets(storage_url, storage_options))
        self.url = self.redact(storage_url)  # as messages show it: no credentials
        if _has_password(storage_url):
            msg = (f"storage_url {self.url!r} holds credentials (user:secret@), which the "
                   "storage clients do not take from a URL: put them in storage_options "
                   "(key and secret for S3) and leave them out of storage_url.")
            raise StorageSettingError(msg)
        self._options = _with_pool_size(dict(storage_options or {}), storage_url, connections)
        for entry in tls_checks_off(self._options):
            logger.warning("%s is false: TLS certificates of the storage endpoint are not "
                           "checked", entry)
        try:
            fs, root = open_location(storage_url, self._options, "storage_url",
                                     "storage_options")
        except StorageLocationError as exc:
            raise StorageSettingError(self.redact(str(exc))) from None
        except Exception as exc:  # a client that checks its credentials at once (gcsfs token)
            msg = (f"storage_url {self.url!r} could not be opened ({self._clean(exc)}). Check "
                   "the credentials and endpoint in storage_options.")
            raise StorageSettingError(msg) from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root
        self.fs.invalidate_cache()

    @cached_property
    def is_local(self) -> bool:
        """Whether files are on this machine (read in place, no prefetch)."""
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def _clean(self, exc: BaseException) -> str:
        return self.redact(f"{type(exc).__name__}: {exc}")

    def check(self) -> None:
        """Fail early, naming the setting, when the export cannot be listed."""
        try:
            exists = self.fs.exists(self.root)
            if exists:
                self.fs.ls(self.root, detail=False)
        except PermissionError as exc:
            msg = (f"storage_url {self.url!r}: access denied ({self._clean(exc)}). "
                   "Check the credentials in storage_options.")
            raise StorageSettingError(msg) from None
        except Exception as exc:
            detail = self._clean(exc)
            hint = ("Check the bucket/container name in storage_url and the endpoint and "
                    "credentials in storage_options.")
            if "CERTIFICATE_VERIFY_FAILED" in detail or "SSLError" in detail:
                hint = ("The endpoint's TLS certificate was not accepted: fix it, point "
                        "AWS_CA_BUNDLE/REQUESTS_CA_BUNDLE at its CA, or (not recommended) set "
                        "storage_options.client_kwargs.verify to false.")
            msg = f"storage_url {self.url!r} could not be listed ({detail}). {hint}"
            raise StorageSettingError(msg) from None
        if not exists:
            msg = (f"storage_url {self.url!r} does not exist (no bucket, container or folder "
                   "there). Check storage_url.")
            raise StorageSettingError(msg)

    def _ls(self, path: str) -> list[dict[str, Any]]:
        try:
            return self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []

    @cached_property
    def event_type_folders(self) -> dict[str, list[str]]:
        """Every `event_type=` folder under the root, by event type (one per integration)."""
        folders: dict[str, list[str]] = {}
        own_type = segment_value(self.root, EVENT_TYPE_PREFIX)
        if own_type is not None:  # storage_url points inside one event type's folder
            folders[own_type] = [self.root]
            return folders
        frontier = [self.root]
        for _ in range(MAX_WALK_DEPTH):
            deeper = []
            for folder in frontier:
                for entry in self._ls(folder):
                    name = basename(entry["name"])
                    if entry.get("type") != "directory":
                        logger.debug("Ignoring %s: not inside an event_type= folder", entry["name"])
                    elif name == EVENT_TYPE_PREFIX:
                        logger.warning("Skipping folder %s/: its event type is empty, so no "
                                       "stream can hold its files", self.redact(entry["name"]))
                    elif name.startswith(EVENT_TYPE_PREFIX):
                        folders.setdefault(name[len(EVENT_TYPE_PREFIX):], []).append(entry["name"])
                    elif not name.startswith(DATE_PREFIX):
                        deeper.append(entry["name"])
            frontier = deeper
        return self._one_type_per_stream(folders)

    def _one_type_per_stream(self, folders: dict[str, list[str]]) -> dict[str, list[str]]:
        """Folders of types that map to one stream (differing in case) merged under one type.

        `users.messages.email.Send` and `USERS.MESSAGES.EMAIL.SEND` are both read as the
        stream users_messages_email_send, under the catalog's spelling (else the first one).
        """
        by_stream: dict[str, list[str]] = {}
        for event_type in sorted(folders):
            by_stream.setdefault(stream_name(event_type), []).append(event_type)
        for stream, spellings in by_stream.items():
            if len(spellings) < 2:
                continue
            kept = next((t for t in spellings if t in catalog()), spellings[0])
            paths = [path for spelling in spellings for path in folders[spelling]]
            logger.warning("Folders %s name event types that differ only in case or "
                           "punctuation; all are read as event type %s (stream %s)",
                           ", ".join(self.redact(p) for p in paths), kept, stream)
            folders[kept] = paths
            for spelling in spellings:
                if spelling != kept:
                    del folders[spelling]
        return folders

    def files(self, event_type: str, first_hour: str | None, end_hour: str | None,
              latest_hour: str | None = None) -> list[CurrentsFile]:
        """Avro files of one type with first_hour <= hour < end_hour, oldest hour first.

        Hours after `latest_hour` (now plus future_hours_tolerance) are left out with a
        warning naming the folder: a stray future folder must not become the bookmark.
        """
        hours: list[tuple[str, str]] = []  # (folder, hour)
        for type_folder in self.event_type_folders.get(event_type, []):
            for entry in self._ls(type_folder):
                hour = basename(entry["name"]).removeprefix(DATE_PREFIX)
                if not basename(entry["name"]).startswith(DATE_PREFIX) or parse_hour(hour) is None:
                    logger.debug("Ignoring %s: not a date=YYYY-MM-DD-HH folder", entry["name"])
                    continue
                if (first_hour and hour < first_hour) or (end_hour and hour >= end_hour):
                    continue
                if latest_hour and hour > latest_hour:
                    logger.warning("Folder %s is later than now plus future_hours_tolerance "
                                   "(hour %s): not read now, and not bookmarked; a later run "
                                   "reads it once its hour has come", self.redact(entry["name"]),
                                   latest_hour)
                    continue
                hours.append((entry["name"], hour))
        found: list[CurrentsFile] = []
        if self.is_local or len(hours) < 2:
            for folder, hour in hours:
                found.extend(self._files_in_hour(folder, event_type, hour))
        else:  # one round trip per hour: list them at once
            with ThreadPoolExecutor(LISTING_THREADS, thread_name_prefix="listing") as pool:
                for files in pool.map(lambda h: self._files_in_hour(h[0], event_type, h[1]),
                                      hours):
                    found.extend(files)
        found.sort()
        return found

    def _files_in_hour(self, folder: str, event_type: str, hour: str) -> list[CurrentsFile]:
        listing = _local_find(folder) if self.is_local else self.fs.find(folder, detail=True)
        result = []
        for path, info in listing.items():
            if info.get("type") == "directory":
                continue
            if not path.endswith(AVRO_SUFFIX):
                logger.debug("Ignoring %s: not an .avro file", path)
                continue
            result.append(CurrentsFile(hour=hour, path=path, event_type=event_type,
                                       size=int(info.get("size") or 0), version=_version(info)))
        return result

    def url_of(self, path: str) -> str:
        """A path as a full URL (what records carry in `_sdc_source_file`)."""
        return str(self.fs.unstrip_protocol(path))

    def open(self, path: str) -> BinaryIO:
        """A file opened for reading in place (local files without fsspec's per-read cost)."""
        if self.is_local:
            return open(path, "rb")
        handle: BinaryIO = self.fs.open(path, "rb")
        return handle

    def read(self, path: str) -> bytes:
        """A whole file's bytes."""
        return bytes(self.fs.cat_file(path))

    @property
    def reads_on_event_loop(self) -> bool:
        """Whether `reader` reads on the filesystem's event loop (an async filesystem)."""
        return isinstance(self.fs, AsyncFileSystem) and self.fs.loop is not None

    @contextmanager
    def reader(self, threads: int) -> Iterator[Callable[[str], Future[bytes]]]:
        """`start(path)`, which starts reading a whole file and gives the future of its bytes.

        On an async filesystem (s3fs, gcsfs, adlfs) reads run on its event loop, with no
        thread of their own; otherwise on up to `threads` threads.
        """
        if self.reads_on_event_loop:
            fs = self.fs
            yield lambda path: asyncio.run_coroutine_threadsafe(fs._cat_file(path), fs.loop)
            return
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prefetch") as pool:
            yield lambda path: pool.submit(self.read, path)

    def describe_error(self, exc: BaseException) -> str:
        """An exception's text with storage secrets removed."""
        return self._clean(exc)
