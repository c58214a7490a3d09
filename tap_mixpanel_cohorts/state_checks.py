"""The saved state, checked before anything is emitted: every entry the run will use.

A state names, per cohort, the snapshot Braze (or the warehouse) has. An entry that is not
what this tap wrote (a hand edit, another tap's state, a path outside snapshot_url such as
`../../x`) is refused naming its key, before the first record: a run must never emit half of
its changes and then fail on the next cohort's entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from tap_mixpanel_cohorts.snapshots import NAME_PATTERN

DELIVERED_STREAMS = ("user_cohorts", "cohort_membership_changes")
CLEAR_HINT = ("Fix the state, or clear it (`meltano state clear <state id>`) for a full sync "
              "(the first run then sends every member's set).")


class StateError(Exception):
    """The saved state cannot be used; the message names the key and what to do."""


def state_from_text(text: str, source: str) -> dict[str, Any]:
    """A state file's text as an object; StateError naming the file when it is not one."""
    if not text.strip():
        return {}
    try:
        state = json.loads(text)
    except ValueError as exc:
        msg = f"The state file {source} is not JSON ({exc}). {CLEAR_HINT}"
        raise StateError(msg) from None
    if not isinstance(state, dict):
        msg = (f"The state file {source} holds {type(state).__name__} {state!r:.40}, not an "
               f"object with bookmarks. {CLEAR_HINT}")
        raise StateError(msg)
    if state.get("type") == "STATE" and "value" in state:
        msg = (f"The state file {source} holds a whole STATE message: pass its value (the "
               "object with bookmarks) instead.")
        raise StateError(msg)
    return state


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
