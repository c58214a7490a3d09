"""target-braze's settings: each declared once (plugin_support.declared_settings)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from plugin_support.config_errors import SettingError
from plugin_support.declared_settings import setting
from plugin_support.delivery_settings import DeliverySettings
from plugin_support.setting_checks import check_http_url
from target_braze.braze_rules import (
    DEFAULT_ARRAY_LIMIT,
    IDENTIFIERS,
    MAX_ARRAY_LIMIT,
    MAX_OBJECTS_PER_REQUEST,
    USERS_TRACK_PATH,
)

MAPPINGS = ["mixpanel_cohorts", "attributes"]
ATTRIBUTE_MODES = ["array", "boolean"]


@dataclass(frozen=True, kw_only=True)
class BrazeSettings(DeliverySettings):
    """The settings a run uses, checked."""

    setting_words: ClassVar[dict[str, str]] = {"prefix": "braze", "delivered": "applied"}

    api_key: str = setting("", secret=True, description="Braze REST API key with the "
                           "users.track permission.")
    rest_endpoint: str = setting(
        required=True, description="The instance's REST endpoint, e.g. "
        "https://rest.iad-01.braze.com or https://rest.fra-01.braze.eu; POSTs go to "
        "{rest_endpoint}/users/track.")
    mapping: str = setting(
        "mixpanel_cohorts", options=MAPPINGS,
        description="mixpanel_cohorts: tap-mixpanel-cohorts' user_cohorts stream (each user's "
        "whole set of cohorts) onto a cohort attribute (other streams are skipped and "
        "counted); attributes: any tap, one attributes object per record.")
    cohort_attribute: str = setting(
        "mixpanel_cohorts",
        description="mixpanel_cohorts: the custom attribute holding the cohorts (array mode), "
        "or the prefix of one attribute per cohort (boolean mode).")
    attribute_mode: str = setting(
        "array", options=ATTRIBUTE_MODES,
        description="array: one array attribute holding the user's whole set of cohort names "
        "(replaced each time; null when empty); boolean: <cohort_attribute>_<cohort name> true "
        "while a member, false when not (for users in more cohorts than an array holds).")
    array_limit: int = setting(
        DEFAULT_ARRAY_LIMIT, minimum=1, maximum=MAX_ARRAY_LIMIT,
        description="array mode: the values cohort_attribute holds in Braze (25 by default, "
        "raisable per attribute in the dashboard). Braze truncates a longer array silently, so "
        "a user in more cohorts is dead-lettered instead, saying what to do.")
    braze_identifier: str = setting(
        "external_id", options=IDENTIFIERS,
        description="mixpanel_cohorts: how the tap's user_id names the Braze user: "
        "external_id, user_alias (alias_name, with user_alias_label), email or braze_id.")
    user_alias_label: str = setting(
        "", description="braze_identifier user_alias: the alias_label of the users' aliases "
        "(e.g. mixpanel_distinct_id).")
    external_id_field: str = setting(
        "external_id", description="attributes: the field holding the Braze external_id; the "
        "other fields (but _sdc_*) become custom attributes.")
    objects_per_request: int = setting(
        MAX_OBJECTS_PER_REQUEST, minimum=1, maximum=MAX_OBJECTS_PER_REQUEST,
        description="Attributes objects per request: at most 75 (50 on Braze's newer MAU "
        "plan).")
    max_concurrency: int = setting(8, minimum=1, maximum=256,
                                   description="Requests in flight at once.")
    adaptive_sending: bool = setting(
        True, description="Pace requests from Braze's X-RateLimit-* headers, so a sync runs "
        "near the account's limit without a storm of 429s.")

    @cached_property
    def users_track_url(self) -> str:
        """Where requests go: rest_endpoint (checked) + /users/track."""
        endpoint = check_http_url("rest_endpoint", self.rest_endpoint or "",
                                  "https://rest.iad-01.braze.com (the instance's REST endpoint)")
        return endpoint + USERS_TRACK_PATH

    def check(self) -> None:
        """What the schema cannot say; SettingError names the setting."""
        self.users_track_url  # noqa: B018 - checks rest_endpoint
        if not self.dry_run and not self.api_key:
            msg = ("api_key is not set: give a Braze REST API key with the users.track "
                   "permission (or dry_run: true)")
            raise SettingError(msg)
        if not 1 <= self.objects_per_request <= MAX_OBJECTS_PER_REQUEST:
            msg = (f"objects_per_request must be 1 to {MAX_OBJECTS_PER_REQUEST} (Braze's "
                   f"limit), got {self.objects_per_request}")
            raise SettingError(msg)
        if self.max_concurrency < 1:
            msg = f"max_concurrency must be at least 1, got {self.max_concurrency}"
            raise SettingError(msg)
        if self.braze_identifier == "user_alias" and not self.user_alias_label:
            msg = ("braze_identifier is user_alias but user_alias_label is not set: give the "
                   "alias_label of the users' aliases")
            raise SettingError(msg)
        if not 1 <= self.array_limit <= MAX_ARRAY_LIMIT:
            msg = f"array_limit must be 1 to {MAX_ARRAY_LIMIT}, got {self.array_limit}"
            raise SettingError(msg)
        if not self.cohort_attribute or self.cohort_attribute.startswith("$"):
            msg = (f"cohort_attribute must be a custom attribute name, got "
                   f"{self.cohort_attribute!r}")
            raise SettingError(msg)


CONFIG_SCHEMA = BrazeSettings.schema()
