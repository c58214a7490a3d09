"""Settings -> a delivery pipeline: auth, endpoint, retry policy, mapping, PII, dead letters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from plugin_support.config_errors import SettingError
from plugin_support.dead_letter import DeadLetterFile
from plugin_support.delivery_settings import retry_policy_from
from plugin_support.pacing import AdaptivePace, SharedPace
from plugin_support.retry import Counters
from target_mixpanel.delivery import Delivery
from target_mixpanel.event_mapping import BrazeCurrentsMapping, GenericMapping
from target_mixpanel.import_client import DryRunClient, ImportClient
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES, REGION_HOSTS
from target_mixpanel.pii import PiiPolicy

logger = logging.getLogger("target-mixpanel")
AUTH_SETTINGS = ("project_id + service_account_username + service_account_secret, "
                 "or project_token, or api_secret")
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024
__all__ = ["SettingError", "build_delivery", "check_settings"]


def auth_for(config: Mapping[str, Any]) -> tuple[tuple[str, str], dict[str, str], str]:
    """(basic auth pair, query params, the settings in use) in Mixpanel's order of preference."""
    if config.get("service_account_username") or config.get("service_account_secret"):
        missing = [k for k in ("project_id", "service_account_username",
                               "service_account_secret") if not config.get(k)]
        if missing:
            msg = f"Service account auth needs {', '.join(missing)} as well."
            raise SettingError(msg)
        return ((config["service_account_username"], config["service_account_secret"]),
                {"project_id": str(config["project_id"])},
                "project_id, service_account_username and service_account_secret")
    params = {"project_id": str(config["project_id"])} if config.get("project_id") else {}
    if config.get("project_token"):
        return (config["project_token"], ""), params, "project_token"
    if config.get("api_secret"):
        return (config["api_secret"], ""), params, "api_secret"
    msg = f"No Mixpanel credentials: set {AUTH_SETTINGS}."
    raise SettingError(msg)


def api_url_for(config: Mapping[str, Any]) -> str:
    """The base URL: api_url if set, else the region's host."""
    return str(config.get("api_url") or REGION_HOSTS[config.get("region", "US")])


def check_settings(config: Mapping[str, Any]) -> None:
    """Fail early, naming the setting, and warn about risky ones (once, in the main process)."""
    batch_size = int(config.get("batch_size", MAX_EVENTS_PER_REQUEST))
    max_bytes = int(config.get("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES))
    if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
        msg = f"batch_size must be 1 to {MAX_EVENTS_PER_REQUEST}, got {batch_size}"
        raise SettingError(msg)
    if not 1024 <= max_bytes <= MAX_REQUEST_BYTES:
        msg = f"max_batch_bytes must be 1024 to {MAX_REQUEST_BYTES}, got {max_bytes}"
        raise SettingError(msg)
    if config.get("dry_run"):
        return
    _, _, describe = auth_for(config)
    if describe == "api_secret":
        logger.warning("api_secret is deprecated by Mixpanel (retired 2027-03-03); use a "
                       "service account (service_account_username/secret + project_id)")
    if not config.get("verify_tls", True):
        logger.warning("verify_tls is off: TLS certificates of %s are not checked",
                       api_url_for(config))
    if config.get("pii") == "hash" and not config.get("pii_salt"):
        logger.warning("pii is 'hash' without pii_salt: hashes of common values can be "
                       "guessed; set pii_salt")


def mapping_for(config: Mapping[str, Any]) -> BrazeCurrentsMapping | GenericMapping:
    """The record -> event mapping the settings choose."""
    if config.get("mapping", "braze_currents") == "generic":
        return GenericMapping(config.get("event_name", "{stream}"),
                              config.get("distinct_id_field", "distinct_id"),
                              config.get("time_field", "time"),
                              config.get("insert_id_field", "id"))
    return BrazeCurrentsMapping()


def sender_for(config: Mapping[str, Any], counters: Counters, name: str,
               concurrency: int = 1, pace: SharedPace | None = None
               ) -> DryRunClient | ImportClient:
    """The HTTP client (or the dry-run writer) the settings choose.

    With adaptive sending it paces itself by `pace` (shared by the worker processes), or alone.
    """
    if config.get("dry_run"):
        return DryRunClient(config.get("dry_run_path", "mixpanel-dry-run"), api_url_for(config),
                            counters, prefix=name)
    auth, params, describe = auth_for(config)
    params["ip"] = "0"
    if config.get("strict", True):
        params["strict"] = "1"
    retry = retry_policy_from(config)
    return ImportClient(api_url_for(config), auth, params,
                        gzip_level=(int(config.get("gzip_level", 1))
                                    if config.get("gzip", True) else None),
                        timeout=float(config.get("request_timeout_seconds", 120)),
                        retry=retry, verify=bool(config.get("verify_tls", True)),
                        counters=counters, describe_auth=describe,
                        pace=(AdaptivePace(concurrency, pace)
                              if config.get("adaptive_sending", True) else None))


def build_delivery(config: Mapping[str, Any], emit_state: Callable[[dict], None], *,
                   name: str = "", concurrency: int | None = None,
                   pace: SharedPace | None = None) -> Delivery:
    """A delivery pipeline for one process.

    `name` tells its files apart from other workers'; `pace` is the one the processes share.
    """
    concurrency = concurrency or max(1, int(config.get("max_concurrency", 10)))
    counters = Counters()
    return Delivery(mapping=mapping_for(config),
                    sender=sender_for(config, counters, name, concurrency, pace),
                    dead_letters=DeadLetterFile(config.get("dead_letter_path",
                                                           "mixpanel-dead-letters.jsonl")),
                    pii=PiiPolicy(config.get("pii", "keep"), config.get("pii_salt") or ""),
                    emit_state=emit_state, counters=counters,
                    batch_size=int(config.get("batch_size", MAX_EVENTS_PER_REQUEST)),
                    max_batch_bytes=int(config.get("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES)),
                    max_concurrency=concurrency)
