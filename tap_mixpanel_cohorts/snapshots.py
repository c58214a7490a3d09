"""Membership snapshots: one immutable folder of Parquet parts per cohort and run.

A snapshot holds a cohort's members (user_id, and distinct_id where it differs) in parts of up
to 100,000 rows, written while /engage is paged, so no run holds a whole membership as
strings. The tap's STATE names, per cohort, the snapshot its last delivered changes were
diffed into; a snapshot is never rewritten, so whatever state Meltano saved still finds it.
Snapshots no state names are deleted once older than the grace period (their creation time is
part of their name).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from plugin_support.redaction import redact
from plugin_support.storage_location import open_location, option_secrets

logger = logging.getLogger(__name__)

PART_SUFFIX = ".parquet"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(r"^cohort-(?P<cohort>\d+)/(?P<time>\d{8}T\d{6}Z)-[0-9a-f]{12}$")
# distinct_id is null where it equals user_id (id_property $distinct_id: always).
MEMBER_SCHEMA = {"user_id": pl.String, "distinct_id": pl.String}


def location_secrets(url: str, options: Mapping[str, Any] | None) -> list[str]:
    """What must never show of a snapshot location: option strings, the URL's password."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return [*option_secrets(options or {}), *([password] if password else [])]


class SnapshotError(Exception):
    """A snapshot cannot be written or read; the message names the setting or file."""


class SnapshotStore:
    """The snapshots under one snapshot_url, reached with snapshot_options."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None):
        """Open the filesystem (nothing is read or written yet)."""
        self._secrets = location_secrets(url, options)
        self.url = redact(url, self._secrets)   # as messages show it (no URL password)
        try:
            self.fs, self.root = open_location(url, options, "snapshot_url", "snapshot_options")
        except Exception as exc:
            msg = (f"snapshot_url {self.url!r} cannot be opened with snapshot_options "
                   f"({self._clean(exc)})")
            raise SnapshotError(msg) from None

    def _clean(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)

    def describe_error(self, exc: BaseException) -> str:
        """An exception's text with the storage secrets removed."""
        return self._clean(exc)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def check(self) -> None:
        """Fail early, naming the settings, when snapshots cannot be written here."""
        probe = self._path(f".write-check-{uuid.uuid4().hex[:12]}")
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as exc:
            msg = (f"snapshot_url {self.url!r} cannot be written ({self._clean(exc)}). Check "
                   "snapshot_url (bucket/container/folder) and the endpoint and credentials in "
                   "snapshot_options.")
            raise SnapshotError(msg) from None

    @staticmethod
    def new_name(cohort_id: int, now: dt.datetime) -> str:
        """A fresh, unique name for a snapshot of `cohort_id` taken `now` (UTC)."""
        return f"cohort-{cohort_id}/{now.strftime(TIME_FORMAT)}-{uuid.uuid4().hex[:12]}"

    def write_part(self, name: str, number: int, members: pl.DataFrame) -> None:
        """Store part `number` of snapshot `name` (a new file)."""
        path = self._path(f"{name}/part-{number:05d}{PART_SUFFIX}")
        try:
            if number == 0:
                self.fs.makedirs(self._path(name), exist_ok=True)
            with self.fs.open(path, "wb") as handle:
                members.write_parquet(handle)
        except Exception as exc:
            msg = f"snapshot_url {self.url!r}: could not write {name} ({self._clean(exc)})"
            raise SnapshotError(msg) from None

    def remove(self, name: str) -> None:
        """Delete snapshot `name` (a partly written one), if it exists."""
        try:
            if self.fs.exists(self._path(name)):
                self.fs.rm(self._path(name), recursive=True)
        except Exception as exc:
            msg = f"snapshot_url {self.url!r}: could not delete {name} ({self._clean(exc)})"
            raise SnapshotError(msg) from None

    def parts(self, name: str) -> Iterator[pl.DataFrame]:
        """The parts of snapshot `name`, in order."""
        try:
            paths = sorted(self.fs.glob(self._path(f"{name}/part-*{PART_SUFFIX}")))
        except Exception as exc:
            msg = f"snapshot_url {self.url!r}: could not list {name} ({self._clean(exc)})"
            raise SnapshotError(msg) from None
        if not paths:
            msg = (f"snapshot_url {self.url!r}: the state names snapshot {name}, which is gone. "
                   "Without it removals cannot be computed; restore it, or clear the state "
                   "(`meltano state clear`) for a full sync of adds.")
            raise SnapshotError(msg)
        for path in paths:
            try:
                with self.fs.open(path, "rb") as handle:
                    frame = pl.read_parquet(handle)
            except Exception as exc:
                msg = f"snapshot_url {self.url!r}: could not read {path} ({self._clean(exc)})"
                raise SnapshotError(msg) from None
            yield frame

    def read_json(self, name: str) -> Any:
        """A small JSON file beside the snapshots (None when there is none)."""
        try:
            return json.loads(self.fs.cat_file(self._path(name)))
        except FileNotFoundError:
            return None

    def write_json(self, name: str, value: Any) -> None:
        """Replace a small JSON file beside the snapshots."""
        self.fs.makedirs(self.root, exist_ok=True)
        self.fs.pipe_file(self._path(name), json.dumps(value).encode())

    def delete_unnamed(self, keep: set[str], grace: dt.timedelta, now: dt.datetime) -> int:
        """Delete the snapshots not in `keep` taken more than `grace` before `now`."""
        try:
            paths = self.fs.glob(self._path("cohort-*/*"))
        except Exception as exc:
            logger.warning("Old snapshots not cleaned up: %s", self._clean(exc))
            return 0
        deleted = 0
        for path in paths:
            name = path[len(self.root) + 1:] if path.startswith(self.root + "/") else path
            found = NAME_PATTERN.match(name)
            if found is None or name in keep:
                continue
            taken = dt.datetime.strptime(found["time"], TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
            if now - taken > grace:
                try:
                    self.fs.rm(path, recursive=True)
                    deleted += 1
                except Exception as exc:
                    logger.warning("Could not delete old snapshot %s: %s", name, self._clean(exc))
        return deleted
