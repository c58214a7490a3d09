"""The Singer SDK's standard target test suite, against the Mixpanel-compatible server.

The SDK's sample streams are not Braze events. The generic mapping turns them into events; a
stream map gives every record the `time` the samples lack and a `user` (its `id`, or a fixed
user for samples without one), so the records really reach the server. After each test the
server must hold one event per sample record, nothing may be dead-lettered, and the server must
have answered nothing but 200.
"""

from __future__ import annotations

import atexit
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class

from target_mixpanel.target import TargetMixpanel
from testkit.mixpanel_server import MixpanelServer
from testkit.sdk_samples import REFUSED, line_count, sample_name, sample_records

SERVER = MixpanelServer().start()
atexit.register(SERVER.stop)
WORK = Path(tempfile.mkdtemp(prefix="target-standard-"))
DEAD_LETTERS = WORK / "dead-letters.jsonl"
CREDS = SERVER.state.credentials
AN_HOUR_AGO = int(time.time()) - 3600
USER = "str(record['id']) if record.get('id') is not None else 'sample-user'"

_Base = get_target_test_class(
    target_class=TargetMixpanel,
    config={"api_url": SERVER.url, "project_token": CREDS.project_token,
            "mapping": "generic", "distinct_id_field": "user", "time_field": "time",
            "stream_maps": {"*": {"time": str(AN_HOUR_AGO), "user": USER}},
            "dead_letter_path": str(DEAD_LETTERS), "max_retry_seconds": 5,
            "retry_first_delay_seconds": 0.01, "retry_jitter_seconds": [0, 0.01]},
)


class TestTargetMixpanel(_Base):  # type: ignore[misc,valid-type]
    """Standard tests; afterwards each sample record is at the server or dead-lettered."""

    @pytest.fixture(autouse=True)
    def _every_record_accounted(self, request: pytest.FixtureRequest) -> Iterator[None]:
        name = request.node.name
        events_before = SERVER.state.raw_events
        letters_before = line_count(DEAD_LETTERS)
        yield
        statuses = dict(SERVER.state.statuses)
        assert set(statuses) <= {200}, statuses
        records = sample_records(name)
        if sample_name(name) in REFUSED:
            assert SERVER.state.raw_events == events_before
            return
        arrived = [e for e in SERVER.state.unique_events
                   if e["properties"]["time"] == AN_HOUR_AGO]
        assert SERVER.state.raw_events - events_before == len(records), name
        assert line_count(DEAD_LETTERS) == letters_before, name
        users = {e["properties"]["distinct_id"] for e in arrived}
        for record in records:
            user = str(record["id"]) if record.get("id") is not None else "sample-user"
            assert user in users, (name, record)
