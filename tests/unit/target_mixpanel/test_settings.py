"""MixpanelSettings: defaults from the schema alone, a bad value named, it crosses to workers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from plugin_support.config_errors import SettingError
from target_mixpanel.settings import CONFIG_SCHEMA, MixpanelSettings
from target_mixpanel.target import TargetMixpanel

TOKEN = "token-0123456789"
DEFAULTS = {name: prop["default"] for name, prop in CONFIG_SCHEMA["properties"].items()
            if "default" in prop}


def settings(**config: Any) -> MixpanelSettings:
    """Settings as the target reads them: the SDK fills in the schema's defaults first."""
    return TargetMixpanel(config={"project_token": TOKEN, **config}).settings


def test_every_default_comes_from_the_schema() -> None:
    read = settings()
    assert (read.batch_size, read.max_batch_bytes, read.max_concurrency, read.gzip_level) == (
        DEFAULTS["batch_size"], DEFAULTS["max_batch_bytes"], DEFAULTS["max_concurrency"],
        DEFAULTS["gzip_level"])
    assert (read.mapping, read.event_name, read.distinct_id_field, read.time_field,
            read.insert_id_field) == (DEFAULTS["mapping"], DEFAULTS["event_name"],
                                      DEFAULTS["distinct_id_field"], DEFAULTS["time_field"],
                                      DEFAULTS["insert_id_field"])
    assert (read.pii, read.dead_letter_path, read.dry_run_path) == (
        DEFAULTS["pii"], DEFAULTS["dead_letter_path"], DEFAULTS["dry_run_path"])
    assert (read.gzip, read.strict, read.adaptive_sending, read.verify_tls, read.dry_run,
            read.delete_batch_files) == (DEFAULTS["gzip"], DEFAULTS["strict"],
                                         DEFAULTS["adaptive_sending"], DEFAULTS["verify_tls"],
                                         DEFAULTS["dry_run"], DEFAULTS["delete_batch_files"])
    assert read.request_timeout_seconds == float(DEFAULTS["request_timeout_seconds"])
    assert read.progress_interval_seconds == float(DEFAULTS["progress_interval_seconds"])
    assert read.retry.budget_seconds == float(DEFAULTS["max_retry_seconds"])
    assert read.base_url == "https://api.mixpanel.com"  # region US
    assert read.auth is not None
    assert read.auth.describe == "project_token"


def test_a_setting_given_wins_over_its_default() -> None:
    read = settings(batch_size=500, max_concurrency=3, region="EU", request_timeout_seconds="7.5",
                    mapping="generic", time_field="ts")
    assert (read.batch_size, read.max_concurrency, read.request_timeout_seconds) == (500, 3, 7.5)
    assert (read.base_url, read.mapping, read.time_field) == ("https://api-eu.mixpanel.com",
                                                             "generic", "ts")


@pytest.mark.parametrize(("config", "named"), [
    ({"batch_size": 0}, "0 is less than the minimum of 1 in config['batch_size']"),
    ({"batch_size": 2001}, "2001 is greater than the maximum of 2000 in config['batch_size']"),
    ({"max_batch_bytes": 100}, "in config['max_batch_bytes']"),
    ({"worker_processes": -1}, "-1 is less than the minimum of 1 in config['worker_processes']"),
    ({"max_concurrency": 0}, "in config['max_concurrency']"),
    ({"request_timeout_seconds": "0"}, "request_timeout_seconds must be above 0, got '0'"),
    ({"max_retry_seconds": "90000"}, "max_retry_seconds must be at most 86400"),
    ({"retry_jitter_seconds": [5, 1]}, "retry_jitter_seconds must be [min, max] with min <= max"),
    ({"retry_jitter_seconds": [5, -1]}, "in config['retry_jitter_seconds'][1]"),
])
def test_a_value_out_of_range_names_the_setting(config: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigValidationError) as refused:
        settings(**config)
    assert any(named in error for error in refused.value.errors), refused.value.errors


@pytest.mark.parametrize(("config", "named"), [
    ({"api_url": "api.mixpanel.com"}, "api_url must be an http:// or https:// URL"),
    ({"api_url": "ftp://example.com"}, "api_url must be an http:// or https:// URL"),
    ({"project_token": None, "service_account_username": "svc"},
     "Service account auth needs project_id, service_account_secret as well."),
    ({"project_token": None}, "No Mixpanel credentials: set project_id"),
])
def test_a_bad_value_names_the_setting(config: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingError, match=named.replace("(", r"\(").replace("+", r"\+")):
        settings(**config)


def test_a_dry_run_needs_no_credentials() -> None:
    read = settings(project_token=None, dry_run=True)
    assert read.dry_run
    assert read.auth is None


def test_the_settings_survive_pickle_and_hide_secrets_in_repr() -> None:
    read = settings(pii="hash", pii_salt="salt-0123456789", worker_processes=2)
    copy = pickle.loads(pickle.dumps(read))  # what a spawned worker process receives
    assert copy == read
    assert copy.auth is not None
    assert copy.auth.basic == (TOKEN, "")
    assert (copy.pii_salt, copy.worker_processes) == ("salt-0123456789", 2)
    assert TOKEN not in repr(read)
    assert "salt-0123456789" not in repr(read)
