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
from target_braze.braze_rules import MAX_OBJECTS_PER_REQUEST, USERS_TRACK_PATH

MAPPINGS = ["mixpanel_cohorts", "attributes"]
ATTRIBUTE_MODES = ["array", "boolean"]

CONFIG_SCHEMA = th.PropertiesList(
    th.Property("api_key", th.StringType, secret=True,
                description="Braze REST API key with the users.track permission."),
    th.Property("rest_endpoint", th.StringType, required=True,
                description="The instance's REST endpoint, e.g. https://rest.iad-01.braze.com "
                "or https://rest.fra-01.braze.eu; POSTs go to {rest_endpoint}/users/track."),
    th.Property("mapping", th.StringType, default="mixpanel_cohorts", allowed_values=MAPPINGS,
                description="mixpanel_cohorts: tap-mixpanel-cohorts' cohort_membership_changes "
                "stream onto a cohort attribute (other streams are skipped and counted); "
                "attributes: any tap, one attributes object per record."),
    th.Property("cohort_attribute", th.StringType, default="mixpanel_cohorts",
                description="mixpanel_cohorts: the custom attribute holding the cohorts (array "
                "mode), or the prefix of one attribute per cohort (boolean mode)."),
    th.Property("attribute_mode", th.StringType, default="array", allowed_values=ATTRIBUTE_MODES,
                description="array: one array attribute of cohort names, changed with add and "
                "remove; boolean: <cohort_attribute>_<cohort name> true while a member, removed "
                "when not (for users in more cohorts than an array holds, 25 by default)."),
    th.Property("external_id_field", th.StringType, default="external_id",
                description="attributes: the field holding the Braze external_id; the other "
                "fields (but _sdc_*) become custom attributes."),
    th.Property("objects_per_request", th.IntegerType, default=MAX_OBJECTS_PER_REQUEST,
                description="Attributes objects per request: at most 75 (50 on Braze's newer "
                "MAU plan)."),
    th.Property("max_concurrency", th.IntegerType, default=8,
                description="Requests in flight at once."),
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
        endpoint = str(config.get("rest_endpoint") or "").rstrip("/")
        if not endpoint.startswith(("https://", "http://")):
            msg = ("rest_endpoint must be the instance's REST endpoint URL, e.g. "
                   f"https://rest.iad-01.braze.com; got {endpoint!r}")
            raise SettingError(msg)
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
        attribute = str(config["cohort_attribute"])
        if not attribute or attribute.startswith("$"):
            msg = f"cohort_attribute must be a custom attribute name, got {attribute!r}"
            raise SettingError(msg)
        return cls(api_key=str(config.get("api_key") or ""),
                   users_track_url=endpoint + USERS_TRACK_PATH,
                   mapping=str(config["mapping"]), cohort_attribute=attribute,
                   attribute_mode=str(config["attribute_mode"]),
                   external_id_field=str(config["external_id_field"]),
                   objects_per_request=per_request, max_concurrency=concurrency,
                   adaptive_sending=bool(config["adaptive_sending"]),
                   retry=retry_policy_from(config),
                   request_timeout=float(config["request_timeout_seconds"]),
                   dead_letter_path=str(config["dead_letter_path"]),
                   dry_run=bool(config["dry_run"]), dry_run_path=str(config["dry_run_path"]),
                   progress_seconds=float(config["progress_interval_seconds"]))
