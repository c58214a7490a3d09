"""Incremental state: nothing read twice, late files picked up, interrupted runs lose nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import fsspec

from tap_braze_currents.demo_export import currents_key, write_avro_file, write_demo_export
from tap_braze_currents.event_types import catalog_avro_schema
from tap_braze_currents.storage import CurrentsStorage
from tests.conftest import (
    SAMPLE_TYPES,
    assert_states_follow_their_records,
    parse_messages,
    tap_command,
    write_json,
)


def test_second_run_reads_nothing_and_late_file_is_picked_up(tmp_path: Path, run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=SAMPLE_TYPES[:2], hours=3, events_per_file=4)
    config = {"storage_url": str(tmp_path), "lookback_hours": 6}
    first = run_tap(config)
    assert first.returncode == 0, first.stderr
    assert len(first.records) == 2 * 3 * 2 * 4
    second = run_tap(config, first.last_state)
    assert second.returncode == 0, second.stderr
    assert second.records == []
    # a late file lands in the oldest hour, inside the lookback window
    event_type = SAMPLE_TYPES[1]
    schema = catalog_avro_schema(event_type)
    late = [dict(first.records[-1]["record"]) for _ in range(3)]
    for i, record in enumerate(late):
        record.update({"id": f"late-{i}", "properties": "{}"})
        del record["event_type"], record["_sdc_source_file"]
    key = currents_key("late", event_type, "2025-04-01-00", old_layout=False, partition=0,
                       offset=999)
    write_avro_file(fsspec.filesystem("file"), str(tmp_path / key), schema, late)
    third = run_tap(config, second.last_state)
    assert sorted(third.ids) == ["late-0", "late-1", "late-2"]
    assert run_tap(config, third.last_state).records == []


def test_rewritten_key_is_read_again(tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path), event_types=["users.behaviors.Location"], hours=1,
                               integrations=1, events_per_file=3)
    first = run_tap({"storage_url": str(tmp_path)})
    path = export.files[0]
    schema = catalog_avro_schema("users.behaviors.Location")
    retry = [dict(m["record"]) for m in first.records] + [dict(first.records[0]["record"])]
    retry[-1]["id"] = "extra"
    for record in retry:
        del record["event_type"], record["_sdc_source_file"]
    write_avro_file(fsspec.filesystem("file"), path, schema, retry)
    second = run_tap({"storage_url": str(tmp_path)}, first.last_state)
    assert Counter(second.ids) == Counter([*first.ids, "extra"])


def test_state_stays_bounded_by_the_lookback_window(tmp_path: Path, run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=["users.behaviors.Location"], hours=30,
                      integrations=1, files_per_hour=2, events_per_file=1)
    run = run_tap({"storage_url": str(tmp_path), "lookback_hours": 3})
    assert run.returncode == 0, run.stderr
    assert len(run.records) == 60
    bookmark = run.last_state["bookmarks"]["users_behaviors_location"]
    assert bookmark["newest_hour"] == "2025-04-02-05"
    assert sorted(bookmark["read"]) == ["2025-04-02-02", "2025-04-02-03", "2025-04-02-04",
                                        "2025-04-02-05"]
    # two files an hour: two 6-byte digests, base64url-packed
    assert all(len(base64.urlsafe_b64decode(packed)) == 2 * 6
               for packed in bookmark["read"].values())
    # the state after 30 hours is no larger than after 4
    assert len(json.dumps(bookmark)) < 300


def test_run_killed_midway_loses_nothing_on_rerun(tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES, hours=3,
                               events_per_file=200)
    config_path = write_json(tmp_path / "config.json", {"storage_url": str(tmp_path / "export")})
    process = subprocess.Popen(tap_command(config_path), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    seen_lines = []
    states = 0
    for line in process.stdout:
        seen_lines.append(line)
        if '"type":"STATE"' in line:
            states += 1
            if states == 7:
                os.kill(process.pid, signal.SIGKILL)
                break
    process.wait()
    first = parse_messages("".join(seen_lines))
    last_state = [m["value"] for m in first if m["type"] == "STATE"][-1]
    first_ids = [m["record"]["id"] for m in first if m["type"] == "RECORD"]
    rerun = run_tap({"storage_url": str(tmp_path / "export")}, last_state)
    assert rerun.returncode == 0, rerun.stderr
    expected = {i for ids in export.ids.values() for i in ids}
    got = Counter(first_ids) + Counter(rerun.ids)
    assert set(got) == expected
    # at most the file in flight is read again
    assert sum(got.values()) - len(expected) <= 200


def test_sigterm_ends_after_the_file_being_read_with_its_state(tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES, hours=3,
                               events_per_file=200)
    config_path = write_json(tmp_path / "config.json", {"storage_url": str(tmp_path / "export"),
                                                        "state_interval_seconds": 0})
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(tap_command(config_path), stdout=subprocess.PIPE,
                                   stderr=stderr, text=True)
    assert process.stdout is not None
    seen_lines = []
    states_after_records = 0
    for line in process.stdout:
        seen_lines.append(line)
        if '"type":"STATE"' in line and any('"RECORD"' in x for x in seen_lines):
            states_after_records += 1
            if states_after_records == 3:  # three files read
                process.send_signal(signal.SIGTERM)
                break
    seen_lines.extend(process.stdout)  # what it writes before it ends
    assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
    assert "stopping after the file being read" in log.read_text()
    first = parse_messages("".join(seen_lines))
    assert first[-1]["type"] == "STATE"  # nothing past the last state
    first_ids = [m["record"]["id"] for m in first if m["type"] == "RECORD"]
    expected = {i for ids in export.ids.values() for i in ids}
    assert 0 < len(first_ids) < len(expected)  # it stopped early
    rerun = run_tap({"storage_url": str(tmp_path / "export")}, first[-1]["value"])
    assert rerun.returncode == 0, rerun.stderr
    got = Counter(first_ids) + Counter(rerun.ids)
    assert set(got) == expected
    assert sum(got.values()) == len(expected)  # nothing read twice


def test_a_target_gone_after_the_stop_signal_ends_the_tap_cleanly(tmp_path: Path) -> None:
    """A scheduler signals tap and target; the target stops at its STATE and closes the pipe
    while the tap is still writing a file: the tap ends with 0, not a broken-pipe error."""
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES[:1], hours=1,
                      events_per_file=50_000, integrations=1)
    config_path = write_json(tmp_path / "config.json", {"storage_url": str(tmp_path / "export")})
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(tap_command(config_path), stdout=subprocess.PIPE,
                                   stderr=stderr)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(b'{"type":"RECORD"'):
            break  # in the middle of the file, with the pipe full behind us
    process.send_signal(signal.SIGTERM)
    process.stdout.close()
    assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "The target stopped reading after the stop signal" in text
    assert "unhandled error" not in text
    assert "Traceback" not in text


# -- amortised checkpoints ---------------------------------------------------------------

def test_state_interval_is_honoured_and_states_follow_their_records(tmp_path: Path,
                                                                    run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=SAMPLE_TYPES[:3], hours=3, events_per_file=1000)
    rare = run_tap({"storage_url": str(tmp_path), "state_interval_seconds": 3600})
    assert rare.returncode == 0, rare.stderr
    # one STATE at the end of the run, none in between or at the ends of earlier streams
    kinds = [(m["type"], m.get("stream")) for m in rare.messages]
    states = [i for i, (kind, _) in enumerate(kinds) if kind == "STATE"]
    assert len(states) == 1
    assert states[0] == len(kinds) - 1
    assert_states_follow_their_records(rare.messages, tmp_path)
    often = run_tap({"storage_url": str(tmp_path), "state_interval_seconds": 0})
    assert often.returncode == 0, often.stderr
    assert assert_states_follow_their_records(often.messages, tmp_path) > 3
    assert often.last_state == rare.last_state
    assert Counter(often.ids) == Counter(rare.ids)


def test_a_run_from_a_saved_state_prints_one_state_not_the_input_again(tmp_path: Path,
                                                                      run_tap) -> None:
    """The state holds every stream's lookback window: an hourly run printed it once per stream
    and once more as an echo of its input (45% of its bytes); now once, at its end."""
    write_demo_export(str(tmp_path), event_types=SAMPLE_TYPES[:3], hours=2, events_per_file=5)
    first = run_tap({"storage_url": str(tmp_path)})
    late = tmp_path / "late"
    write_demo_export(str(late), event_types=SAMPLE_TYPES[:3], hours=3, events_per_file=5)
    for path in late.rglob("*.avro"):  # the third hour arrives
        if "date=2025-04-01-02" in str(path):
            target = tmp_path / path.relative_to(late)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    hourly = run_tap({"storage_url": str(tmp_path)}, first.last_state)
    assert hourly.returncode == 0, hourly.stderr
    assert hourly.records
    states = [m for m in hourly.messages if m["type"] == "STATE"]
    assert len(states) == 1
    assert hourly.messages[-1]["type"] == "STATE"
    assert states[0]["value"] != first.last_state


def test_run_killed_between_checkpoints_rereads_only_what_followed_its_last_state(
        tmp_path: Path, run_tap) -> None:
    export_root = tmp_path / "export"
    # files large enough that a stream's files are printed in several groups
    export = write_demo_export(str(export_root), event_types=SAMPLE_TYPES[:3], hours=3,
                               events_per_file=1000)
    config = {"storage_url": str(export_root), "state_interval_seconds": 0}
    config_path = write_json(tmp_path / "config.json", config)
    process = subprocess.Popen(tap_command(config_path), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    seen_lines = []
    states = records_after = 0
    for line in process.stdout:
        seen_lines.append(line)
        if '"type":"STATE"' in line:
            states += 1
            records_after = 0
        elif states >= 4 and '"type":"RECORD"' in line:
            records_after += 1
            if records_after == 150:  # inside the files after the 4th checkpoint
                os.kill(process.pid, signal.SIGKILL)
                break
    process.wait()
    first = parse_messages("".join(seen_lines))
    assert_states_follow_their_records(first, export_root)
    last = max(i for i, m in enumerate(first) if m["type"] == "STATE")
    since_last_state = [m for m in first[last:] if m["type"] == "RECORD"]
    first_ids = [m["record"]["id"] for m in first if m["type"] == "RECORD"]
    rerun = run_tap(config, first[last]["value"])
    assert rerun.returncode == 0, rerun.stderr
    expected = {i for ids in export.ids.values() for i in ids}
    got = Counter(first_ids) + Counter(rerun.ids)
    assert set(got) == expected  # nothing skipped
    # read again: exactly what was printed after the last STATE, nothing before it
    assert sum(got.values()) - len(expected) == len(since_last_state) == 150


def test_state_after_a_long_backfill_holds_only_the_lookback_window(tmp_path: Path,
                                                                    run_tap) -> None:
    write_demo_export(str(tmp_path / "day"), event_types=["users.behaviors.Location"],
                      hours=25, integrations=1, files_per_hour=2, events_per_file=1)
    write_demo_export(str(tmp_path / "week"), event_types=["users.behaviors.Location"],
                      hours=7 * 24, integrations=1, files_per_hour=2, events_per_file=1)
    day = run_tap({"storage_url": str(tmp_path / "day"), "lookback_hours": 24})
    week = run_tap({"storage_url": str(tmp_path / "week"), "lookback_hours": 24})
    assert week.returncode == 0, week.stderr
    assert len(week.records) == 7 * 24 * 2
    bookmark = week.last_state["bookmarks"]["users_behaviors_location"]
    assert bookmark["newest_hour"] == "2025-04-07-23"
    assert sorted(bookmark["read"]) == [f"2025-04-{6 + (23 + h) // 24:02d}-{(23 + h) % 24:02d}"
                                        for h in range(25)]  # 2025-04-06-23 .. 2025-04-07-23
    assert len(json.dumps(bookmark)) == len(
        json.dumps(day.last_state["bookmarks"]["users_behaviors_location"]))


def test_state_of_an_earlier_version_is_read(tmp_path: Path, run_tap) -> None:
    """States with hex digest lists (before the packed form) still mark their files read."""
    write_demo_export(str(tmp_path), event_types=["users.behaviors.Location"], hours=2,
                      integrations=1, events_per_file=2)
    storage = CurrentsStorage(str(tmp_path))
    files = storage.files("users.behaviors.Location", None, None)
    old = {"bookmarks": {"users_behaviors_location": {
        "newest_hour": files[0].hour,
        "read": {files[0].hour: [hashlib.blake2b(f"{files[0].path}\n{files[0].version}".encode(),
                                                 digest_size=8).hexdigest()]}}}}
    run = run_tap({"storage_url": str(tmp_path)}, old)
    assert run.returncode == 0, run.stderr
    assert {m["record"]["_sdc_source_file"] for m in run.records} == {
        storage.url_of(f.path) for f in files[1:]}
