"""The Singer SDK's standard target test suite, against the Mixpanel-compatible server.

The SDK's sample streams are not Braze events; the generic mapping turns them into events
(distinct_id from `id`, time from the fixed `time` the suite lacks: dead-lettered) so every
record must end imported, skipped or dead-lettered, and the server must see only valid events.
"""

from __future__ import annotations

import atexit
import tempfile

from singer_sdk.testing import get_target_test_class

from target_mixpanel.target import TargetMixpanel
from tests.mixpanel_server import MixpanelServer

SERVER = MixpanelServer().start()
atexit.register(SERVER.stop)
WORK = tempfile.mkdtemp(prefix="target-standard-")
CREDS = SERVER.state.credentials

_Base = get_target_test_class(
    target_class=TargetMixpanel,
    config={"api_url": SERVER.url, "project_token": CREDS.project_token,
            "mapping": "generic", "distinct_id_field": "id", "time_field": "time",
            "dead_letter_path": f"{WORK}/dead-letters.jsonl", "max_retry_seconds": 5,
            "retry_first_delay_seconds": 0.01, "retry_jitter_seconds": [0, 0.01]},
)


class TestTargetMixpanel(_Base):  # type: ignore[misc,valid-type]
    """Standard tests; afterwards the server holds only valid events and saw no error."""

    def teardown_method(self) -> None:
        statuses = dict(SERVER.state.statuses)
        assert set(statuses) <= {200}, statuses
