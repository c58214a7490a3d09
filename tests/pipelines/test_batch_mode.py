"""BATCH mode: the tap writes JSON Lines batch files, the target's workers read them."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from tap_braze_currents.demo_export import write_demo_export
from tap_braze_currents.event_types import stream_name
from testkit.mixpanel_server import MixpanelServer
from tests.conftest import SAMPLE_TYPES, assert_states_follow_their_records, target_config


def batch_config(root: Path, compression: str, batch_size: int = 10_000) -> dict:
    return {"encoding": {"format": "jsonl", "compression": compression},
            "storage": {"root": root.as_uri(), "prefix": "run-"}, "batch_size": batch_size}


def _batch_records(messages: list[dict]) -> list[dict]:
    records = []
    for message in messages:
        if message["type"] != "BATCH":
            continue
        for url in message["manifest"]:
            path = Path(url.removeprefix("file://"))
            opener = gzip.open if message["encoding"]["compression"] == "gzip" else open
            with opener(path, "rt", encoding="utf-8") as handle:
                records += [json.loads(line) for line in handle]
    return records


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_tap_batch_files_hold_the_records_record_mode_emits(tmp_path: Path, run_tap,
                                                            compression: str) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES, hours=2,
                      events_per_file=300)
    plain = run_tap({"storage_url": str(tmp_path / "export")})
    batched = run_tap({"storage_url": str(tmp_path / "export"),
                       "batch_config": batch_config(tmp_path / "batches", compression, 250)})
    assert plain.returncode == batched.returncode == 0, batched.stderr
    assert not [m for m in batched.messages if m["type"] == "RECORD"]
    in_files = _batch_records(batched.messages)
    by_id = {m["record"]["id"]: m["record"] for m in plain.records}
    assert Counter(r["id"] for r in in_files) == Counter(plain.ids)
    assert all(r == by_id[r["id"]] for r in in_files)
    # a STATE marks a file read only after the BATCH messages of its records; the last
    # message is the run's STATE
    assert assert_states_follow_their_records(batched.messages, tmp_path / "export") >= 1
    assert batched.messages[-1]["type"] == "STATE"
    assert batched.last_state == plain.last_state


def test_a_big_file_is_split_into_batch_files_of_about_batch_size(tmp_path: Path,
                                                                   run_tap) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=["users.messages.email.Send"],
                      hours=1, integrations=1, events_per_file=6000)
    assert len(list((tmp_path / "export").rglob("*.avro"))) == 1
    batched = run_tap({"storage_url": str(tmp_path / "export"),
                       "batch_config": batch_config(tmp_path / "batches", "none", 1000)})
    assert batched.returncode == 0, batched.stderr
    urls = [url for m in batched.messages if m["type"] == "BATCH" for url in m["manifest"]]
    sizes = [len(Path(url.removeprefix("file://")).read_text().splitlines()) for url in urls]
    assert sum(sizes) == 6000
    assert len(sizes) >= 2
    assert all(size >= 1000 for size in sizes[:-1])


def test_batch_files_span_small_currents_files(tmp_path: Path, run_tap) -> None:
    """Many small Currents files (the production shape) make few batch files: one per stream
    with a large batch_size, files of about batch_size spanning several Currents files with a
    small one; each STATE comes after the BATCH messages of the records it covers."""
    export = write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES[:3], hours=4,
                               files_per_hour=3, events_per_file=5, integrations=1)
    avro_files = len(list((tmp_path / "export").rglob("*.avro")))
    assert avro_files == 3 * 4 * 3
    big = run_tap({"storage_url": str(tmp_path / "export"),
                   "batch_config": batch_config(tmp_path / "big", "none", 10_000)})
    assert big.returncode == 0, big.stderr
    assert [m["stream"] for m in big.messages if m["type"] == "BATCH"] == [
        stream_name(t) for t in sorted(SAMPLE_TYPES[:3])]  # one file a stream, not 12
    small = run_tap({"storage_url": str(tmp_path / "export"),
                     "batch_config": batch_config(tmp_path / "small", "none", 12)})
    assert small.returncode == 0, small.stderr
    urls = [url for m in small.messages if m["type"] == "BATCH" for url in m["manifest"]]
    lines = [Path(url.removeprefix("file://")).read_text().splitlines() for url in urls]
    assert sum(len(batch) >= 12 for batch in lines) >= len(lines) - 3  # but a stream's last
    spanning = [batch for batch in lines
                if len({json.loads(line)["_sdc_source_file"] for line in batch}) > 1]
    assert spanning  # batch files hold records of several Currents files
    expected = Counter(i for ids in export.ids.values() for i in ids)
    for run in (big, small):
        assert Counter(r["id"] for r in _batch_records(run.messages)) == expected
        # the run is quicker than state_interval_seconds: one STATE, at the end of the run
        assert assert_states_follow_their_records(run.messages, tmp_path / "export") == 1


def test_pipeline_in_batch_mode_delivers_every_identified_event_once(
        tmp_path: Path, run_tap, run_target, mixpanel: MixpanelServer) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES, hours=2,
                      events_per_file=120)
    tap = run_tap({"storage_url": str(tmp_path / "export"),
                   "batch_config": batch_config(tmp_path / "batches", "gzip", 100)})
    assert tap.returncode == 0, tap.stderr
    records = _batch_records(tap.messages)
    mixpanel.state.fault_rates = {"429": 0.1, "503": 0.05, "drop_after": 0.05}
    run = run_target(target_config(mixpanel, tmp_path, batch_size=50,
                                   batch_roots=[str(tmp_path / "batches")]), tap.stdout)
    assert run.returncode == 0, run.stderr
    identified = {r["id"] for r in records if r.get("external_user_id")}
    got = Counter(e["properties"]["$insert_id"] for e in mixpanel.state.unique_events)
    assert set(got) == identified
    assert set(got.values()) == {1}
    assert run.summary["received"] == len(records)
    assert run.summary["imported"] == len(identified)
    assert sum(run.summary["skipped"].values()) == len(records) - len(identified)
    assert run.states[-1] == tap.last_state
    # each file is deleted once its records are accounted for
    assert list((tmp_path / "batches").iterdir()) == []


def test_batch_files_are_kept_when_asked(tmp_path: Path, run_tap, run_target,
                                         mixpanel: MixpanelServer) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES[:2], hours=1,
                      integrations=1, events_per_file=50)
    tap = run_tap({"storage_url": str(tmp_path / "export"),
                   "batch_config": batch_config(tmp_path / "batches", "gzip")})
    kept = sorted((tmp_path / "batches").iterdir())
    run = run_target(target_config(mixpanel, tmp_path, delete_batch_files=False,
                                   batch_roots=[str(tmp_path / "batches")]), tap.stdout)
    assert run.returncode == 0, run.stderr
    assert kept
    assert sorted((tmp_path / "batches").iterdir()) == kept
    assert run.summary["received"] == 100


def test_a_missing_batch_file_is_named_and_no_state_passes_it(
        tmp_path: Path, run_tap, run_target, mixpanel: MixpanelServer) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES[:2], hours=1,
                      integrations=1, events_per_file=50)
    tap = run_tap({"storage_url": str(tmp_path / "export"),
                   "batch_config": batch_config(tmp_path / "batches", "none")})
    assert tap.returncode == 0, tap.stderr
    batches = [m for m in tap.messages if m["type"] == "BATCH"]
    gone = Path(batches[-1]["manifest"][0].removeprefix("file://"))
    gone.unlink()
    run = run_target(target_config(mixpanel, tmp_path, batch_roots=[str(tmp_path / "batches")]),
                     tap.stdout)
    assert run.returncode != 0
    assert gone.name in run.stderr
    assert batches[-1]["stream"] in run.stderr
    assert tap.last_state not in run.states


def test_a_batch_message_in_another_format_is_refused_by_name(
        tmp_path: Path, run_target, mixpanel: MixpanelServer) -> None:
    lines = "\n".join(json.dumps(m) for m in [
        {"type": "SCHEMA", "stream": "s", "schema": {"type": "object", "properties": {}},
         "key_properties": []},
        {"type": "BATCH", "stream": "s", "encoding": {"format": "parquet"},
         "manifest": ["file:///nowhere.parquet"]}]) + "\n"
    run = run_target(target_config(mixpanel, tmp_path), lines)
    assert run.returncode != 0
    assert "parquet" in run.stderr
    assert "jsonl" in run.stderr
