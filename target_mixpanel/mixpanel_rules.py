"""What Mixpanel's Import API refuses, checked before sending (docs: import-events, limits).

An event that breaks a rule is dead-lettered locally, without a request.
"""

from __future__ import annotations

import re
import time

MAX_EVENTS_PER_REQUEST = 2000
MAX_REQUEST_BYTES = 10 * 1024 * 1024       # uncompressed JSON per request
MAX_EVENT_BYTES = 1024 * 1024               # per event, "under 1 MB"
MAX_PROPERTIES = 255                        # per event
EARLIEST_TIME_SECONDS = 31_536_000          # 1971-01-01T00:00:00Z
MAX_FUTURE_SECONDS = 3600                   # "not more than 1 hour ahead"
MILLISECONDS_THRESHOLD = 100_000_000_000    # larger epoch values are milliseconds

INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")

# distinct_id values Mixpanel refuses (compared lower-cased, stripped).
REFUSED_DISTINCT_IDS = frozenset({
    "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a",
    "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}",
})

REGION_HOSTS = {
    "US": "https://api.mixpanel.com",
    "EU": "https://api-eu.mixpanel.com",
    "IN": "https://api-in.mixpanel.com",
}


class Refused(Exception):  # noqa: N818 - reads as "the event is refused"
    """An event Mixpanel would refuse; `field` names the property at fault.

    `setting` names the target setting that made it so (a mapping setting pointing at a field
    the record lacks), when there is one.
    """

    def __init__(self, field: str, message: str, setting: str | None = None):
        """A refusal of one field, with a message for the dead-letter file."""
        super().__init__(message)
        self.field = field
        self.message = message
        self.setting = setting


def epoch_seconds(value: float) -> float:
    """Epoch seconds of a Mixpanel time value given in seconds or milliseconds."""
    return value / 1000 if value >= MILLISECONDS_THRESHOLD else value


def check_event(name: object, properties: dict) -> None:
    """Raise Refused when Mixpanel would refuse this event (size is checked by the encoder)."""
    if not isinstance(name, str) or not name:
        raise Refused("event", f"event name must be a non-empty string, got {name!r}")
    distinct_id = properties.get("distinct_id")
    if not isinstance(distinct_id, str):
        raise Refused("distinct_id", f"distinct_id must be a string, got {type(distinct_id).__name__}")  # noqa: E501
    if distinct_id.strip().lower() in REFUSED_DISTINCT_IDS:
        raise Refused("distinct_id", f"distinct_id {distinct_id!r} is refused by Mixpanel")
    moment = properties.get("time")
    if isinstance(moment, bool) or not isinstance(moment, (int, float)):
        raise Refused("time", f"time must be epoch seconds or milliseconds, got {moment!r}")
    seconds = epoch_seconds(moment)
    if seconds < EARLIEST_TIME_SECONDS:
        raise Refused("time", f"time {moment} is before 1971")
    if seconds > time.time() + MAX_FUTURE_SECONDS:
        raise Refused("time", f"time {moment} is more than 1 hour in the future")
    insert_id = properties.get("$insert_id")
    if not isinstance(insert_id, str) or not INSERT_ID.fullmatch(insert_id):
        raise Refused("$insert_id", f"$insert_id {insert_id!r} is not 1-36 of [A-Za-z0-9-]")
    if len(properties) > MAX_PROPERTIES:
        raise Refused("properties", f"{len(properties)} properties; Mixpanel takes at most "
                      f"{MAX_PROPERTIES}")
