"""target-braze against the Braze /users/track-compatible server: outcomes on the profiles."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.braze_server import API_KEY, NO_PERMISSION_KEY, BrazeServer, BrazeState
from tests.conftest import TargetRun, write_json

STREAM = "user_cohorts"
FAST_RETRIES = {"retry_first_delay_seconds": 0.01, "retry_max_delay_seconds": 0.05,
                "retry_jitter_seconds": [0, 0.01], "max_retry_seconds": 20}
COMMAND = [sys.executable, "-m", "target_braze.target", "--config"]


def cohort_set(user: str, *names: str, synced: list[str] | None = None,
               full: bool = False) -> dict:
    """A user_cohorts record: the user's whole set, and every name the run syncs."""
    return {"user_id": user, "cohort_ids": [abs(hash(n)) % 10_000 for n in names],
            "cohort_names": sorted(names),
            "synced_cohort_names": sorted({*names, *(synced or ())}),
            "full_resync": full, "synced_at": "2026-12-02T12:00:00Z"}


def lines_of(records: list[dict], stream: str = STREAM,
             states: dict[int, dict] | None = None) -> str:
    out = [json.dumps({"type": "SCHEMA", "stream": stream, "key_properties": [],
                       "schema": {"type": "object", "properties": {}}})]
    for i, record in enumerate(records, start=1):
        out.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
        if states and i in states:
            out.append(json.dumps({"type": "STATE", "value": states[i]}))
    return "\n".join(out) + "\n"


@pytest.fixture
def braze() -> Iterator[BrazeServer]:
    server = BrazeServer(state=BrazeState(known_users={f"user-{i}" for i in range(300)})).start()
    yield server
    server.stop()


def config_for(server: BrazeServer, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {"api_key": API_KEY, "rest_endpoint": server.url,
            "dead_letter_path": str(tmp_path / "dead-letters.jsonl"),
            "progress_interval_seconds": 1, **FAST_RETRIES, **overrides}


@pytest.fixture
def run_braze(tmp_path: Path):
    counter = iter(range(1000))

    def run(config: dict[str, Any], lines: str) -> TargetRun:
        path = write_json(tmp_path / f"braze-config-{next(counter)}.json", config)
        done = subprocess.run([*COMMAND, str(path)], input=lines, capture_output=True,
                              text=True, timeout=120, check=False)
        dead_path = Path(config["dead_letter_path"])
        dead = [json.loads(x) for x in dead_path.read_text().splitlines()] \
            if dead_path.exists() else []
        assert config.get("api_key", "") not in (done.stdout + done.stderr) or \
            not config.get("api_key")
        assert API_KEY not in dead_path.read_text() if dead_path.exists() else True
        run = TargetRun(done.returncode, done.stdout, done.stderr, dead)
        if done.returncode == 0 and "| summary: " in done.stderr:
            summary = run.summary     # every record ends counted
            assert summary["received"] == summary["applied"] + sum(
                summary["skipped"].values()) + sum(summary["dead_lettered"].values())
        return run

    return run


def objects_sent(server: BrazeServer) -> list[dict]:
    return [obj for body in server.state.requests for obj in body["attributes"]]


def test_first_sync_then_changes_leave_each_profile_with_exactly_its_cohorts(
        braze, run_braze, tmp_path: Path) -> None:
    first = [cohort_set(f"user-{i}", *(["Power users", "Churn risk"] if i % 2 == 0
                                       else ["Power users"]), full=True) for i in range(200)]
    run = run_braze(config_for(braze, tmp_path), lines_of(first, states={200: {"snap": 1}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"snap": 1}]
    # one object per user, at most 75 objects a request, the whole set as a plain array
    for body in braze.state.requests:
        users = [o["external_id"] for o in body["attributes"]]
        assert len(users) == len(set(users)) <= 75
    assert all(o["_update_existing_only"] is True for o in objects_sent(braze))
    assert len(objects_sent(braze)) == 200                   # one object per user, once
    sent = {o["external_id"]: o for o in objects_sent(braze)}  # requests arrive in any order
    assert sent["user-0"]["mixpanel_cohorts"] == ["Churn risk", "Power users"]
    assert sent["user-1"]["mixpanel_cohorts"] == ["Power users"]
    assert braze.state.bulk_requests == len(braze.state.requests)   # a first sync: bulk
    second = [cohort_set(f"user-{i}", *(["Churn risk"] if i % 2 == 0 else [])) for i in
              range(150, 200)]
    second += [cohort_set("user-0", "Power users", "Churn risk, EU")]
    braze.state.requests.clear()
    run = run_braze(config_for(braze, tmp_path), lines_of(second, states={51: {"snap": 2}}))
    assert run.returncode == 0, run.stderr
    assert len(objects_sent(braze)) == 51                    # only the changed users
    assert braze.state.bulk_requests == 3                    # not a bulk load this time
    assert braze.state.cohorts_of("user-0") == {"Power users", "Churn risk, EU"}
    assert braze.state.cohorts_of("user-2") == {"Power users", "Churn risk"}
    assert braze.state.cohorts_of("user-3") == {"Power users"}
    assert braze.state.cohorts_of("user-152") == {"Churn risk"}
    assert braze.state.cohorts_of("user-151") == set()
    assert "mixpanel_cohorts" not in braze.state.profiles["user-199"]   # an empty set: null
    summary = run.summary
    assert (summary["applied"], summary["cohort_sets"], summary["users_updated"]) == (51, 51, 51)


def test_unknown_users_are_never_created(braze, run_braze, tmp_path: Path) -> None:
    records = [cohort_set("user-1", "VIP"), cohort_set("stranger-1", "VIP"),
               cohort_set("stranger-2", "VIP")]
    run = run_braze(config_for(braze, tmp_path), lines_of(records))
    assert run.returncode == 0, run.stderr
    assert braze.state.created_users == set()
    assert "stranger-1" not in braze.state.profiles
    assert braze.state.cohorts_of("user-1") == {"VIP"}


def test_other_streams_of_the_tap_are_skipped_and_counted(
        braze, run_braze, tmp_path: Path) -> None:
    lines = (lines_of([{"id": 1, "name": "VIP"}], stream="cohorts")
             + lines_of([{"cohort_id": 1, "user_id": "user-1"}], stream="cohort_members")
             + lines_of([{"cohort_id": 1, "cohort_name": "VIP", "user_id": "user-1",
                          "action": "add"}], stream="cohort_membership_changes")
             + lines_of([cohort_set("user-1", "VIP")]))
    run = run_braze(config_for(braze, tmp_path), lines)
    assert run.returncode == 0, run.stderr
    summary = run.summary
    assert summary["received"] == 4
    assert summary["applied"] == 1
    assert sum(summary["skipped"].values()) == 3
    assert braze.state.cohorts_of("user-1") == {"VIP"}


def test_a_run_that_applies_nothing_because_of_the_mapping_fails_naming_it(
        braze, run_braze, tmp_path: Path) -> None:
    run = run_braze(config_for(braze, tmp_path),
                    lines_of([{"id": 1, "name": "VIP"}], stream="cohorts", states={1: {"s": 1}}))
    assert run.returncode != 0
    assert "mapping" in run.stderr
    assert STREAM in run.stderr
    assert run.states == []                       # the rerun, fixed, reads the records again
    records = [{"user": "user-1", "plan": "pro"}, {"user": "user-2", "plan": "free"}]
    run = run_braze(config_for(braze, tmp_path, mapping="attributes"),
                    lines_of(records, stream="accounts", states={2: {"s": 2}}))
    assert run.returncode != 0
    assert "external_id_field" in run.stderr
    assert run.states == []
    run = run_braze(config_for(braze, tmp_path, mapping="attributes", external_id_field="user"),
                    lines_of(records, stream="accounts", states={2: {"s": 2}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"s": 2}]
    assert braze.state.profiles["user-2"] == {"plan": "free"}


def test_faults_429_5xx_and_dropped_connections_end_with_every_user_right(
        braze, run_braze, tmp_path: Path) -> None:
    braze.state.script = ["429", "500", "drop_before", "drop_after", "503", "", "429"]
    records = [cohort_set(f"user-{i}", f"Cohort {i % 4}") for i in range(300)]
    run = run_braze(config_for(braze, tmp_path, objects_per_request=30, max_concurrency=3),
                    lines_of(records, states={300: {"done": True}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"done": True}]
    for i in range(300):
        assert braze.state.cohorts_of(f"user-{i}") == {f"Cohort {i % 4}"}
    summary = run.summary
    assert summary["throttled_429"] == 2
    assert summary["server_errors"] == 2
    assert summary["network_errors"] == 2
    assert summary["applied"] == 300


def test_retry_budget_spent_fails_with_no_state_past_what_was_applied(
        braze, run_braze, tmp_path: Path) -> None:
    braze.state.script = ["", *["500"] * 10_000]       # the first request, then only 500s
    records = [cohort_set(f"user-{i}", "VIP") for i in range(4)]
    config = config_for(braze, tmp_path, objects_per_request=2, max_concurrency=1,
                        max_retry_seconds=0.5)
    run = run_braze(config, lines_of(records, states={2: {"at": 2}, 4: {"at": 4}}))
    assert run.returncode != 0
    assert run.states == [{"at": 2}]
    assert "max_retry_seconds" in run.stderr
    assert braze.state.cohorts_of("user-1") == {"VIP"}
    assert braze.state.cohorts_of("user-2") == set()


@pytest.mark.parametrize("key", ["wrong-key-2b7e151628aed2a6", NO_PERMISSION_KEY])
def test_a_refused_key_stops_at_once_naming_api_key_and_rest_endpoint(
        key: str, braze, run_braze, tmp_path: Path) -> None:
    records = [cohort_set(f"user-{i}", "VIP") for i in range(200)]
    run = run_braze(config_for(braze, tmp_path, api_key=key), lines_of(records, states={
        100: {"at": 100}}))
    assert run.returncode != 0
    assert "api_key" in run.stderr
    assert "rest_endpoint" in run.stderr
    assert key not in run.stderr + run.stdout        # Braze echoes the key: redacted
    assert "Traceback" not in run.stderr  # the message says what to do; no stack after it
    assert run.states == []
    assert sum(braze.state.statuses.values()) <= 8   # stopped at once: no retries
    assert braze.state.profiles == {}


def test_a_400_is_never_resent_as_is_it_splits_down_to_the_bad_object(
        braze, run_braze, tmp_path: Path) -> None:
    braze.state.poison_users = {"user-5"}
    records = [cohort_set(f"user-{i}", "VIP") for i in range(10)]
    run = run_braze(config_for(braze, tmp_path), lines_of(records))
    assert run.returncode == 0, run.stderr
    assert [d["record"]["user_id"] for d in run.dead_letters] == ["user-5"]
    assert "400" in run.dead_letters[0]["reason"]
    assert {u for u in braze.state.profiles} == {f"user-{i}" for i in range(10)} - {"user-5"}
    assert braze.state.statuses[400] == 4                    # 10 -> 5 -> 3 -> 2 -> 1 object
    assert run.summary["dead_lettered"] == {"refused by Braze (400)": 1}


COHORTS_27 = [f"Cohort {n:02d}" for n in range(27)]


def test_a_user_in_27_cohorts_is_dead_lettered_never_truncated_and_exact_in_boolean_mode(
        braze, run_braze, tmp_path: Path) -> None:
    """Braze truncates an array over its limit silently (the oldest go): never send one."""
    braze.state.profiles["user-3"] = {"mixpanel_cohorts": ["Cohort 00"]}
    records = [cohort_set("user-1", *COHORTS_27), cohort_set("user-2", "Solo"),
               cohort_set("user-3", *COHORTS_27[:26])]
    run = run_braze(config_for(braze, tmp_path), lines_of(records, states={3: {"s": 1}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"s": 1}]
    assert [d["record"]["user_id"] for d in run.dead_letters] == ["user-1", "user-3"]
    assert all("attribute_mode: boolean" in d["message"] and "array_limit" in d["message"]
               for d in run.dead_letters)
    assert run.summary["dead_lettered"] == {"refused before sending: array_limit": 2}
    assert braze.state.truncated == {}                       # nothing Braze had to cut
    assert "user-1" not in braze.state.profiles
    assert braze.state.cohorts_of("user-3") == {"Cohort 00"}  # left as it was, not truncated
    assert braze.state.cohorts_of("user-2") == {"Solo"}
    run = run_braze(config_for(braze, tmp_path, attribute_mode="boolean",
                               dead_letter_path=str(tmp_path / "dl2.jsonl")),
                    lines_of([cohort_set("user-1", *COHORTS_27[1:], synced=COHORTS_27)]))
    assert run.returncode == 0, run.stderr
    profile = braze.state.profiles["user-1"]
    assert {k for k, v in profile.items() if v is True} == {
        f"mixpanel_cohorts_cohort_{n:02d}" for n in range(1, 27)}
    assert profile["mixpanel_cohorts_cohort_00"] is False
    assert run.dead_letters == []


def test_array_limit_follows_the_limit_raised_in_braze(
        braze, run_braze, tmp_path: Path) -> None:
    braze.state.array_limit = 30
    run = run_braze(config_for(braze, tmp_path, array_limit=30),
                    lines_of([cohort_set("user-1", *COHORTS_27)]))
    assert run.returncode == 0, run.stderr
    assert braze.state.cohorts_of("user-1") == set(COHORTS_27)
    assert run.dead_letters == []


def test_202_queued_and_any_5xx_are_sent_again(braze, run_braze, tmp_path: Path) -> None:
    braze.state.script = ["202", "501", "520"]
    run = run_braze(config_for(braze, tmp_path, objects_per_request=5, max_concurrency=1),
                    lines_of([cohort_set(f"user-{i}", "VIP") for i in range(10)]))
    assert run.returncode == 0, run.stderr
    assert all(braze.state.cohorts_of(f"user-{i}") == {"VIP"} for i in range(10))
    assert run.summary["server_errors"] == 3


def test_a_replay_of_a_runs_records_changes_nothing(braze, run_braze, tmp_path: Path) -> None:
    first = [cohort_set(f"user-{i}", "A", "B") for i in range(5)]
    second = [cohort_set(f"user-{i}", "B") for i in range(3)]
    for lines in (lines_of(first), lines_of(second)):
        assert run_braze(config_for(braze, tmp_path), lines).returncode == 0
    after = json.dumps(braze.state.profiles, sort_keys=True)
    assert run_braze(config_for(braze, tmp_path), lines_of(second)).returncode == 0
    assert json.dumps(braze.state.profiles, sort_keys=True) == after
    assert run_braze(config_for(braze, tmp_path), lines_of(first[3:])).returncode == 0
    assert json.dumps(braze.state.profiles, sort_keys=True) == after


@pytest.mark.parametrize(("identifier", "extra", "key", "expected"), [
    ("user_alias", {"user_alias_label": "mixpanel_id"}, "mixpanel_id:u-1",
     {"user_alias": {"alias_name": "u-1", "alias_label": "mixpanel_id"}}),
    ("email", {}, "u-1", {"email": "u-1"}),
    ("braze_id", {}, "u-1", {"braze_id": "u-1"}),
])
def test_braze_identifier_names_the_user_as_braze_accepts_it(
        identifier: str, extra: dict, key: str, expected: dict, braze, run_braze,
        tmp_path: Path) -> None:
    braze.state.known_users.add(key)
    run = run_braze(config_for(braze, tmp_path, braze_identifier=identifier, **extra),
                    lines_of([cohort_set("u-1", "VIP")]))
    assert run.returncode == 0, run.stderr
    assert braze.state.cohorts_of(key) == {"VIP"}
    assert objects_sent(braze) == [{**expected, "_update_existing_only": True,
                                    "mixpanel_cohorts": ["VIP"]}]


def test_user_alias_without_its_label_is_refused_naming_it(
        braze, run_braze, tmp_path: Path) -> None:
    run = run_braze(config_for(braze, tmp_path, braze_identifier="user_alias"),
                    lines_of([cohort_set("u-1", "VIP")]))
    assert run.returncode != 0
    assert "user_alias_label" in run.stderr


def test_attributes_mapping_serves_another_tap(braze, run_braze, tmp_path: Path) -> None:
    records = [{"id": "user-7", "plan": "pro", "seats": 12, "_sdc_extracted_at": "x"},
               {"id": "user-8", "email": "not an address"},  # Braze refuses this object
               {"plan": "free"}]                             # no user id
    run = run_braze(config_for(braze, tmp_path, mapping="attributes", external_id_field="id"),
                    lines_of(records, stream="accounts"))
    assert run.returncode == 0, run.stderr
    assert braze.state.profiles["user-7"] == {"plan": "pro", "seats": 12}
    assert "user-8" not in braze.state.profiles
    by_reason = {d["reason"]: d for d in run.dead_letters}
    assert "not a valid email" in by_reason["refused by Braze"]["message"]
    assert by_reason["refused before sending: id"]["record"] == {"plan": "free"}


def test_dry_run_writes_the_exact_request_bodies_and_no_secret(
        braze, run_braze, tmp_path: Path) -> None:
    folder = tmp_path / "dry"
    records = [cohort_set("user-1", "VIP", "Churn"), cohort_set("user-2", "VIP")]
    run = run_braze(config_for(braze, tmp_path, dry_run=True, dry_run_path=str(folder)),
                    lines_of(records))
    assert run.returncode == 0, run.stderr
    assert sum(braze.state.statuses.values()) == 0
    bodies = sorted(folder.glob("request-*.json"))
    assert [json.loads(b.read_bytes()) for b in bodies] == [{"attributes": [
        {"external_id": "user-1", "_update_existing_only": True,
         "mixpanel_cohorts": ["Churn", "VIP"]},
        {"external_id": "user-2", "_update_existing_only": True,
         "mixpanel_cohorts": ["VIP"]}]}]
    assert all(API_KEY not in p.read_text() for p in folder.iterdir())


def test_two_dry_runs_into_one_folder_keep_both_runs_bodies(
        braze, run_braze, tmp_path: Path) -> None:
    config = config_for(braze, tmp_path, dry_run=True, dry_run_path=str(tmp_path / "dry"))
    for user in ("user-1", "user-2"):  # two runs of the cohort sync
        run = run_braze(config, lines_of([cohort_set(user, "VIP")]))
        assert run.returncode == 0, run.stderr
    bodies = sorted((tmp_path / "dry").glob("request-*.json"))
    applied = [o["external_id"] for b in bodies for o in json.loads(b.read_bytes())["attributes"]]
    assert applied == ["user-1", "user-2"]


def test_rate_headers_steer_the_pace_to_few_429s(braze, run_braze, tmp_path: Path) -> None:
    braze.state.rate_limit = 15
    records = [cohort_set(f"user-{i}", "VIP") for i in range(300)]
    config = config_for(braze, tmp_path, objects_per_request=5, max_concurrency=8)
    run = run_braze(config, lines_of(records))
    assert run.returncode == 0, run.stderr
    assert run.summary["applied"] == 300
    assert braze.state.statuses[429] <= 1, braze.state.statuses


def test_a_killed_run_rerun_from_its_last_state_loses_nothing(
        braze, tmp_path: Path) -> None:
    braze.state.rate_limit = 10                   # slow enough to be killed midway
    records = [cohort_set(f"user-{i}", f"Cohort {i % 3}") for i in range(300)]
    states = {n: {"after": n} for n in range(20, 301, 20)}
    config = write_json(tmp_path / "config.json",
                        config_for(braze, tmp_path, objects_per_request=5, max_concurrency=2))
    process = subprocess.Popen([*COMMAND, str(config)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(lines_of(records, states=states))
    process.stdin.close()
    seen = []
    for line in process.stdout:
        state = json.loads(line)
        # a STATE comes out only once every record before it is applied
        assert all(braze.state.cohorts_of(f"user-{i}") == {f"Cohort {i % 3}"}
                   for i in range(state["after"]))
        seen.append(state)
        if len(seen) == 2:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    resume = seen[-1]["after"]
    assert resume < 300
    braze.state.rate_limit = None
    rerun = subprocess.run([*COMMAND, str(config)], input=lines_of(
        records[resume:], states={300 - resume: {"after": 300}}), capture_output=True,
        text=True, timeout=60, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert [json.loads(x) for x in rerun.stdout.splitlines()] == [{"after": 300}]
    for i in range(300):
        assert braze.state.cohorts_of(f"user-{i}") == {f"Cohort {i % 3}"}


def test_settings_errors_name_the_setting_and_hide_the_key(
        braze, run_braze, tmp_path: Path) -> None:
    run = run_braze(config_for(braze, tmp_path, objects_per_request=100),
                    lines_of([cohort_set("user-1", "VIP")]))
    assert run.returncode != 0
    assert "objects_per_request" in run.stderr
    run = run_braze(config_for(braze, tmp_path, rest_endpoint="rest.iad-01.braze.com"),
                    lines_of([cohort_set("user-1", "VIP")]))
    assert run.returncode != 0
    assert "rest_endpoint" in run.stderr
    assert sum(braze.state.statuses.values()) == 0


def test_sigterm_reads_on_to_the_next_state_delivers_and_exits_cleanly(
        braze, tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", config_for(braze, tmp_path))
    process = subprocess.Popen([*COMMAND, str(config)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdin is not None
    records = [cohort_set(f"user-{i}", "VIP") for i in range(30)]
    lines = lines_of(records, states={10: {"at": 10}, 20: {"at": 20}}).splitlines(True)
    cut = next(i for i, line in enumerate(lines) if '"at": 10' in line) + 6  # 5 records on
    process.stdin.writelines(lines[:cut])
    process.stdin.flush()
    time.sleep(1.5)                                   # the target has read them
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # on to STATE 20, and records after it
    out, err = process.communicate("".join(lines[cut:]), timeout=60)
    assert process.returncode == 0, err
    assert [json.loads(x) for x in out.splitlines()][-1] == {"at": 20}
    assert set(braze.state.profiles) == {f"user-{i}" for i in range(20)}  # the rest: next run
