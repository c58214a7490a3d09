"""tap output -> target-mixpanel -> Mixpanel-compatible server: names, properties, exactly once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tap_braze_currents.demo_export import write_demo_export
from target_mixpanel.event_mapping import braze_event_names
from tests.conftest import SAMPLE_TYPES, target_config


@pytest.fixture
def tap_output(tmp_path: Path, run_tap) -> tuple[str, list[dict]]:
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES, hours=2,
                      events_per_file=60)
    run = run_tap({"storage_url": str(tmp_path / "export")})
    assert run.returncode == 0, run.stderr
    return run.stdout, [m["record"] for m in run.records]


def test_every_identified_event_arrives_once_under_its_braze_name(
        tap_output, mixpanel, run_target, tmp_path: Path) -> None:
    lines, records = tap_output
    run = run_target(target_config(mixpanel, tmp_path), lines)
    assert run.returncode == 0, run.stderr
    identified = [r for r in records if r.get("external_user_id")]
    events = mixpanel.state.unique_events
    assert len(events) == len(identified) == mixpanel.state.raw_events
    assert {e["properties"]["$insert_id"] for e in events} == {r["id"] for r in identified}
    assert run.summary["imported"] == len(identified)
    assert sum(run.summary["skipped"].values()) == len(records) - len(identified)
    assert run.dead_letters == []
    names = braze_event_names()
    by_id = {e["properties"]["$insert_id"]: e for e in events}
    for record in identified:
        event = by_id[record["id"]]
        props = event["properties"]
        assert props["distinct_id"] == record["external_user_id"]
        if record["event_type"] == "users.behaviors.CustomEvent":
            assert event["event"] == f"[Braze Custom Event] {record['name']}"
            for key, value in record["properties"].items():
                assert props[f"[Custom event property] {key}"] == value
        else:
            assert event["event"] == names[record["event_type"]]["mixpanel_event"]
        if record["event_type"] == "users.behaviors.Purchase":
            assert props["price"] == record["price"]
            assert props["product_id"] == record["product_id"]
            assert props["currency"] == record["currency"]
            assert all(props[f"[Purchase property] {k}"] == v
                       for k, v in record["properties"].items())
        expected_time = record.get("time_ms") or record["time"]
        assert props["time"] == expected_time
        if record.get("platform") is not None:
            assert props["$os"] == record["platform"]
        if record.get("device_model") is not None:
            assert props["$device"] == record["device_model"]
        assert None not in props.values()
        assert not any(k.startswith("_sdc_") for k in props)
    params = mixpanel.state.requests[0]["params"]
    assert params["ip"] == ["0"]
    assert params["strict"] == ["1"]
    assert all(r["gzip"] for r in mixpanel.state.requests)
    assert run.states
    assert run.states[-1] == json.loads(
        [x for x in lines.splitlines() if '"type":"STATE"' in x][-1])["value"]


def test_replay_produces_identical_dedup_fields(tap_output, mixpanel, run_target,
                                                tmp_path: Path) -> None:
    lines, _ = tap_output
    first = run_target(target_config(mixpanel, tmp_path), lines)
    unique_after_first = len(mixpanel.state.events)
    second = run_target(target_config(mixpanel, tmp_path), lines)
    assert first.returncode == second.returncode == 0
    assert len(mixpanel.state.events) == unique_after_first
    assert mixpanel.state.raw_events == 2 * unique_after_first


def test_exactly_once_under_injected_faults(tap_output, mixpanel, run_target,
                                            tmp_path: Path) -> None:
    lines, records = tap_output
    mixpanel.state.fault_rates = {"429": 0.12, "502": 0.06, "503": 0.04,
                                  "drop_before": 0.04, "drop_after": 0.04}
    run = run_target(target_config(mixpanel, tmp_path, batch_size=50, max_concurrency=4),
                     lines)
    assert run.returncode == 0, run.stderr
    identified = {r["id"] for r in records if r.get("external_user_id")}
    got = Counter(e["properties"]["$insert_id"] for e in mixpanel.state.unique_events)
    assert set(got) == identified
    assert all(n == 1 for n in got.values())  # a resend carried the same four dedup fields
    # every send reached the server once, but where the server stored it and the answer was
    # lost on a dropped connection (then the resend is the only way to know it arrived)
    arrivals, dropped = mixpanel.state.arrivals, mixpanel.state.stored_then_dropped
    assert {i: arrivals[i] for i in identified} == {i: 1 + dropped[i] for i in identified}
    assert sum(dropped.values()) > 0
    assert run.summary["retries"] > 0
    assert run.summary["throttled_429"] > 0
    assert run.dead_letters == []
    statuses = mixpanel.state.statuses
    assert statuses[429] > 0
    assert statuses[502] + statuses[503] > 0
