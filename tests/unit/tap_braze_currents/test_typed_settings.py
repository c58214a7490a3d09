"""CurrentsSettings: the defaults the schema publishes, typed values, read when a run needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema

from tap_braze_currents.settings import CurrentsSettings
from tap_braze_currents.tap import TapBrazeCurrents

DEFAULTS = {name: prop["default"] for name, prop in CurrentsSettings.schema()["properties"].items()
            if "default" in prop}


def settings(folder: Path, **config: Any) -> CurrentsSettings:
    """Settings as the tap reads them: the SDK fills in the schema's defaults first."""
    return TapBrazeCurrents(config={"storage_url": str(folder), **config}).settings


def test_every_default_is_valid_and_read_as_the_schema_publishes_it(tmp_path: Path) -> None:
    """A declared default is a value its own setting accepts (range, options, type), and a run
    reads the default that --about, meltano.yml and docs/settings.md show."""
    properties = CurrentsSettings.schema()["properties"]
    assert set(DEFAULTS) == {"lookback_hours", "future_hours_tolerance", "on_corrupt_file",
                             "prefetch_files", "prefetch_megabytes", "state_interval_seconds"}
    for name, default in DEFAULTS.items():
        jsonschema.validate({name: default}, {"type": "object",
                                              "properties": {name: properties[name]}})
    read = settings(tmp_path)
    assert {name: getattr(read, name) for name in DEFAULTS} == DEFAULTS
    assert (read.storage_url, read.storage_options, read.event_types) == (str(tmp_path), {}, ())
    assert (read.start_date, read.end_date, read.start_hour, read.end_hour) == (None,) * 4


def test_values_are_typed_once(tmp_path: Path) -> None:
    read = settings(tmp_path, state_interval_seconds="2.5", start_date="2025-04-01T05:30:00+02:00",
                    end_date="2025-04-02T00:00:00", event_types=["users.messages.email.Send"],
                    prefetch_megabytes=3, storage_options={"anon": True})
    assert read.state_interval_seconds == 2.5
    assert (read.start_hour, read.end_hour) == ("2025-04-01-03", "2025-04-02-00")  # naive: UTC
    assert read.event_types == ("users.messages.email.Send",)
    assert read.prefetch_bytes == 3 << 20
    assert read.storage_options == {"anon": True}


def test_a_bad_date_does_not_stop_discovery(tmp_path: Path) -> None:
    """`--discover` runs on a config nobody checked: the settings are read when a run needs
    them, and the sync that follows names the bad setting."""
    tap = TapBrazeCurrents(config={"storage_url": str(tmp_path), "start_date": "yesterday"},
                           validate_config=False, setup_mapper=False)
    assert len(tap.discover_streams()) > 50
