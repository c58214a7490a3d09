"""The tap's settings: their schema (with ranges), checks a schema cannot state, typed values.

Every count, hour and duration setting has a range in its schema, so an out-of-range value is
refused at start naming the setting (a negative `lookback_hours` used to read nothing with
exit 0). The dates must parse and be in order. A run reads them once, as `CurrentsSettings`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from plugin_support.config_errors import SettingError
from tap_braze_currents.layout import hour_key

# Default of state_interval_seconds: STATE under 1% of the bytes printed on a production-shaped
# export (docs/tap-performance.md), and little to read again after a kill.
STATE_INTERVAL_SECONDS = 5.0
# Default of future_hours_tolerance: Braze names hour folders by UTC hour, and the machine
# running the tap (or Braze's writers) may have a clock a little ahead or behind; a folder
# further ahead than this is not a real hour yet (a stray or test folder).
FUTURE_HOURS_TOLERANCE = 3
# A date setting's format, as the error message shows it.
DATE_EXAMPLE = "2025-04-01T00:00:00Z"

# Durations are a number or a string holding one: Meltano (4.4) turns a "decimal" setting given
# by an environment variable into a Decimal it cannot write as JSON, so meltano.yml declares
# them as strings (tools/generate_meltano.py) and the tap reads both.
SECONDS = th.CustomType({"type": ["number", "string"], "minimum": 0, "maximum": 86400,
                         "pattern": r"^[0-9]+(\.[0-9]+)?$"})


def _count(minimum: int, maximum: int) -> th.IntegerType:
    return th.IntegerType(minimum=minimum, maximum=maximum)


def tap_properties() -> th.PropertiesList:
    """The config schema of tap-braze-currents."""
    return th.PropertiesList(
        th.Property("storage_url", th.StringType, required=True,
                    description="Where the Currents export lives: a local path, file://, "
                    "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or abfs://..."),
        th.Property("storage_options", th.ObjectType(additional_properties=True), secret=True,
                    description="Options for the fsspec filesystem (endpoint_url, key, secret, "
                    "anon, connection_string, account_name, token, ...)."),
        th.Property("start_date", th.DateTimeType,
                    description=f"On a first run, date= hours before this are not read "
                    f"(ISO 8601, e.g. {DATE_EXAMPLE})."),
        th.Property("end_date", th.DateTimeType,
                    description="Optional: date= hours at or after this are not read "
                    "(after start_date)."),
        th.Property("lookback_hours", _count(0, 24 * 366), default=24,
                    description="How many hours behind the newest hour already read are listed "
                    "again for late files (0 to 8784)."),
        th.Property("future_hours_tolerance", _count(0, 48), default=FUTURE_HOURS_TOLERANCE,
                    description="date= hour folders more than this many hours after now (UTC) "
                    "are left for a later run with a warning, never read nor bookmarked: Braze "
                    "names folders by UTC hour, and clocks may be a little off; a folder further "
                    "ahead is a stray one (0 to 48)."),
        th.Property("event_types", th.ArrayType(th.StringType),
                    description="Optional list of Currents event types (dotted Braze names) to "
                    "read; default: all."),
        th.Property("on_corrupt_file", th.StringType, default="skip",
                    allowed_values=["skip", "fail"],
                    description="skip: keep the records before the damage, warn and go on; "
                    "fail: stop with an error naming the file."),
        th.Property("prefetch_files", _count(1, 1024), default=32,
                    description="Remote files fetched ahead of decoding, at once (small files "
                    "are a round trip each; prefetch_megabytes bounds the bytes). The S3 "
                    "client's connection pool grows to match unless storage_options."
                    "config_kwargs.max_pool_connections is set (1 to 1024)."),
        th.Property("prefetch_megabytes", _count(1, 65536), default=64,
                    description="Upper bound on the bytes of files fetched ahead (1 to 65536)."),
        th.Property("state_interval_seconds", SECONDS, default=STATE_INTERVAL_SECONDS,
                    description="At most how often a STATE is printed while reading (plus one "
                    "at the end of the run and on a stop signal). A killed run reads again "
                    "what it read since its last STATE (0 to 86400)."),
    )


def setting_moment(config: Mapping[str, Any], name: str) -> dt.datetime | None:
    """A date setting as an aware UTC moment (None when unset); SettingError when unreadable."""
    value = config.get(name)
    if value in (None, ""):
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        msg = (f"{name} {value!r} is not a date and time: use ISO 8601, e.g. {DATE_EXAMPLE} "
               "(UTC unless it names another offset)")
        raise SettingError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def hour_setting(config: Mapping[str, Any], name: str) -> str | None:
    """The `date=` hour of a date setting, or None when unset."""
    moment = setting_moment(config, name)
    return None if moment is None else hour_key(moment)


def check_settings(config: Mapping[str, Any]) -> None:
    """What the schema cannot check: the dates parse and end_date is after start_date."""
    start, end = hour_setting(config, "start_date"), hour_setting(config, "end_date")
    if start is not None and end is not None and end <= start:
        msg = (f"end_date {config['end_date']!r} is not in an hour after start_date "
               f"{config['start_date']!r}: nothing would be read (end_date's own hour is "
               "not read). Fix one of them, or leave end_date out.")
        raise SettingError(msg)


def latest_hour(config: Mapping[str, Any], now: dt.datetime | None = None) -> str:
    """The newest `date=` hour a run reads: now (UTC) plus future_hours_tolerance."""
    return _hours_ahead(int(config.get("future_hours_tolerance", FUTURE_HOURS_TOLERANCE)), now)


def _hours_ahead(hours: int, now: dt.datetime | None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return hour_key(now + dt.timedelta(hours=hours))


@dataclass(frozen=True)
class CurrentsSettings:
    """The settings a run uses, read once from the validated config (defaults filled in)."""

    storage_url: str
    storage_options: Mapping[str, Any]
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    lookback_hours: int
    future_hours_tolerance: int
    event_types: tuple[str, ...]  # empty: every type
    on_corrupt_file: str  # "skip" or "fail"
    prefetch_files: int
    prefetch_megabytes: int
    state_interval_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CurrentsSettings:
        """The typed values of a config the schema and `check_settings` accepted."""
        options = config.get("storage_options")
        return cls(
            storage_url=str(config.get("storage_url") or ""),
            storage_options=dict(options) if isinstance(options, dict) else {},
            start_date=setting_moment(config, "start_date"),
            end_date=setting_moment(config, "end_date"),
            lookback_hours=int(config["lookback_hours"]),
            future_hours_tolerance=int(config["future_hours_tolerance"]),
            event_types=tuple(config.get("event_types") or ()),
            on_corrupt_file=str(config["on_corrupt_file"]),
            prefetch_files=int(config["prefetch_files"]),
            prefetch_megabytes=int(config["prefetch_megabytes"]),
            state_interval_seconds=float(config["state_interval_seconds"]),
        )

    @property
    def start_hour(self) -> str | None:
        """The `date=` hour of start_date (None when unset)."""
        return None if self.start_date is None else hour_key(self.start_date)

    @property
    def end_hour(self) -> str | None:
        """The `date=` hour of end_date, not read itself (None when unset)."""
        return None if self.end_date is None else hour_key(self.end_date)

    @property
    def prefetch_bytes(self) -> int:
        """prefetch_megabytes in bytes."""
        return self.prefetch_megabytes << 20

    def latest_hour(self, now: dt.datetime | None = None) -> str:
        """The newest `date=` hour a run reads: now (UTC) plus future_hours_tolerance."""
        return _hours_ahead(self.future_hours_tolerance, now)
