"""target-mixpanel's profile_properties (issue 24): settings checks; what reaches /engage."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import singer_lines, target_config


def test_profile_properties_without_a_project_token_is_refused_naming_both(
        mixpanel, run_target, tmp_path: Path) -> None:
    config = target_config(mixpanel, tmp_path,
                           profile_properties={"$braze_external_id": "distinct_id"})
    run = run_target(config, singer_lines("events", [{"id": "1"}]))
    assert run.returncode != 0
    assert "profile_properties" in run.stderr
    assert "project_token" in run.stderr
    assert mixpanel.state.raw_events == 0
