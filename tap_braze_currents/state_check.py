"""The input state checked before a run uses it: a clear error for a state this tap did not write.

A state file that is not JSON, or a bookmark whose digests are not base64 or whose hour is not
an hour, used to stop the run with a traceback (`Incorrect padding`, `JSONDecodeError`); now the
message names the file or the stream and says what to do. A bookmark whose newest hour is in
the future (read from a stray folder by an earlier version) is repaired, with a warning: its
future hours would otherwise keep every real hour out of the lookback window for good.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from plugin_support.state_files import json_type, state_from_text
from tap_braze_currents.file_ledger import unpack_digests
from tap_braze_currents.layout import parse_hour

logger = logging.getLogger(__name__)

WHAT_TO_DO = ("Pass the state file this tap wrote, or remove the stream's bookmark (it is then "
              "read again from start_date).")


class StateError(ValueError):
    """The input state cannot be used; the message names the file or stream and what to do."""


def parse_state_text(text: str, source: str) -> dict[str, Any]:
    """A state file's text as a dict; StateError naming `source` when it is not one."""
    return state_from_text(text, source, WHAT_TO_DO, StateError)


def _problem(bookmark: Any) -> str | None:
    """What is wrong with one stream's bookmark, or None."""
    if not isinstance(bookmark, dict):
        return f"the bookmark is a JSON {json_type(bookmark)}, not an object"
    newest = bookmark.get("newest_hour")
    if newest is not None and (not isinstance(newest, str) or parse_hour(newest) is None):
        return f"newest_hour {newest!r} is not an hour (YYYY-MM-DD-HH)"
    read = bookmark.get("read", {})
    if not isinstance(read, dict):
        return f"read is a JSON {json_type(read)}, not an object"
    for hour, digests in read.items():
        if parse_hour(hour) is None:
            return f"read names {hour!r}, which is not an hour (YYYY-MM-DD-HH)"
        try:
            unpack_digests(digests)
        except (ValueError, TypeError) as exc:
            return f"the files read in hour {hour} are not digests ({exc})"
    return None


def check_state(state: Mapping[str, Any], latest_hour: str) -> None:
    """Refuse a state this tap did not write; drop hours after `latest_hour` from bookmarks.

    Raises StateError naming the stream. Changes `state` in place (future hours only).
    """
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        msg = (f"The state's bookmarks are a JSON {json_type(bookmarks)}, not an object: "
               f"not a state this tap wrote. {WHAT_TO_DO}")
        raise StateError(msg)
    for stream, bookmark in bookmarks.items():
        problem = _problem(bookmark)
        if problem is not None:
            msg = (f"The state for stream {stream} is not a state this tap wrote: {problem}. "
                   f"{WHAT_TO_DO}")
            raise StateError(msg)
        _drop_future_hours(stream, bookmark, latest_hour)


def _drop_future_hours(stream: str, bookmark: dict[str, Any], latest_hour: str) -> None:
    newest = bookmark.get("newest_hour")
    if newest is None or newest <= latest_hour:
        return
    read = bookmark.get("read", {})
    for hour in [h for h in read if h > latest_hour]:
        del read[hour]
    kept = max(read, default=None)
    if kept is None:
        del bookmark["newest_hour"]
    else:
        bookmark["newest_hour"] = kept
    logger.warning(
        "The state for stream %s has newest_hour %s, later than now plus "
        "future_hours_tolerance (%s): an earlier run read a folder from the future. Its future "
        "hours are dropped and the stream is read from %s, so no real hour after them is "
        "skipped", stream, newest, latest_hour,
        f"hour {kept} minus lookback_hours" if kept else "start_date")
