"""The Singer SDK's standard target test suite for target-braze, against the Braze server.

The SDK's sample streams are not cohort changes: `mapping: attributes` turns each record into
an attributes object, a stream map gives every record a Braze `external_id` from its `id`
(`Id`, `_id`), and every user is known to the server. After each test the server must hold a
profile per sample record with an id, carrying its last values, the dead-letter file one line
per record without one, and the server must have answered nothing but 201.
"""

from __future__ import annotations

import atexit
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class

from plugin_support.config_errors import SettingError
from target_braze.target import TargetBraze
from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.sdk_samples import REFUSED, line_count, sample_name, sample_records

ID_FIELDS = ("id", "Id", "_id")


class EveryUser(set):
    """Every external_id is a user Braze knows."""

    def __contains__(self, item: object) -> bool:
        return True


SERVER = BrazeServer(state=BrazeState(known_users=EveryUser())).start()
atexit.register(SERVER.stop)
WORK = Path(tempfile.mkdtemp(prefix="target-braze-standard-"))
DEAD_LETTERS = WORK / "dead-letters.jsonl"
ID_EXPRESSION = ("str(record.get('id', record.get('Id', record.get('_id'))))"
                 " if record.get('id', record.get('Id', record.get('_id'))) is not None"
                 " else None")

_Base = get_target_test_class(
    target_class=TargetBraze,
    config={"api_key": API_KEY, "rest_endpoint": SERVER.url, "mapping": "attributes",
            "external_id_field": "braze_external_id",
            "stream_maps": {"*": {"braze_external_id": ID_EXPRESSION}},
            "dead_letter_path": str(DEAD_LETTERS), "max_retry_seconds": 5,
            "retry_first_delay_seconds": 0.01, "retry_jitter_seconds": [0, 0.01]},
)


def _id_of(record: dict[str, Any]) -> str | None:
    for name in ID_FIELDS:
        if record.get(name) is not None:
            return str(record[name])
    return None


class TestTargetBraze(_Base):  # type: ignore[misc,valid-type]
    """Standard tests; afterwards each sample record is on its profile or dead-lettered."""

    @pytest.fixture(autouse=True)
    def _every_record_accounted(self, request: pytest.FixtureRequest) -> Iterator[None]:
        name = request.node.name
        SERVER.state.profiles.clear()
        letters_before = line_count(DEAD_LETTERS)
        yield
        statuses = dict(SERVER.state.statuses)
        assert set(statuses) <= {201}, statuses
        records = sample_records(name)
        if sample_name(name) in REFUSED:
            assert SERVER.state.profiles == {}
            return
        with_id = [r for r in records if _id_of(r) is not None]
        assert line_count(DEAD_LETTERS) - letters_before == len(records) - len(with_id), name
        last: dict[str, dict[str, Any]] = {}
        for record in with_id:
            last.setdefault(_id_of(record) or "", {}).update(record)
        assert set(SERVER.state.profiles) == set(last), name
        for user, values in last.items():
            profile = SERVER.state.profiles[user]
            for key, value in values.items():
                if key in ID_FIELDS or key.startswith("_sdc_") or value is None:
                    continue
                assert json.dumps(profile.get(key), default=str) == json.dumps(
                    value, default=str) or isinstance(value, float), (name, key)

    def test_target_schema_no_properties(self, config: Any, resource: Any, runner: Any) -> None:
        """No record has an id at the top: nothing applies, so the run fails naming the setting."""
        with pytest.raises(SettingError, match="external_id_field"):
            super().test_target_schema_no_properties(config, resource, runner)
