"""How Currents lays files out in a bucket: the `event_type=` and `date=` key segments, and hours.

Only these two segments are relied on; whatever sits between the prefix and `event_type=`
(integration folders) or after `date=` (`version=N/<env>` or the older `<schema-id>/<zone>`)
is walked, not parsed, as Braze advises.
"""

from __future__ import annotations

import datetime as dt

EVENT_TYPE_PREFIX = "event_type="
DATE_PREFIX = "date="
HOUR_FORMAT = "%Y-%m-%d-%H"
AVRO_SUFFIX = ".avro"


def segment_value(path: str, prefix: str) -> str | None:
    """The value of the first `prefix...` segment of a path, or None."""
    for segment in path.rstrip("/").split("/"):
        if segment.startswith(prefix):
            return segment[len(prefix) :]
    return None


def basename(path: str) -> str:
    """The last segment of a path."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def parse_hour(value: str) -> dt.datetime | None:
    """The UTC hour of a `date=` value (YYYY-MM-DD-HH), or None when it is not one."""
    try:
        return dt.datetime.strptime(value, HOUR_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def hour_key(moment: dt.datetime) -> str:
    """The `date=` value of the hour holding a moment (naive moments are taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime(HOUR_FORMAT)


def shift_hour(hour: str, hours: int) -> str:
    """An hour key moved by a number of hours."""
    parsed = parse_hour(hour)
    if parsed is None:
        msg = f"not an hour key: {hour!r}"
        raise ValueError(msg)
    return hour_key(parsed + dt.timedelta(hours=hours))
