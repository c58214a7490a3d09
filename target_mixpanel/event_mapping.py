"""Singer records -> Mixpanel events: Braze Currents' own naming, or a generic mapping for any tap.

A mapping returns the event as {"event": name, "properties": {...}} or raises SkippedByRule
(counted, never sent) or Refused (dead-lettered). The same record always maps to the same
event, time, distinct_id and $insert_id, so a replay is deduplicated by Mixpanel.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import string
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from target_mixpanel.mixpanel_rules import INSERT_ID, Refused

# Braze field -> Mixpanel property name, where they differ.
BRAZE_RENAMED_FIELDS = {"platform": "$os", "os_version": "$os_version", "device_model": "$device"}
# Braze fields that become the event's identity instead of properties.
BRAZE_IDENTITY_FIELDS = ("id", "time", "time_ms", "external_user_id", "event_type")
# Singer metadata a tap or the SDK adds (_sdc_source_file, _sdc_filename, ...): never sent.
SINGER_METADATA_PREFIX = "_sdc_"
# Event types whose JSON `properties` are spread into prefixed properties.
BRAZE_PROPERTY_PREFIXES = {
    "users.behaviors.CustomEvent": "[Custom event property] ",
    "users.behaviors.Purchase": "[Purchase property] ",
}
SKIP_NO_EXTERNAL_ID = "no external_user_id (Braze sends only identified users' events)"
_FORMATTER = string.Formatter()


class SkippedByRule(Exception):  # noqa: N818 - reads as "the record is skipped by rule"
    """A record deliberately not sent; `rule` says why (it is counted, not dead-lettered)."""

    def __init__(self, rule: str):
        """A skip under a named rule."""
        super().__init__(rule)
        self.rule = rule


@cache
def braze_event_names() -> dict[str, dict[str, Any]]:
    """Braze's Mixpanel event name per Currents type (generated from ../shared/mixpanel)."""
    text = resources.files(__package__).joinpath("braze_event_names.json").read_text("utf-8")
    table: dict[str, dict[str, Any]] = json.loads(text)
    return table


def is_singer_metadata(field: str) -> bool:
    """Whether a field is Singer metadata (`_sdc_*`), which no mapping sends as a property."""
    return field.startswith(SINGER_METADATA_PREFIX)


class NotProperties:
    """The field names a mapping leaves out: its own fields, and every Singer metadata field.

    Records repeat the same names, so each name is judged by is_singer_metadata once (a
    per-field call on every record would cost about a microsecond per event).
    """

    def __init__(self, fields: Iterable[str | None]):
        """`fields`: the names the mapping uses otherwise (identity, time, ...)."""
        self._left_out: set[str | None] = set(fields)
        self._judged: set[str | None] = set(self._left_out)

    def of(self, record: dict[str, Any]) -> set[str | None]:
        """The names to leave out of this record."""
        if not self._judged.issuperset(record):
            for field in record.keys() - self._judged:
                if is_singer_metadata(field):
                    self._left_out.add(field)
                self._judged.add(field)
        return self._left_out


def stream_of(event_type: str) -> str:
    """The tap's stream name of a Currents event type."""
    return event_type.lower().replace(".", "_")


def insert_id_for(value: object) -> str:
    """The value itself when it is a valid $insert_id, else a deterministic 32-hex digest of it."""
    text = value if isinstance(value, str) else msgspec.json.encode(value, order="sorted").decode()
    if INSERT_ID.fullmatch(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class BrazeCurrentsMapping:
    """Currents records (from tap-braze-currents) named and shaped as Braze's Mixpanel export."""

    def __init__(self) -> None:
        """Load the event name table."""
        self._names = {t: v["mixpanel_event"] for t, v in braze_event_names().items()}
        self._type_of_stream = {stream_of(t): t for t in self._names}
        self._not_properties = NotProperties(BRAZE_IDENTITY_FIELDS)

    def event_name(self, event_type: str, record: dict[str, Any]) -> str:
        """The Mixpanel event name of a record of a Currents type."""
        template = self._names.get(event_type)
        if template is None:
            return event_type  # a type newer than the table: keep Braze's own name
        if "{" not in template:
            return template
        fields = {f for _, f, _, _ in _FORMATTER.parse(template) if f}
        return template.format(**{f: record.get(f, "") for f in fields})

    def map(self, stream: str, record: dict[str, Any]) -> dict[str, Any]:
        """One Currents record as a Mixpanel event."""
        event_type = record.get("event_type") or self._type_of_stream.get(stream, stream)
        distinct_id = record.get("external_user_id")
        if distinct_id is None or distinct_id == "":
            raise SkippedByRule(SKIP_NO_EXTERNAL_ID)
        if "id" not in record:
            raise Refused("id", "record has no Braze event id")
        moment = record.get("time_ms")
        if moment is None:
            moment = record.get("time")
        left_out = self._not_properties.of(record)
        properties = {k: v for k, v in record.items() if v is not None and k not in left_out}
        for source, target in BRAZE_RENAMED_FIELDS.items():
            if source in properties:
                properties[target] = properties.pop(source)
        prefix = BRAZE_PROPERTY_PREFIXES.get(event_type)
        if prefix is not None:
            custom = properties.get("properties")
            if isinstance(custom, dict):
                del properties["properties"]
                properties.update({prefix + k: v for k, v in custom.items() if v is not None})
        properties["time"] = moment
        properties["distinct_id"] = distinct_id
        properties["$insert_id"] = insert_id_for(record["id"])
        return {"event": self.event_name(event_type, record), "properties": properties}


def _epoch(value: object, field: str) -> float:
    if isinstance(value, bool):
        raise Refused(field, f"time field {field!r} holds a boolean", "time_field")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return int(number) if number.is_integer() else number
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Refused(field, f"time field {field!r} is not a number or ISO date-time: "
                          f"{value!r}", "time_field") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return round(moment.timestamp() * 1000)
    raise Refused(field, f"time field {field!r} is missing or not a time: {value!r}",
                  "time_field")


class GenericMapping:
    """Any tap's records: event name from a template, identity from named fields."""

    def __init__(self, event_name: str, distinct_id_field: str, time_field: str,
                 insert_id_field: str | None):
        """`event_name` is fixed text with optional {field} or {stream} placeholders."""
        self.event_name = event_name
        self._name_fields = {f for _, f, _, _ in _FORMATTER.parse(event_name) if f}
        self.distinct_id_field = distinct_id_field
        self.time_field = time_field
        self.insert_id_field = insert_id_field
        self._not_properties = NotProperties((distinct_id_field, time_field, insert_id_field))

    def map(self, stream: str, record: dict[str, Any]) -> dict[str, Any]:
        """One record as a Mixpanel event."""
        distinct_id = record.get(self.distinct_id_field)
        if isinstance(distinct_id, int) and not isinstance(distinct_id, bool):
            distinct_id = str(distinct_id)
        if distinct_id is None or distinct_id == "":
            raise Refused("distinct_id", f"record has no {self.distinct_id_field!r} "
                          "(distinct_id_field)", "distinct_id_field")
        moment = _epoch(record.get(self.time_field), self.time_field)
        if self.insert_id_field and record.get(self.insert_id_field) not in (None, ""):
            insert_id = insert_id_for(record[self.insert_id_field])
        else:  # the row's own content: a tap's metadata (a file's mtime) may differ on a re-read
            content = {k: v for k, v in record.items() if not is_singer_metadata(k)}
            insert_id = insert_id_for({"stream": stream, "record": content})
        values = {f: record.get(f, "") for f in self._name_fields}
        values["stream"] = stream
        name = self.event_name.format(**values) if self._name_fields else self.event_name
        if not name:
            raise Refused("event", f"event_name {self.event_name!r} gives an empty name for "
                          "this record", "event_name")
        left_out = self._not_properties.of(record)
        properties = {k: v for k, v in record.items() if v is not None and k not in left_out}
        # set last: a column of the same name (a `time` beside time_field) never replaces them
        properties["time"] = moment
        properties["distinct_id"] = distinct_id
        properties["$insert_id"] = insert_id
        return {"event": name, "properties": properties}
