"""target-mixpanel against the Mixpanel-compatible server: refusals, 400/413/401, state, dry run,
auth modes and regions, personal data, generic mapping."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.mixpanel_server import MixpanelServer
from testkit.services import self_signed_tls
from tests.conftest import singer_lines, target_config, write_json

NOW = int(time.time())
STREAM = "users_behaviors_customevent"


def custom_event(i: int, **overrides) -> dict:
    record = {"id": f"evt-{i:05d}", "user_id": f"braze-{i}", "external_user_id": f"user-{i}",
              "time": NOW - 3600, "name": "Added to Cart", "platform": "ios",
              "properties": {"plan": "pro", "n": i}, "event_type": "users.behaviors.CustomEvent"}
    record.update(overrides)
    return record


def test_events_mixpanel_would_refuse_are_dead_lettered_without_a_request(
        mixpanel, run_target, tmp_path: Path) -> None:
    bad = [
        custom_event(1, time=-300_000_000),                      # 1960
        custom_event(2, time=NOW + 86_400 * 365),                # next year
        custom_event(3, external_user_id="undefined"),           # refused distinct_id
        custom_event(4, external_user_id=12345),                 # not a string
        custom_event(5, properties={f"p{i}": i for i in range(300)}),   # 300 properties
        custom_event(6, properties={"blob": "x" * (2 * 1024 * 1024)}),  # 2 MB
        custom_event(7, time=None),                              # missing time
    ]
    good = [custom_event(i) for i in range(10, 15)]
    lines = singer_lines(STREAM, [*bad, *good], states={7: {"after": 7}, 12: {"after": 12}})
    run = run_target(target_config(mixpanel, tmp_path), lines)
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.unique_events) == 5
    assert sum(r["events"] for r in mixpanel.state.requests) == 5
    by_id = {d["record"]["id"]: d for d in run.dead_letters}
    assert sorted(by_id) == [f"evt-{i:05d}" for i in range(1, 8)]
    assert by_id["evt-00001"]["field"] == "time"
    assert "1971" in by_id["evt-00001"]["message"]
    assert by_id["evt-00002"]["field"] == "time"
    assert "future" in by_id["evt-00002"]["message"]
    assert by_id["evt-00003"]["field"] == "distinct_id"
    assert by_id["evt-00004"]["field"] == "distinct_id"
    assert by_id["evt-00005"]["field"] == "properties"
    assert by_id["evt-00006"]["field"] == "event"
    assert "1 MB" in by_id["evt-00006"]["message"]
    assert by_id["evt-00007"]["field"] == "time"
    assert all(d["stream"] == STREAM and d["reason"] for d in run.dead_letters)
    assert run.summary["imported"] == 5
    assert sum(run.summary["dead_lettered"].values()) == 7
    # states that become safe together may be coalesced: the last one always comes out
    assert run.states in ([{"after": 7}, {"after": 12}], [{"after": 12}])


@pytest.mark.parametrize("shape", ["index", "insert_id", "$insert_id", "string"])
def test_strict_400_imports_the_valid_and_dead_letters_the_named(
        shape: str, mixpanel, run_target, tmp_path: Path) -> None:
    mixpanel.state.failed_records_shape = shape
    mixpanel.state.refused_distinct_ids = {"user-3", "user-7"}
    records = [custom_event(i) for i in range(10)]
    run = run_target(target_config(mixpanel, tmp_path), singer_lines(STREAM, records))
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.requests) == 1          # a 400 is never resent
    assert len(mixpanel.state.unique_events) == 8
    assert sorted(d["record"]["id"] for d in run.dead_letters) == ["evt-00003", "evt-00007"]
    assert all("400" in d["reason"] for d in run.dead_letters)
    if shape == "index":
        assert run.dead_letters[0]["field"] == "properties.distinct_id"
    assert run.summary["imported"] == 8


def test_413_splits_batches_and_dead_letters_a_single_oversized_event(
        mixpanel, run_target, tmp_path: Path) -> None:
    mixpanel.state.max_events = 300
    mixpanel.state.max_bytes = 200_000
    records = [custom_event(i) for i in range(1000)]
    records.append(custom_event(5000, properties={"blob": "y" * 300_000}))
    run = run_target(target_config(mixpanel, tmp_path), singer_lines(STREAM, records))
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.unique_events) == 1000
    assert run.summary["batch_splits_413"] > 0
    assert [d["record"]["id"] for d in run.dead_letters] == ["evt-05000"]
    assert "413" in run.dead_letters[0]["reason"]


@pytest.mark.parametrize("workers", [1, 3])
def test_failed_run_emits_no_state_past_the_last_accounted_record(
        workers: int, mixpanel, run_target, tmp_path: Path) -> None:
    records = [custom_event(i) for i in range(60)]
    lines = singer_lines(STREAM, records, states={20: {"n": 20}, 40: {"n": 40}, 60: {"n": 60}})
    config = target_config(mixpanel, tmp_path, batch_size=20, max_concurrency=workers,
                           worker_processes=workers, max_retry_seconds=0.3)
    # the first 20 records go through; every request with a later one answers 503 until the
    # retry budget is spent, whichever worker sends it
    mixpanel.state.unavailable_for = {f"evt-{i:05d}" for i in range(20, 60)}
    run = run_target(config, lines)
    assert run.returncode != 0
    assert "retry budget" in run.stderr
    imported = {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}
    assert imported == {f"evt-{i:05d}" for i in range(20)}
    # the state of the delivered records, and none past them
    assert run.states == [{"n": 20}]


def test_state_waits_for_its_records(mixpanel, run_target, tmp_path: Path) -> None:
    records = [custom_event(i) for i in range(30)]
    lines = singer_lines(STREAM, records, states={10: {"n": 10}, 25: {"n": 25}})
    mixpanel.state.script = ["slow:0.5"]
    run = run_target(target_config(mixpanel, tmp_path, batch_size=1000, worker_processes=1),
                     lines)
    assert run.returncode == 0, run.stderr
    # both states were only safe once the single batch came back: the last one is emitted
    assert run.states == [{"n": 25}]
    assert len(mixpanel.state.unique_events) == 30


def test_dry_run_writes_the_bodies_and_sends_nothing(mixpanel, run_target, tmp_path: Path) -> None:
    records = [custom_event(i) for i in range(25)] + [custom_event(99, external_user_id=None)]
    config = target_config(mixpanel, tmp_path, dry_run=True,
                           dry_run_path=str(tmp_path / "dry"), batch_size=10)
    run = run_target(config, singer_lines(STREAM, records))
    assert run.returncode == 0, run.stderr
    assert mixpanel.state.requests == []
    bodies = sorted((tmp_path / "dry").glob("batch-*.json"))
    assert len(bodies) == 3
    events = [e for body in bodies for e in json.loads(body.read_text())]
    assert len(events) == 25
    assert events[0]["event"] == "[Braze Custom Event] Added to Cart"
    assert events[0]["properties"]["[Custom event property] plan"] == "pro"
    assert (tmp_path / "dry" / "endpoint.txt").read_text().strip() == f"{mixpanel.url}/import"
    assert run.summary["skipped"] == {
        "no external_user_id (Braze sends only identified users' events)": 1}


def test_two_dry_runs_into_one_folder_keep_both_runs_bodies(
        mixpanel, run_target, tmp_path: Path) -> None:
    config = target_config(mixpanel, tmp_path, dry_run=True,
                           dry_run_path=str(tmp_path / "dry"), batch_size=10)
    for first in (0, 100):  # e.g. two fan-out groups, or two runs of one job
        run = run_target(config, singer_lines(STREAM, [custom_event(first + i)
                                                      for i in range(15)]))
        assert run.returncode == 0, run.stderr
    bodies = sorted((tmp_path / "dry").glob("batch-*.json"))
    events = [e for body in bodies for e in json.loads(body.read_text())]
    assert len(bodies) == 4
    assert len({e["properties"]["$insert_id"] for e in events}) == len(events) == 30


@pytest.mark.parametrize(("region", "host"), [("US", "https://api.mixpanel.com"),
                                              ("EU", "https://api-eu.mixpanel.com"),
                                              ("IN", "https://api-in.mixpanel.com")])
def test_region_chooses_the_host(region: str, host: str, run_target, tmp_path: Path) -> None:
    config = {"region": region, "dry_run": True, "dry_run_path": str(tmp_path / region),
              "project_token": "t", "dead_letter_path": str(tmp_path / "dl.jsonl")}
    run = run_target(config, singer_lines(STREAM, [custom_event(1)]))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / region / "endpoint.txt").read_text().strip() == f"{host}/import"


def test_a_duration_that_is_not_a_number_is_named(mixpanel, run_target, tmp_path: Path) -> None:
    lines = singer_lines("s", [{"id": "a", "time": 1743500000, "distinct_id": "u"}])
    run = run_target(target_config(mixpanel, tmp_path, request_timeout_seconds="soon"), lines)
    assert run.returncode != 0
    assert "request_timeout_seconds" in run.stderr
    fine = run_target(target_config(mixpanel, tmp_path, mapping="generic", event_name="Seen",
                                    request_timeout_seconds="30.5"), lines)
    assert fine.returncode == 0, fine.stderr
    assert fine.summary["received"] == 1
    assert "request_timeout_seconds" not in fine.stderr


def test_tls_certificates_are_checked_unless_turned_off(run_target, tmp_path: Path) -> None:
    context = self_signed_tls(tmp_path)
    server = MixpanelServer(tls=context).start()
    try:
        lines = singer_lines("s", [{"id": "a", "time": 1743500000, "distinct_id": "u"}])
        config = target_config(server, tmp_path, mapping="generic", event_name="Seen")
        checked = run_target(config, lines)
        assert checked.returncode != 0
        assert "TLS certificate of" in checked.stderr
        assert "verify_tls" in checked.stderr
        assert "Traceback" not in checked.stderr
        assert server.state.raw_events == 0
        unchecked = run_target({**config, "verify_tls": False}, lines)
        assert unchecked.returncode == 0, unchecked.stderr
        assert "verify_tls is off" in unchecked.stderr
        assert len(server.state.unique_events) == 1
    finally:
        server.stop()


def test_unknown_region_is_named(run_target, tmp_path: Path) -> None:
    run = run_target({"region": "MARS", "project_token": "t"},
                     singer_lines(STREAM, [custom_event(1)]))
    assert run.returncode != 0
    assert "region" in run.stderr
    assert "MARS" in run.stderr


@pytest.mark.parametrize("mode", ["service_account", "project_token", "api_secret"])
def test_each_auth_mode_imports(mode: str, mixpanel, run_target, tmp_path: Path) -> None:
    creds = mixpanel.state.credentials
    config = target_config(mixpanel, tmp_path)
    if mode != "service_account":
        for key in ("service_account_username", "service_account_secret", "project_id"):
            del config[key]
        config[mode] = creds.project_token if mode == "project_token" else creds.api_secret
    run = run_target(config, singer_lines(STREAM, [custom_event(i) for i in range(5)]))
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.unique_events) == 5
    assert ("deprecated" in run.stderr) == (mode == "api_secret")


def test_wrong_secret_stops_with_the_auth_settings_named(mixpanel, run_target,
                                                         tmp_path: Path) -> None:
    wrong = "this-is-the-wrong-secret-9911"
    config = target_config(mixpanel, tmp_path, service_account_secret=wrong)
    lines = singer_lines(STREAM, [custom_event(i) for i in range(30)], states={10: {"n": 10}})
    run = run_target(config, lines)
    assert run.returncode != 0
    assert "service_account_secret" in run.stderr
    assert wrong not in run.stderr
    assert "Traceback" not in run.stderr  # the message says what to do; no stack after it
    assert wrong not in run.stdout
    assert run.states == []
    assert mixpanel.state.unique_events == []


def test_missing_credentials_are_named(run_target, tmp_path: Path) -> None:
    run = run_target({"api_url": "http://127.0.0.1:9"}, singer_lines(STREAM, [custom_event(1)]))
    assert run.returncode != 0
    assert "project_token" in run.stderr
    assert "service_account_username" in run.stderr


@pytest.mark.parametrize("mode", ["hash", "drop"])
def test_personal_data_never_reaches_mixpanel_or_the_dead_letters(
        mode: str, mixpanel, run_target, tmp_path: Path) -> None:
    email, phone = "jane.doe@example.com", "+15551234567"
    records = [custom_event(i, email_address=email, to_phone_number=phone,
                            properties={"contact": f"write to {email}", "tel": phone})
               for i in range(5)]
    records.append(custom_event(9, email_address=email, time=5))   # dead-lettered
    run = run_target(target_config(mixpanel, tmp_path, pii=mode, pii_salt="s4lt"),
                     singer_lines(STREAM, records))
    assert run.returncode == 0, run.stderr
    sent = json.dumps(mixpanel.state.unique_events)
    written = (tmp_path / "dead-letters.jsonl").read_text()
    for text in (sent, written):
        assert email not in text
        assert phone not in text
    assert len(mixpanel.state.unique_events) == 5
    props = mixpanel.state.unique_events[0]["properties"]
    if mode == "hash":
        assert len(props["email_address"]) == 64
    else:
        assert "email_address" not in props


def test_generic_mapping_feeds_any_tap(mixpanel, run_target, tmp_path: Path) -> None:
    records = [{"order_id": 100 + i, "customer": f"c-{i}", "created_at": "2025-05-01T10:00:00Z",
                "total": 9.5, "status": "paid"} for i in range(4)]
    config = target_config(mixpanel, tmp_path, mapping="generic", event_name="Order {status}",
                           distinct_id_field="customer", time_field="created_at",
                           insert_id_field="order_id")
    run = run_target(config, singer_lines("orders", records))
    assert run.returncode == 0, run.stderr
    events = sorted(mixpanel.state.unique_events, key=lambda e: e["properties"]["$insert_id"])
    assert [e["event"] for e in events] == ["Order paid"] * 4
    assert events[0]["properties"] == {"time": 1746093600000, "distinct_id": "c-0",
                                       "$insert_id": "100", "total": 9.5, "status": "paid"}


def test_record_before_schema_and_bad_lines_name_the_problem(run_target, mixpanel,
                                                             tmp_path: Path) -> None:
    config = target_config(mixpanel, tmp_path)
    orphan = json.dumps({"type": "RECORD", "stream": "nowhere", "record": {"id": 1}}) + "\n"
    run = run_target(config, orphan)
    assert run.returncode != 0
    assert "nowhere" in run.stderr
    assert "SCHEMA" in run.stderr
    good = singer_lines(STREAM, [custom_event(1)], states={1: {"n": 1}})
    run = run_target(config, good + "{this is not json\n")
    assert run.returncode != 0
    assert "not valid JSON" in run.stderr
    assert "{this is not json" in run.stderr
    # nothing before the bad line is lost: its record was imported and its state emitted
    assert {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events} == {"evt-00001"}
    assert run.states == [{"n": 1}]
    # a RECORD line cut short (a tap killed mid-line) is named too
    cut = json.dumps({"type": "RECORD", "stream": STREAM, "record": custom_event(2)})[:60]
    run = run_target(config, good + cut + "\n")
    assert run.returncode != 0
    assert "not a valid RECORD message" in run.stderr
    assert cut[:40] in run.stderr


def test_settings_of_the_wrong_type_are_named_without_secret_values(
        mixpanel, run_target, tmp_path: Path) -> None:
    config = target_config(mixpanel, tmp_path, batch_size="lots", gzip="maybe",
                           project_token=987654321012345)
    run = run_target(config, singer_lines(STREAM, [custom_event(1)]))
    assert run.returncode != 0
    assert "config['batch_size']" in run.stderr
    assert "config['gzip']" in run.stderr
    assert "config['project_token']" in run.stderr
    assert "987654321012345" not in run.stderr + run.stdout
    assert mixpanel.state.requests == []


def test_sigterm_delivers_what_was_read_and_emits_its_state(mixpanel, tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", target_config(mixpanel, tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "target_mixpanel.target", "--config",
                                str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(singer_lines(STREAM, [custom_event(i) for i in range(500)],
                                     states={250: {"n": 250}, 500: {"n": 500}}).encode())
    process.stdin.flush()
    time.sleep(3)  # the target is now blocked reading, with records in open batches
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert [json.loads(line) for line in stdout.splitlines()][-1] == {"n": 500}
    assert len(mixpanel.state.unique_events) == 500
    assert mixpanel.state.raw_events == 500  # a SIGTERM costs no duplicates


def test_sigterm_reads_on_to_the_next_state_so_a_rerun_replays_nothing(
        mixpanel, tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", target_config(mixpanel, tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "target_mixpanel.target", "--config",
                                str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None
    records = [custom_event(i) for i in range(900)]
    lines = singer_lines(STREAM, records, states={250: {"n": 250}, 600: {"n": 600}})
    cut = lines.index(f'{{"type": "RECORD", "stream": "{STREAM}", "record": '
                      f'{json.dumps(records[400])}')  # 150 records past the state n=250
    process.stdin.write(lines[:cut].encode())
    process.stdin.flush()
    time.sleep(3)  # records past the last state were read
    process.send_signal(signal.SIGTERM)
    time.sleep(1)
    # the tap's last file and STATE, and more, which the target does not read: it closes its
    # input after that STATE (a tap told to stop too would have ended there)
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(lines[cut:].encode())
        process.stdin.close()
    process.stdin = None
    stdout, stderr = process.communicate(timeout=60)
    assert b"left to the next run" in stderr
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert [json.loads(line) for line in stdout.splitlines()][-1] == {"n": 600}
    sent = {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}
    assert sent == {r["id"] for r in records[:600]}  # nothing past the state it emitted
    assert mixpanel.state.raw_events == 600


@pytest.mark.parametrize("workers", [1, 3])
def test_frequent_states_do_not_shrink_batches(workers: int, mixpanel, run_target,
                                               tmp_path: Path) -> None:
    # the tap checkpoints after every file; small files mean a STATE every few records
    records = [custom_event(i) for i in range(1200)]
    states = {n: {"n": n} for n in range(5, 1201, 5)}
    config = target_config(mixpanel, tmp_path, batch_size=200, worker_processes=workers)
    run = run_target(config, singer_lines(STREAM, records, states=states), timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.unique_events) == 1200
    assert run.states[-1] == {"n": 1200}
    # full batches, not one per checkpoint (each worker may end with one partial batch)
    assert len(mixpanel.state.requests) <= 1200 // 200 + workers


def test_ids_that_do_not_fit_insert_id_are_hashed_deterministically(
        mixpanel, run_target, tmp_path: Path) -> None:
    records = [custom_event(1, id="evt:with:colons:and-a-very-long-suffix-beyond-36")]
    first = run_target(target_config(mixpanel, tmp_path), singer_lines(STREAM, records))
    second = run_target(target_config(mixpanel, tmp_path), singer_lines(STREAM, records))
    assert first.returncode == second.returncode == 0
    assert len(mixpanel.state.unique_events) == 1
    assert mixpanel.state.raw_events == 2
    insert_id = mixpanel.state.unique_events[0]["properties"]["$insert_id"]
    assert len(insert_id) == 32
    assert all(c in "0123456789abcdef" for c in insert_id)


@pytest.mark.parametrize("retry_after", ["0", "Thu, 01 Jan 1970 00:00:00 GMT"])  # RFC 9110
def test_retry_after_is_honoured(retry_after: str, mixpanel, run_target, tmp_path: Path) -> None:
    mixpanel.state.script = ["429", "429"]
    mixpanel.state.retry_after = retry_after  # seconds, or an HTTP date (past: no wait)
    # without Retry-After the first retries would wait 60 s and more (unpaced: a paced 429
    # goes again as soon as the pace gives it a slot)
    config = target_config(mixpanel, tmp_path, retry_first_delay_seconds=60,
                           retry_max_delay_seconds=60, retry_jitter_seconds=[0, 0],
                           worker_processes=1, adaptive_sending=False)
    run = run_target(config, singer_lines(STREAM, [custom_event(i) for i in range(5)]),
                     timeout=40)
    assert run.returncode == 0, run.stderr
    assert run.summary["throttled_429"] == 2
    assert len(mixpanel.state.unique_events) == 5


def test_generic_default_event_name_is_the_stream(mixpanel, run_target, tmp_path: Path) -> None:
    records = [{"id": f"o-{i}", "customer": f"c-{i}", "time": NOW - 60} for i in range(2)]
    config = target_config(mixpanel, tmp_path, mapping="generic", distinct_id_field="customer")
    run = run_target(config, singer_lines("orders", records))
    assert run.returncode == 0, run.stderr
    assert [e["event"] for e in mixpanel.state.unique_events] == ["orders", "orders"]


def test_generic_empty_insert_id_falls_back_to_the_record_digest(
        mixpanel, run_target, tmp_path: Path) -> None:
    # one user, one time: Mixpanel keeps one of two events whose $insert_id is the same
    records = [{"id": "", "customer": "c-1", "time": NOW - 60, "n": i} for i in range(2)]
    config = target_config(mixpanel, tmp_path, mapping="generic", event_name="Seen",
                           distinct_id_field="customer")
    run = run_target(config, singer_lines("rows", records))
    assert run.returncode == 0, run.stderr
    assert sorted(e["properties"]["n"] for e in mixpanel.state.unique_events) == [0, 1]


def record_count_metrics(stderr: str) -> dict[str, int]:
    """The SDK's record_count metric per stream, summed over its log lines."""
    counts: dict[str, int] = {}
    for line in stderr.splitlines():
        if "METRIC: " in line:
            point = json.loads(line.split("METRIC: ", 1)[1])
            if point["metric"] == "record_count":
                stream = point["tags"]["stream"]
                counts[stream] = counts.get(stream, 0) + point["value"]
    return counts


def test_the_sdk_record_count_metric_counts_each_streams_records(
        mixpanel, run_target, tmp_path: Path) -> None:
    orders = [{"id": f"o-{i}", "customer": f"c-{i}", "time": NOW - 60} for i in range(3)]
    refunds = [{"id": f"r-{i}", "customer": f"c-{i}", "time": NOW - 60} for i in range(2)]
    config = target_config(mixpanel, tmp_path, mapping="generic", distinct_id_field="customer")
    run = run_target(config, singer_lines("orders", orders) + singer_lines("refunds", refunds))
    assert run.returncode == 0, run.stderr
    assert len(mixpanel.state.unique_events) == 5
    assert record_count_metrics(run.stderr) == {"orders": 3, "refunds": 2}


def test_a_run_whose_every_record_a_setting_refused_fails_naming_it(
        mixpanel, run_target, tmp_path: Path) -> None:
    records = [{"id": f"o-{i}", "customer": f"c-{i}", "created": NOW - 60} for i in range(3)]
    config = target_config(mixpanel, tmp_path, mapping="generic", distinct_id_field="customer",
                           time_field="created_at")
    run = run_target(config, singer_lines("orders", records, states={3: {"after": 3}}))
    assert run.returncode != 0
    assert "time_field" in run.stderr
    assert "'created_at'" in run.stderr
    assert run.states == []          # a rerun with time_field fixed reads them again
    assert mixpanel.state.requests == []
    assert sorted(d["record"]["id"] for d in run.dead_letters) == ["o-0", "o-1", "o-2"]
    # once the setting is right, the same input imports and emits its state
    config["time_field"] = "created"
    config["dead_letter_path"] = str(tmp_path / "dead-letters-2.jsonl")
    run = run_target(config, singer_lines("orders", records, states={3: {"after": 3}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"after": 3}]
    assert len(mixpanel.state.unique_events) == 3


def test_a_run_with_some_records_refused_by_a_setting_succeeds(
        mixpanel, run_target, tmp_path: Path) -> None:
    records = [{"id": "o-1", "customer": "c-1", "time": NOW - 60},
               {"id": "o-2", "customer": "c-2"}]
    config = target_config(mixpanel, tmp_path, mapping="generic", distinct_id_field="customer")
    run = run_target(config, singer_lines("orders", records, states={2: {"after": 2}}))
    assert run.returncode == 0, run.stderr
    assert run.states == [{"after": 2}]
    assert [d["record"]["id"] for d in run.dead_letters] == ["o-2"]
