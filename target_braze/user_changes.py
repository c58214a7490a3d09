"""Records -> changes to Braze users, and changes merged into one attributes object per user.

`mixpanel_cohorts`: a record of tap-mixpanel-cohorts' `cohort_membership_changes` stream
(cohort_id, cohort_name, user_id, action add|remove, synced_at) adds the cohort to the user's
cohort attribute or removes it. `attributes`: any record names a user by `external_id_field`;
its other fields are set as custom attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from target_braze.settings import BrazeSettings

COHORT_STREAM = "cohort_membership_changes"
ACTIONS = ("add", "remove")
UPDATE_EXISTING_ONLY = "_update_existing_only"


class Skipped(Exception):  # noqa: N818 - a record skipped by rule, not an error
    """A record that changes nothing on purpose; `rule` says why (it is counted)."""

    def __init__(self, rule: str):
        super().__init__(rule)
        self.rule = rule


class Refused(Exception):  # noqa: N818 - the record is refused, the run goes on
    """A record that cannot become a change: dead-lettered, naming the field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class Change:
    """What one record changes on one user."""

    external_id: str
    add: list[str] = field(default_factory=list)      # values added to the array attribute
    remove: list[str] = field(default_factory=list)   # values removed from it
    set: dict[str, Any] = field(default_factory=dict)  # attribute -> value (None removes it)


def attribute_slug(name: str) -> str:
    """A cohort name as part of an attribute name: lower case, runs of other signs as _."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "cohort"


class UserChanges:
    """The mapping the settings choose, and how changes fold into attributes objects."""

    def __init__(self, settings: BrazeSettings):
        """Mapping, attribute name and mode from the settings."""
        self._mapping = settings.mapping
        self._attribute = settings.cohort_attribute
        self._boolean = settings.attribute_mode == "boolean"
        self._id_field = settings.external_id_field

    def change(self, stream: str, record: dict[str, Any]) -> Change:
        """The change a record asks for; raises Skipped or Refused."""
        if self._mapping == "attributes":
            return self._attributes_change(record)
        if stream != COHORT_STREAM:
            raise Skipped(f"stream {stream} (not {COHORT_STREAM})")
        user = _user_id(record.get("user_id"), "user_id")
        action = record.get("action")
        if action not in ACTIONS:
            raise Refused("action", f"action must be 'add' or 'remove', got {action!r}")
        name = record.get("cohort_name")
        if not isinstance(name, str) or not name.strip():
            raise Refused("cohort_name", f"cohort_name must be a non-empty string, got {name!r}")
        if self._boolean:
            value = True if action == "add" else None
            return Change(user, set={f"{self._attribute}_{attribute_slug(name)}": value})
        return Change(user, add=[name]) if action == "add" else Change(user, remove=[name])

    def _attributes_change(self, record: dict[str, Any]) -> Change:
        user = _user_id(record.get(self._id_field), self._id_field)
        values = {k: v for k, v in record.items()
                  if k != self._id_field and not k.startswith("_sdc_")}
        if not values:
            raise Skipped("no attributes besides the user id")
        bad = [k for k in values if k.startswith("$") or k == UPDATE_EXISTING_ONLY]
        if bad:
            raise Refused(bad[0], f"{bad[0]!r} is not a custom attribute name Braze takes")
        return Change(user, set=values)

    def new_object(self, external_id: str) -> dict[str, Any]:
        """An empty attributes object for a user; it never creates the user."""
        return {"external_id": external_id, UPDATE_EXISTING_ONLY: True}

    def fold(self, target: dict[str, Any], change: Change) -> None:
        """Merge a change into the user's object; a later change of one value wins."""
        if change.add or change.remove:
            values = target.setdefault(self._attribute, {})
            for name in change.add:
                _move(values, name, "remove", "add")
            for name in change.remove:
                _move(values, name, "add", "remove")
        target.update(change.set)


def _move(values: dict[str, list[str]], name: str, out_of: str, into: str) -> None:
    if name in values.get(out_of, ()):
        values[out_of].remove(name)
        if not values[out_of]:
            del values[out_of]
    if name not in values.setdefault(into, []):
        values[into].append(name)


def _user_id(value: Any, field_name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise Refused(field_name, f"{field_name} must name the Braze external_id, got {value!r}")
    return str(value)
