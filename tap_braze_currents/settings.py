"""The tap's settings: each declared once (plugin_support.declared_settings), typed, checked.

Every count, hour and duration setting has a range in its schema, so an out-of-range value is
refused at start naming the setting (a negative `lookback_hours` used to read nothing with
exit 0). The dates must parse and be in order (`check`). A run reads them once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_support.config_errors import SettingError
from plugin_support.declared_settings import DATE_EXAMPLE, DeclaredSettings, setting
from tap_braze_currents.layout import hour_key

# Default of state_interval_seconds: STATE under 1% of the bytes printed on a production-shaped
# export (docs/tap-performance.md), and little to read again after a kill.
STATE_INTERVAL_SECONDS = 5.0
# Default of future_hours_tolerance: Braze names hour folders by UTC hour, and the machine
# running the tap (or Braze's writers) may have a clock a little ahead or behind; a folder
# further ahead than this is not a real hour yet (a stray or test folder).
FUTURE_HOURS_TOLERANCE = 3
CORRUPT_FILE_CHOICES = ["skip", "fail"]


@dataclass(frozen=True, kw_only=True)
class CurrentsSettings(DeclaredSettings):
    """The settings a run uses, read once from the config (defaults filled in), checked."""

    storage_url: str = setting(
        "", required=True,
        description="Where the Currents export lives: a local path, file://, "
        "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or abfs://...")
    storage_options: Mapping[str, Any] = setting(
        {}, secret=True,
        description="Options for the fsspec filesystem (endpoint_url, key, secret, anon, "
        "connection_string, account_name, token, ...).")
    start_date: dt.datetime | None = setting(
        None, description=f"On a first run, date= hours before this are not read (ISO 8601, "
        f"e.g. {DATE_EXAMPLE}).")
    end_date: dt.datetime | None = setting(
        None, description="Optional: date= hours at or after this are not read (after "
        "start_date).")
    lookback_hours: int = setting(
        24, minimum=0, maximum=24 * 366,
        description="How many hours behind the newest hour already read are listed again for "
        "late files (0 to 8784).")
    future_hours_tolerance: int = setting(
        FUTURE_HOURS_TOLERANCE, minimum=0, maximum=48,
        description="date= hour folders more than this many hours after now (UTC) are left "
        "for a later run with a warning, never read nor bookmarked: Braze names folders by "
        "UTC hour, and clocks may be a little off; a folder further ahead is a stray one (0 "
        "to 48).")
    event_types: tuple[str, ...] = setting(  # empty: every type
        (), description="Optional list of Currents event types (dotted Braze names) to read; "
        "default: all.")
    on_corrupt_file: str = setting(
        "skip", options=CORRUPT_FILE_CHOICES,
        description="skip: keep the records before the damage, warn and go on; fail: stop "
        "with an error naming the file.")
    prefetch_files: int = setting(
        32, minimum=1, maximum=1024,
        description="Remote files fetched ahead of decoding, at once (small files are a round "
        "trip each; prefetch_megabytes bounds the bytes). The S3 client's connection pool "
        "grows to match unless storage_options.config_kwargs.max_pool_connections is set (1 "
        "to 1024).")
    prefetch_megabytes: int = setting(
        64, minimum=1, maximum=65536,
        description="Upper bound on the bytes of files fetched ahead (1 to 65536).")
    state_interval_seconds: float = setting(
        STATE_INTERVAL_SECONDS, minimum=0, maximum=86400,
        description="At most how often a STATE is printed while reading (plus one at the end "
        "of the run and on a stop signal). A killed run reads again what it read since its "
        "last STATE (0 to 86400).")

    def check(self) -> None:
        """SettingError unless end_date (when set) is in an hour after start_date's."""
        start, end = self.start_date, self.end_date
        if start is not None and end is not None and hour_key(end) <= hour_key(start):
            msg = (f"end_date {end.isoformat()!r} is not in an hour after start_date "
                   f"{start.isoformat()!r}: nothing would be read (end_date's own hour is not "
                   "read). Fix one of them, or leave end_date out.")
            raise SettingError(msg)

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
        now = now or dt.datetime.now(dt.timezone.utc)
        return hour_key(now + dt.timedelta(hours=self.future_hours_tolerance))
