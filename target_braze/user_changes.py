"""Records -> changes to Braze users, and changes merged into one attributes object per user.

`mixpanel_cohorts`: a record of tap-mixpanel-cohorts' `user_cohorts` stream (user_id, the
user's whole set `cohort_names`, every synced name `synced_cohort_names`, `full_resync`) sets
the user's cohort attribute to the whole set (a plain array, which Braze replaces; null when
empty), or every synced cohort's boolean. A set larger than `array_limit` is refused, never
sent for Braze to truncate. `attributes`: any record names a user by `external_id_field`; its
other fields are set as custom attributes. The user is named in Braze by `braze_identifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plugin_support.cohort_names import attribute_slug
from target_braze.settings import BrazeSettings

COHORT_STREAM = "user_cohorts"
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
    """What one record changes on one user (named by the braze_identifier's value)."""

    user: str
    set: dict[str, Any] = field(default_factory=dict)  # attribute -> value (None removes it)
    bulk: bool = False                                  # part of a first sync or full resync


class UserChanges:
    """The mapping the settings choose, and how changes fold into attributes objects."""

    def __init__(self, settings: BrazeSettings):
        """Mapping, attribute name and mode from the settings."""
        self._mapping = settings.mapping
        self._attribute = settings.cohort_attribute
        self._boolean = settings.attribute_mode == "boolean"
        self._id_field = settings.external_id_field
        self._array_limit = settings.array_limit
        self._identifier = settings.braze_identifier
        self._alias_label = settings.user_alias_label

    @property
    def is_cohort_mapping(self) -> bool:
        """Whether records carry cohort sets (mapping mixpanel_cohorts)."""
        return self._mapping != "attributes"

    def change(self, stream: str, record: dict[str, Any]) -> Change:
        """The change a record asks for; raises Skipped or Refused."""
        if self._mapping == "attributes":
            return self._attributes_change(record)
        if stream != COHORT_STREAM:
            raise Skipped(f"stream {stream} (not {COHORT_STREAM})")
        user = _user_id(record.get("user_id"), "user_id")
        names = _names(record, "cohort_names")
        bulk = record.get("full_resync") is True
        if self._boolean:
            return Change(user, self._booleans(names, _names(record, "synced_cohort_names")),
                          bulk)
        if len(names) > self._array_limit:
            msg = (f"the user is in {len(names)} synced cohorts, more than array_limit "
                   f"({self._array_limit}); Braze would truncate the array and drop the oldest "
                   "silently, so nothing was sent for this user. Raise the attribute's array "
                   f"limit in Braze (Data Settings > Custom Attributes > {self._attribute}) and "
                   "array_limit to match, or set attribute_mode: boolean.")
            raise Refused("array_limit", msg)
        return Change(user, {self._attribute: names or None}, bulk)

    def _booleans(self, names: list[str], synced: list[str]) -> dict[str, bool]:
        """Every synced cohort's boolean: true for the user's cohorts, false for the others."""
        values: dict[str, bool] = {}
        by_attribute: dict[str, str] = {}
        for name in [*synced, *names]:
            attribute = f"{self._attribute}_{attribute_slug(name)}"
            other = by_attribute.setdefault(attribute, name)
            if other != name:
                msg = (f"cohorts {other!r} and {name!r} give the same boolean attribute "
                       f"{attribute!r}; rename one in Mixpanel (tap-mixpanel-cohorts "
                       "disambiguates its own cohorts as 'NAME (ID)')")
                raise Refused("cohort_names", msg)
            values[attribute] = name in names
        return values

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

    def new_object(self, user: str) -> dict[str, Any]:
        """An empty attributes object naming a user by braze_identifier; it never creates one."""
        if self._identifier == "user_alias":
            return {"user_alias": {"alias_name": user, "alias_label": self._alias_label},
                    UPDATE_EXISTING_ONLY: True}
        return {self._identifier: user, UPDATE_EXISTING_ONLY: True}

    @staticmethod
    def fold(target: dict[str, Any], change: Change) -> None:
        """Merge a change into the user's object; a later value of an attribute wins."""
        target.update(change.set)


def _names(record: dict[str, Any], field_name: str) -> list[str]:
    value = record.get(field_name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        msg = f"{field_name} must be a list of cohort names, got {value!r}"
        raise Refused(field_name, msg)
    return list(dict.fromkeys(value))


def _user_id(value: Any, field_name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise Refused(field_name, f"{field_name} must name the Braze user, got {value!r}")
    return str(value)
