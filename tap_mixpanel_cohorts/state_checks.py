"""The saved state, checked before anything is emitted: every entry the run will use.

A state names, per cohort, the snapshot Braze (or the warehouse) has. An entry that is not
what this tap wrote (a hand edit, another tap's state, a path outside snapshot_url such as
`../../x`) is refused naming its key, before the first record: a run must never emit half of
its changes and then fail on the next cohort's entry.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from plugin_support.state_files import state_from_text as read_state_text
from tap_mixpanel_cohorts.snapshots import NAME_PATTERN

# A spool message's name (plugin_support/webhook_spool.py: a SHA-256 digest of the body)
SPOOL_MESSAGE_NAME = re.compile(r"^[0-9a-f]{32}\.json$")

DELIVERED_STREAMS = ("user_cohorts", "cohort_membership_changes")
CLEAR_HINT = ("Fix the state, or clear it (`meltano state clear <state id>`) for a full sync "
              "(the first run then sends every member's set).")


class StateError(Exception):
    """The saved state cannot be used; the message names the key and what to do."""


def state_from_text(text: str, source: str) -> dict[str, Any]:
    """A state file's text as an object; StateError naming the file when it is not one."""
    return read_state_text(text, source, CLEAR_HINT, StateError)


def _refuse(key: str, problem: str) -> StateError:
    return StateError(f"state {key}: {problem}. {CLEAR_HINT}")


def _check_entry(key: str, entry: Any) -> None:
    if not isinstance(entry, Mapping):
        raise _refuse(key, f"must be an object {{name, snapshot, synced_at}}, got {entry!r:.80}")
    name, snapshot = entry.get("name"), entry.get("snapshot")
    if not isinstance(name, str):
        raise _refuse(f"{key}.name", f"must be the cohort's name, got {name!r:.80}")
    if not isinstance(snapshot, str) or NAME_PATTERN.match(snapshot) is None:
        raise _refuse(f"{key}.snapshot", f"{snapshot!r:.80} is not a snapshot this tap wrote "
                      "(cohort-<id>/<time>-<hex>, inside snapshot_url)")
    if not snapshot.startswith(f"cohort-{key.rsplit('.', 1)[-1]}/"):
        raise _refuse(f"{key}.snapshot", f"{snapshot!r} is another cohort's snapshot")
    _check_spool_position(key, entry)


def _check_spool_position(key: str, entry: Mapping[str, Any]) -> None:
    """Source webhook: the spool position beside the snapshot (absent with query_api)."""
    position = entry.get("position")
    if position is not None and (not isinstance(position, int) or isinstance(position, bool)
                                 or position < 0):
        raise _refuse(f"{key}.position", f"must be a spool arrival time (a whole number of "
                      f"nanoseconds, 0 or more), got {position!r:.80}")
    above = entry.get("settled_above")
    if above is None:
        return
    if not isinstance(above, list):
        raise _refuse(f"{key}.settled_above", f"must be a list of spool message names, got "
                      f"{above!r:.80}")
    for name in above:
        if not isinstance(name, str) or SPOOL_MESSAGE_NAME.match(name) is None:
            raise _refuse(f"{key}.settled_above", f"{name!r:.80} is not a spool message name "
                          "(<hex digest>.json)")


def check_saved_state(state: Mapping[str, Any]) -> None:
    """Raise StateError naming the first entry of the delivered streams' state that is bad."""
    bookmarks = state.get("bookmarks") or {}
    if not isinstance(bookmarks, Mapping):
        raise _refuse("bookmarks", f"must be an object, got {bookmarks!r:.80}")
    for stream in DELIVERED_STREAMS:
        saved = bookmarks.get(stream)
        if saved is None:
            continue
        key = f"bookmarks.{stream}"
        if not isinstance(saved, Mapping):
            raise _refuse(key, f"must be an object, got {saved!r:.80}")
        cohorts = saved.get("cohorts", {})
        if not isinstance(cohorts, Mapping):
            raise _refuse(f"{key}.cohorts", f"must be an object, got {cohorts!r:.80}")
        for cohort_id, entry in cohorts.items():
            if not str(cohort_id).isdigit():
                raise _refuse(f"{key}.cohorts", f"{cohort_id!r:.80} is not a cohort id")
            _check_entry(f"{key}.cohorts.{cohort_id}", entry)
        resync = saved.get("full_resync_at")
        if resync is not None:
            try:
                dt.datetime.fromisoformat(str(resync).replace("Z", "+00:00"))
            except ValueError:
                raise _refuse(f"{key}.full_resync_at",
                              f"{resync!r:.80} is not a time") from None
