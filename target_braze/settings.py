"""target-braze's settings: declared once (schema, defaults), read once into `BrazeSettings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from plugin_support.config_errors import SettingError
from plugin_support.delivery_settings import (
    output_properties,
    progress_property,
    request_timeout_property,
    retry_policy_from,
    retry_properties,
)
from plugin_support.retry import RetryPolicy
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

CONFIG_SCHEMA = th.PropertiesList(
    th.Property("api_key", th.StringType, secret=True,
                description="Braze REST API key with the users.track permission."),
    th.Property("rest_endpoint", th.StringType, required=True,
                description="The instance's REST endpoint, e.g. https://rest.iad-01.braze.com "
                "or https://rest.fra-01.braze.eu; POSTs go to {rest_endpoint}/users/track."),
    th.Property("mapping", th.StringType, default="mixpanel_cohorts", allowed_values=MAPPINGS,
                description="mixpanel_cohorts: tap-mixpanel-cohorts' user_cohorts stream (each "
                "user's whole set of cohorts) onto a cohort attribute (other streams are "
                "skipped and counted); attributes: any tap, one attributes object per record."),
    th.Property("cohort_attribute", th.StringType, default="mixpanel_cohorts",
                description="mixpanel_cohorts: the custom attribute holding the cohorts (array "
                "mode), or the prefix of one attribute per cohort (boolean mode)."),
    th.Property("attribute_mode", th.StringType, default="array", allowed_values=ATTRIBUTE_MODES,
                description="array: one array attribute holding the user's whole set of cohort "
                "names (replaced each time; null when empty); boolean: "
                "<cohort_attribute>_<cohort name> true while a member, false when not (for users "
                "in more cohorts than an array holds)."),
    th.Property("array_limit", th.IntegerType, default=DEFAULT_ARRAY_LIMIT,
                description="array mode: the values cohort_attribute holds in Braze (25 by "
                "default, raisable per attribute in the dashboard). Braze truncates a longer "
                "array silently, so a user in more cohorts is dead-lettered instead, saying "
                "what to do.",
                minimum=1, maximum=MAX_ARRAY_LIMIT),
    th.Property("braze_identifier", th.StringType, default="external_id",
                allowed_values=IDENTIFIERS,
                description="mixpanel_cohorts: how the tap's user_id names the Braze user: "
                "external_id, user_alias (alias_name, with user_alias_label), email or "
                "braze_id."),
    th.Property("user_alias_label", th.StringType,
                description="braze_identifier user_alias: the alias_label of the users' aliases "
                "(e.g. mixpanel_distinct_id)."),
    th.Property("external_id_field", th.StringType, default="external_id",
                description="attributes: the field holding the Braze external_id; the other "
                "fields (but _sdc_*) become custom attributes."),
    th.Property("objects_per_request", th.IntegerType, default=MAX_OBJECTS_PER_REQUEST,
                description="Attributes objects per request: at most 75 (50 on Braze's newer "
                "MAU plan).", minimum=1, maximum=MAX_OBJECTS_PER_REQUEST),
    th.Property("max_concurrency", th.IntegerType, default=8,
                description="Requests in flight at once.", minimum=1, maximum=256),
    th.Property("adaptive_sending", th.BooleanType, default=True,
                description="Pace requests from Braze's X-RateLimit-* headers, so a sync runs "
                "near the account's limit without a storm of 429s."),
    *retry_properties(),
    request_timeout_property(),
    *output_properties("braze", "applied"),
    progress_property(),
).to_dict()


@dataclass(frozen=True)
class BrazeSettings:
    """The settings a run uses, checked."""

    api_key: str
    users_track_url: str
    mapping: str
    cohort_attribute: str
    attribute_mode: str
    external_id_field: str
    array_limit: int
    braze_identifier: str
    user_alias_label: str
    objects_per_request: int
    max_concurrency: int
    adaptive_sending: bool
    retry: RetryPolicy
    request_timeout: float
    dead_letter_path: str
    dry_run: bool
    dry_run_path: str
    progress_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BrazeSettings:
        """Read validated settings (the SDK filled in the defaults); SettingError names one."""
        endpoint = check_http_url("rest_endpoint", str(config.get("rest_endpoint") or ""),
                                  "https://rest.iad-01.braze.com (the instance's REST endpoint)")
        if not config.get("dry_run") and not config.get("api_key"):
            msg = ("api_key is not set: give a Braze REST API key with the users.track "
                   "permission (or dry_run: true)")
            raise SettingError(msg)
        per_request = int(config["objects_per_request"])
        if not 1 <= per_request <= MAX_OBJECTS_PER_REQUEST:
            msg = (f"objects_per_request must be 1 to {MAX_OBJECTS_PER_REQUEST} (Braze's "
                   f"limit), got {per_request}")
            raise SettingError(msg)
        concurrency = int(config["max_concurrency"])
        if concurrency < 1:
            msg = f"max_concurrency must be at least 1, got {concurrency}"
            raise SettingError(msg)
        identifier = str(config.get("braze_identifier") or "external_id")
        label = str(config.get("user_alias_label") or "")
        if identifier == "user_alias" and not label:
            msg = ("braze_identifier is user_alias but user_alias_label is not set: give the "
                   "alias_label of the users' aliases")
            raise SettingError(msg)
        array_limit = int(config.get("array_limit") or DEFAULT_ARRAY_LIMIT)
        if not 1 <= array_limit <= MAX_ARRAY_LIMIT:
            msg = f"array_limit must be 1 to {MAX_ARRAY_LIMIT}, got {array_limit}"
            raise SettingError(msg)
        attribute = str(config["cohort_attribute"])
        if not attribute or attribute.startswith("$"):
            msg = f"cohort_attribute must be a custom attribute name, got {attribute!r}"
            raise SettingError(msg)
        return cls(api_key=str(config.get("api_key") or ""),
                   users_track_url=endpoint + USERS_TRACK_PATH,
                   mapping=str(config["mapping"]), cohort_attribute=attribute,
                   attribute_mode=str(config["attribute_mode"]),
                   external_id_field=str(config["external_id_field"]),
                   array_limit=array_limit, braze_identifier=identifier,
                   user_alias_label=label,
                   objects_per_request=per_request, max_concurrency=concurrency,
                   adaptive_sending=bool(config["adaptive_sending"]),
                   retry=retry_policy_from(config),
                   request_timeout=float(config["request_timeout_seconds"]),
                   dead_letter_path=str(config["dead_letter_path"]),
                   dry_run=bool(config["dry_run"]), dry_run_path=str(config["dry_run_path"]),
                   progress_seconds=float(config["progress_interval_seconds"]))
