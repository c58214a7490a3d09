"""The round trip: Braze events into Mixpanel, a cohort defined there, its members back in Braze.

A Currents export -> tap-braze-currents -> target-mixpanel -> one Mixpanel-compatible project
(Import and Query API over the same events) -> a cohort "did Purchase" computed from the
imported events -> tap-mixpanel-cohorts -> target-braze -> the Braze-compatible server. Every
Braze user whose events meet the rule ends in the cohort, and nobody else does: the users
reached Mixpanel only through imported events (no profile), which `include_all_users: false`
used to hide.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tap_braze_currents.demo_export import write_demo_export
from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_project_server import EventCohort, MixpanelProjectServer
from tests.conftest import target_config, write_json

PURCHASE = "users.behaviors.Purchase"


@pytest.fixture
def project() -> Iterator[MixpanelProjectServer]:
    server = MixpanelProjectServer().start()
    yield server
    server.stop()


def run(command: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def round_trip(project: MixpanelProjectServer, tmp_path: Path, mixpanel_settings: dict,
               cohort_settings: dict) -> tuple[set[str], set[str]]:
    """(the Braze users whose events meet the rule, those Braze ends with in the cohort)."""
    write_demo_export(str(tmp_path / "export"), event_types=[PURCHASE, "users.messages.email.Send"],
                      hours=1, events_per_file=40)
    tap_config = write_json(tmp_path / "currents.json", {"storage_url": str(tmp_path / "export")})
    currents = run([sys.executable, "-m", "tap_braze_currents.tap", "--config", str(tap_config)])
    records = [m for m in map(json.loads, currents.splitlines()) if m["type"] == "RECORD"]
    users = {r["record"]["external_user_id"] for r in records
             if r["record"].get("external_user_id")}
    purchasers = {r["record"]["external_user_id"] for r in records
                  if r["stream"] == "users_behaviors_purchase"
                  and r["record"].get("external_user_id")}
    assert purchasers                                      # the rule splits the users
    assert users - purchasers
    mixpanel_config = write_json(tmp_path / "mixpanel.json", {
        **target_config(project.imports, tmp_path), "api_url": project.url,
        **mixpanel_settings})
    run([sys.executable, "-m", "target_mixpanel.target", "--config", str(mixpanel_config)],
        currents)
    query = project.query.state
    query.add_cohort(1, "Purchasers", [])
    query.cohorts[1].members = EventCohort(project, lambda e: e["event"] == "Purchase")
    braze = BrazeServer(state=BrazeState(known_users=users | {"braze-only-1"})).start()
    try:
        cohorts_config = write_json(tmp_path / "cohorts.json", {
            "api_url": project.url, "project_id": query.project_id,
            "service_account_username": query.service_account[0],
            "service_account_secret": query.service_account[1],
            "snapshot_url": str(tmp_path / "snapshots"), "retry_first_delay_seconds": 0.05,
            **cohort_settings})
        braze_config = write_json(tmp_path / "braze.json", {
            "api_key": API_KEY, "rest_endpoint": braze.url,
            "dead_letter_path": str(tmp_path / "braze-dead-letters.jsonl")})
        cohort_lines = run([sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config",
                            str(cohorts_config)])
        run([sys.executable, "-m", "target_braze.target", "--config", str(braze_config)],
            cohort_lines)
        assert braze.state.created_users == set()
        return purchasers, {u for u in braze.state.profiles
                            if "Purchasers" in braze.state.cohorts_of(u)}
    finally:
        braze.stop()


def test_a_cohort_of_imported_events_reaches_exactly_its_braze_users(
        project: MixpanelProjectServer, tmp_path: Path) -> None:
    purchasers, in_cohort = round_trip(project, tmp_path, {}, {})
    assert in_cohort == purchasers


def test_profile_properties_let_a_profile_property_match_braze_users(
        project: MixpanelProjectServer, tmp_path: Path) -> None:
    """target-mixpanel gives each user a profile with $braze_external_id (profile_properties),
    so the cohort tap can match on that profile property, as Mixpanel's Braze export does."""
    token = project.imports.state.credentials.project_token
    purchasers, in_cohort = round_trip(
        project, tmp_path,
        {"profile_properties": {"$braze_external_id": "distinct_id"}, "project_token": token},
        {"id_property": "$braze_external_id"})
    assert in_cohort == purchasers
    assert all(project.profiles[u] == {"$braze_external_id": u} for u in purchasers)
