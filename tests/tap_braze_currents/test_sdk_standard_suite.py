"""The Singer SDK's standard tap test suite, over a generated export."""

from __future__ import annotations

import tempfile

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_braze_currents.demo_export import write_demo_export
from tap_braze_currents.tap import TapBrazeCurrents
from tests.conftest import SAMPLE_TYPES

EXPORT_DIR = tempfile.mkdtemp(prefix="currents-standard-")
write_demo_export(EXPORT_DIR, event_types=SAMPLE_TYPES, hours=2, events_per_file=10)

TestTapBrazeCurrents = get_tap_test_class(
    tap_class=TapBrazeCurrents,
    config={"storage_url": EXPORT_DIR, "event_types": SAMPLE_TYPES},
    suite_config=SuiteConfig(max_records_limit=30),
)
