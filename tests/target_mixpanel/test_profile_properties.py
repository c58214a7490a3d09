"""target-mixpanel's profile_properties (issue 24): settings checks; what reaches /engage."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import singer_lines, target_config
from tests.target_mixpanel.test_behaviour import STREAM, custom_event


def test_profile_properties_without_a_project_token_is_refused_naming_both(
        mixpanel, run_target, tmp_path: Path) -> None:
    config = target_config(mixpanel, tmp_path,
                           profile_properties={"$braze_external_id": "distinct_id"})
    run = run_target(config, singer_lines("events", [{"id": "1"}]))
    assert run.returncode != 0
    assert "profile_properties" in run.stderr
    assert "project_token" in run.stderr
    assert mixpanel.state.raw_events == 0


def test_a_dry_run_writes_the_profile_updates_it_would_send(
        mixpanel, run_target, tmp_path: Path) -> None:
    """No project_token needed in a dry run; the /engage bodies go beside the /import ones."""
    records = [custom_event(i, external_user_id=f"user-{i % 3}") for i in range(12)]
    config = target_config(mixpanel, tmp_path, dry_run=True, dry_run_path=str(tmp_path / "dry"),
                           profile_properties={"$braze_external_id": "distinct_id"})
    run = run_target(config, singer_lines(STREAM, records))
    assert run.returncode == 0, run.stderr
    assert mixpanel.state.requests == []
    engage = tmp_path / "dry" / "engage"
    assert (engage / "endpoint.txt").read_text().strip() == f"{mixpanel.url}/engage"
    updates = [u for body in sorted(engage.glob("profiles-*.json"))
               for u in json.loads(body.read_text())]
    assert sorted(u["$distinct_id"] for u in updates) == ["user-0", "user-1", "user-2"]
    assert all(u["$set"] == {"$braze_external_id": u["$distinct_id"]} for u in updates)
    assert run.summary["profiles_updated"] == 3
    assert run.summary["imported"] == 12
