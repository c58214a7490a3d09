"""target-mixpanel's settings: each declared once (plugin_support.declared_settings)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from plugin_support.config_errors import SettingError, secret_values
from plugin_support.declared_settings import setting
from plugin_support.delivery_settings import DeliverySettings
from plugin_support.setting_checks import check_http_url
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES, REGION_HOSTS

logger = logging.getLogger("target-mixpanel")
AUTH_SETTINGS = ("project_id + service_account_username + service_account_secret, "
                 "or project_token, or api_secret")
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_CONCURRENCY = 200
MAX_WORKER_PROCESSES = 64
# Where tap-braze-currents writes its batch files in meltano.yml's prod environment
DEFAULT_BATCH_ROOTS = (".meltano/run/braze-batches",)
__all__ = ["CONFIG_SCHEMA", "MixpanelAuth", "MixpanelSettings", "SettingError"]


def default_worker_processes() -> int:
    """CPUs + 1 (a worker waiting on Mixpanel leaves its CPU to another), at most 8."""
    return min(8, (os.cpu_count() or 1) + 1)


@dataclass(frozen=True, kw_only=True)
class MixpanelSettings(DeliverySettings):
    """The settings a run uses, checked (it pickles, for the worker processes)."""

    setting_words: ClassVar[dict[str, str]] = {"prefix": "mixpanel", "delivered": "imported"}

    project_id: str | None = setting(
        None, description="Mixpanel project id (required with a service account).")
    service_account_username: str | None = setting(
        None, description="Service account user name (preferred auth).")
    service_account_secret: str = setting("", secret=True,
                                          description="Service account secret.")
    project_token: str = setting(
        "", secret=True, description="Project token (auth when no service account is given).")
    api_secret: str = setting(
        "", secret=True, description="Project API secret (deprecated by Mixpanel; works, warns).")
    region: str = setting("US", options=list(REGION_HOSTS),
                          description="Data residency: US (api), EU (api-eu) or IN (api-in).")
    api_url: str | None = setting(
        None, description="Base URL overriding region (proxies, tests); POSTs go to "
        "{api_url}/import.")
    mapping: str = setting("braze_currents", options=["braze_currents", "generic"],
                           description="braze_currents: Braze's own Mixpanel naming; generic: "
                           "any tap.")
    event_name: str = setting("{stream}", description="generic: event name; {field} and "
                              "{stream} are filled in.")
    distinct_id_field: str = setting("distinct_id",
                                     description="generic: the field holding the user id.")
    time_field: str = setting("time", description="generic: the field holding the event time "
                              "(epoch s/ms or ISO 8601).")
    insert_id_field: str = setting("id", description="generic: the field that identifies an "
                                   "event for dedup (absent: a hash of the record).")
    batch_size: int = setting(MAX_EVENTS_PER_REQUEST, minimum=1, maximum=MAX_EVENTS_PER_REQUEST,
                              description="Events per request (at most 2000).")
    max_batch_bytes: int = setting(DEFAULT_MAX_BATCH_BYTES, minimum=1024,
                                   maximum=MAX_REQUEST_BYTES,
                                   description="Uncompressed bytes per request (at most 10 MB).")
    max_concurrency: int = setting(10, minimum=1, maximum=MAX_CONCURRENCY,
                                   description="Requests in flight at once (split across "
                                   "worker processes).")
    adaptive_sending: bool = setting(True, description="Steer requests in flight and events/s "
                                     "from Mixpanel's answers (AIMD on 429s), starting from "
                                     "max_concurrency.")
    worker_processes: int = setting(factory=default_worker_processes, minimum=1,
                                    maximum=MAX_WORKER_PROCESSES,
                                    description="Processes that map and send events; default: "
                                    "CPUs + 1, at most 8.")
    gzip: bool = setting(True, description="Gzip request bodies.")
    gzip_level: int = setting(1, minimum=0, maximum=3,
                              description="Gzip level (ISA-L): 0 fastest to 3 smallest.")
    strict: bool = setting(True, description="Ask Mixpanel to validate every event (strict=1).")
    delete_batch_files: bool = setting(True, description="BATCH messages: delete each batch "
                                       "file once every record in it is imported, skipped or "
                                       "dead-lettered.")
    batch_roots: tuple[str, ...] = setting(
        DEFAULT_BATCH_ROOTS,
        description="BATCH messages: the folders (paths or fsspec URLs) batch files may be in; "
        "a file elsewhere, or not named as the Singer SDK names batch files, is refused, never "
        "read or deleted. Default: the tap's batch root in meltano.yml, "
        ".meltano/run/braze-batches.")
    pii: str = setting("keep", options=["keep", "hash", "drop"],
                       description="Email addresses and phone numbers: keep, hash (salted "
                       "SHA-256) or drop.")
    pii_salt: str = setting("", secret=True, description="Salt for pii: hash.")
    verify_tls: bool = setting(True, description="Check TLS certificates (turning it off warns).")
    profile_properties: Mapping[str, str] = setting(
        {}, description="Optional (off by default): {profile property: event property} set on "
        "each user's Mixpanel profile with $set after their events are imported, e.g. "
        "{\"$braze_external_id\": \"distinct_id\"}, so profile-based cohorts and Mixpanel's "
        "Braze export match users known only from events. Needs project_token (a dry run "
        "writes the /engage bodies to dry_run_path/engage/ instead).")

    @cached_property
    def base_url(self) -> str:
        """Where requests go: api_url if given (checked), else the region's host."""
        if self.api_url:
            return check_http_url("api_url", self.api_url, "https://api.mixpanel.com")
        return REGION_HOSTS[self.region]

    @cached_property
    def auth(self) -> MixpanelAuth | None:
        """The credentials (None in a dry run, which sends nothing); SettingError if none."""
        return None if self.dry_run else MixpanelAuth.from_settings(self)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret settings' values, for the redaction in worker processes."""
        return tuple(secret_values(self.schema(), self.secret_settings()))

    def check(self) -> None:
        """URL, credentials and profile_properties; risky settings warned about, once."""
        self.base_url  # noqa: B018 - checks api_url
        auth = self.auth
        _check_profile_properties(self)
        if auth is not None:
            _warn_about_risky_settings(self, auth)


@dataclass(frozen=True)
class MixpanelAuth:
    """How requests authenticate: basic auth pair, query params, and the settings in use."""

    basic: tuple[str, str] = field(repr=False)
    params: dict[str, str]
    describe: str

    @classmethod
    def from_settings(cls, settings: MixpanelSettings) -> MixpanelAuth:
        """The credentials in Mixpanel's order of preference; SettingError names what is missing."""
        if settings.service_account_username or settings.service_account_secret:
            missing = [k for k in ("project_id", "service_account_username",
                                   "service_account_secret") if not getattr(settings, k)]
            if missing:
                msg = f"Service account auth needs {', '.join(missing)} as well."
                raise SettingError(msg)
            return cls((str(settings.service_account_username),
                        settings.service_account_secret),
                       {"project_id": str(settings.project_id)},
                       "project_id, service_account_username and service_account_secret")
        params = {"project_id": str(settings.project_id)} if settings.project_id else {}
        if settings.project_token:
            return cls((settings.project_token, ""), params, "project_token")
        if settings.api_secret:
            return cls((settings.api_secret, ""), params, "api_secret")
        msg = f"No Mixpanel credentials: set {AUTH_SETTINGS}."
        raise SettingError(msg)


CONFIG_SCHEMA = MixpanelSettings.schema()


def _check_profile_properties(settings: MixpanelSettings) -> None:
    """profile_properties: names and event properties, and the token it needs."""
    wanted = settings.profile_properties
    if not wanted:
        return
    if not all(isinstance(k, str) and k and isinstance(v, str) and v
               for k, v in wanted.items()):
        msg = ("profile_properties must map profile property names to event property names, "
               f"got {wanted!r:.200}")
        raise SettingError(msg)
    if not settings.project_token and not settings.dry_run:
        msg = ("profile_properties writes profiles through /engage, which needs project_token: "
               "set project_token (the project's token), or unset profile_properties")
        raise SettingError(msg)


def _warn_about_risky_settings(settings: MixpanelSettings, auth: MixpanelAuth) -> None:
    if auth.describe == "api_secret":
        logger.warning("api_secret is deprecated by Mixpanel (retired 2027-03-03); use a "
                       "service account (service_account_username/secret + project_id)")
    if not settings.verify_tls:
        logger.warning("verify_tls is off: TLS certificates of %s are not checked",
                       settings.base_url)
    if settings.pii == "hash" and not settings.pii_salt:
        logger.warning("pii is 'hash' without pii_salt: hashes of common values can be "
                       "guessed; set pii_salt")
