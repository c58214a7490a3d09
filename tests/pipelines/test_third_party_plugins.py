"""Composition with real third-party plugins from PyPI (pinned in scripts/third-party-plugins.txt).

- tap-braze-currents | target-jsonl: every record arrives, field by field;
- tap-braze-currents | MeltanoLabs target-postgres on a real PostgreSQL, RECORD and BATCH mode:
  rows per table, `properties` as jsonb, a rerun with the state adds nothing;
- tap-spreadsheets (CSV) | target-mixpanel with the generic mapping: every row once at the
  Mixpanel-compatible server, with its event name, distinct_id, time and $insert_id;
- `meltano run tap-braze-currents target-jsonl`: every selected record once, a rerun reads
  nothing.

scripts/setup-tests installs each plugin into .plugins/<executable>/. Run locally without them,
these tests skip saying so; under .ci/run (THIRD_PARTY_PLUGINS_REQUIRED=1) they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tap_braze_currents.demo_export import write_demo_export
from target_mixpanel.event_mapping import insert_id_for
from testkit.mixpanel_server import MixpanelServer
from testkit.postgres_server import PostgresServer, missing
from tests.conftest import parse_messages, target_config, write_json
from tests.pipelines.test_meltano_pipeline import _meltano as meltano
from tests.pipelines.test_meltano_pipeline import meltano_env

ROOT = Path(__file__).resolve().parents[2]
TYPES = ["users.behaviors.CustomEvent", "users.behaviors.Purchase", "users.messages.email.Send"]
STREAMS = {t: t.lower().replace(".", "_") for t in TYPES}


def _unavailable(reason: str) -> None:
    if os.environ.get("THIRD_PARTY_PLUGINS_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


def plugin(executable: str) -> Path:
    """The installed third-party plugin's executable (skips, or fails in CI, when missing)."""
    path = ROOT / ".plugins" / executable / "bin" / executable
    if not path.exists():
        _unavailable(f"{executable} is not installed in .plugins/{executable}: run "
                     "bash scripts/setup-tests")
    return path


@pytest.fixture
def target_postgres() -> Path:
    return plugin("target-postgres")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = missing()
    if reason:
        _unavailable(reason)
    server = PostgresServer.start()
    yield server
    server.stop()


def run(command: list[str | Path], stdin: bytes = b"", timeout: float = 300
        ) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([str(c) for c in command], input=stdin, capture_output=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


def tap(tmp_path: Path, config: dict[str, Any], state: dict | None = None) -> bytes:
    """tap-braze-currents' output for a config (and state)."""
    command: list[str | Path] = [sys.executable, "-m", "tap_braze_currents.tap", "--config",
                                 write_json(tmp_path / "tap-config.json", config)]
    if state is not None:
        command += ["--state", write_json(tmp_path / "tap-state.json", state)]
    return run(command).stdout


def last_state(output: bytes) -> dict:
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()][-1]


def records_by_stream(output: bytes) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for message in parse_messages(output.decode()):
        if message["type"] == "RECORD":
            found.setdefault(message["stream"], []).append(message["record"])
    return found


@pytest.fixture
def export(tmp_path: Path) -> dict[str, Any]:
    """A small Currents export and the tap config that reads it."""
    write_demo_export(str(tmp_path / "export"), event_types=TYPES, hours=2, events_per_file=15)
    return {"storage_url": str(tmp_path / "export"), "event_types": TYPES}


# -- target-jsonl ------------------------------------------------------------------------

def test_target_jsonl_gets_every_record_field_by_field(export: dict, tmp_path: Path) -> None:
    target = plugin("target-jsonl")
    output = tap(tmp_path, export)
    expected = records_by_stream(output)
    assert set(expected) == set(STREAMS.values())
    folder = tmp_path / "jsonl"
    config = write_json(tmp_path / "jsonl.json", {"destination_path": str(folder),
                                                  "do_timestamp_file": False})
    run([target, "--config", config], stdin=output)
    for stream, records in expected.items():
        written = [json.loads(line)
                   for line in (folder / f"{stream}.jsonl").read_text().splitlines()]
        assert written == records, stream


# -- target-postgres -----------------------------------------------------------------------

BATCH = {"encoding": {"format": "jsonl", "compression": "gzip"}, "batch_size": 10}


@pytest.mark.parametrize("mode", ["record", "batch"])
def test_target_postgres_gets_every_row_once_and_a_rerun_adds_nothing(
        mode: str, export: dict, target_postgres: Path, postgres: PostgresServer,
        tmp_path: Path) -> None:
    target = target_postgres
    schema = f"braze_{mode}"
    config = write_json(tmp_path / "postgres.json", {
        **postgres.config(), "default_target_schema": schema})
    if mode == "batch":
        export = {**export, "batch_config": {**BATCH, "storage": {
            "root": f"file://{tmp_path / 'batches'}"}}}
    first = tap(tmp_path, export)
    assert (b'"type":"BATCH"' in first) == (mode == "batch")
    loaded = run([target, "--config", config], stdin=first)
    expected = {stream: 2 * 2 * 15 for stream in STREAMS.values()}  # hours x files x events
    counts = {stream: [int(n) for n in postgres.psql(
        f"select count(*), count(distinct id) from {schema}.{stream}")[0]] for stream in expected}
    assert counts == {stream: [n, n] for stream, n in expected.items()}  # each row once
    # `properties` (a JSON object in Currents) is jsonb, queryable as such
    column = postgres.psql("select data_type from information_schema.columns where "
                           f"table_schema = '{schema}' and table_name = "
                           "'users_behaviors_customevent' and column_name = 'properties'")
    assert column == [["jsonb"]]
    objects = postgres.psql(f"select count(*) from {schema}.users_behaviors_customevent "
                            "where jsonb_typeof(properties) = 'object'")
    assert int(objects[0][0]) > 0
    # the rerun with the target's state reads nothing, so no row is added or rewritten (the
    # target upserts by `id`: a replayed row would get a new _sdc_batched_at)
    def loads() -> dict[str, list[list[str]]]:
        return {stream: postgres.psql(f"select count(*), max(_sdc_batched_at) from "
                                      f"{schema}.{stream}") for stream in expected}

    before = loads()
    second = tap(tmp_path, export, state=last_state(loaded.stdout))
    assert b'"type":"RECORD"' not in second
    assert b'"type":"BATCH"' not in second
    run([target, "--config", config], stdin=second)
    assert loads() == before


# -- tap-spreadsheets -> target-mixpanel -----------------------------------------------------

NOW = int(time.time())
CSV = "\n".join([
    "event_id,user,when,plan,note",
    f"e-1,u-1,{NOW - 3600},pro,first",          # epoch seconds as a string
    f",u-1,{NOW - 1800},pro,",                   # no id, empty cells
    f",u-1,{NOW - 1800},free,",                  # same user and time, no id: a different event
    f"e-4,u-2,{(NOW - 600) * 1000},,x",          # epoch milliseconds as a string
    "e-5,u-3,2026-01-01T10:00:00Z,team,iso",    # ISO 8601
]) + "\n"


def test_a_csv_tap_feeds_the_generic_mapping(mixpanel: MixpanelServer, tmp_path: Path) -> None:
    csv_tap = plugin("tap-spreadsheets")
    (tmp_path / "signups.csv").write_text(CSV)
    tap_config = write_json(tmp_path / "csv.json", {"files": [{
        "path": str(tmp_path / "*.csv"), "format": "csv", "table_name": "signups"}]})
    output = run([csv_tap, "--config", tap_config]).stdout
    rows = records_by_stream(output)["signups"]
    assert len(rows) == 5
    config = target_config(mixpanel, tmp_path, mapping="generic", event_name="{stream} {plan}",
                           distinct_id_field="user", time_field="when",
                           insert_id_field="event_id")
    target = [sys.executable, "-m", "target_mixpanel.target", "--config",
              write_json(tmp_path / "target.json", config)]
    run(target, stdin=output)
    events = {e["properties"]["$insert_id"]: e for e in mixpanel.state.unique_events}
    assert mixpanel.state.raw_events == len(events) == 5
    def digest(row: dict) -> str:  # of the row without the tap's _sdc_ columns
        return insert_id_for({"stream": "signups",
                              "record": {k: v for k, v in row.items() if k[:5] != "_sdc_"}})

    expected_ids = ["e-1", digest(rows[1]), digest(rows[2]), "e-4", "e-5"]
    assert sorted(events) == sorted(expected_ids)
    got = [events[i] for i in expected_ids]
    assert [e["event"] for e in got] == ["signups pro", "signups pro", "signups free",
                                         "signups ", "signups team"]
    assert [e["properties"]["distinct_id"] for e in got] == ["u-1", "u-1", "u-1", "u-2", "u-3"]
    assert [e["properties"]["time"] for e in got] == [
        NOW - 3600, NOW - 1800, NOW - 1800, (NOW - 600) * 1000, 1767261600000]
    assert got[1]["properties"]["note"] == ""                # empty cells are sent as such
    assert not any(k.startswith("_sdc_") for e in got for k in e["properties"])
    # the file is rewritten (a new mtime: tap-spreadsheets reads it all again): every row is
    # sent again with the same $insert_id, so Mixpanel keeps one of each
    (tmp_path / "signups.csv").write_text(CSV)
    os.utime(tmp_path / "signups.csv", (NOW + 5, NOW + 5))
    again = run([csv_tap, "--config", tap_config]).stdout
    assert len(records_by_stream(again)["signups"]) == 5
    run(target, stdin=again)
    assert mixpanel.state.raw_events == 10
    assert sorted(e["properties"]["$insert_id"] for e in mixpanel.state.unique_events) == sorted(
        expected_ids)


# -- through Meltano -------------------------------------------------------------------------

def test_meltano_run_into_target_jsonl_delivers_each_record_once_and_resumes(
        mixpanel: MixpanelServer, tmp_path: Path) -> None:
    if not (ROOT / ".meltano" / "loaders" / "target-jsonl" / "venv").exists():
        _unavailable("target-jsonl is not installed for Meltano: run bash scripts/setup-tests")
    exported = write_demo_export(str(tmp_path / "export"), event_types=TYPES, hours=2,
                                 events_per_file=10)
    folder = tmp_path / "jsonl"
    env = {**meltano_env(tmp_path, mixpanel), "TARGET_JSONL_DESTINATION_PATH": str(folder)}

    def written() -> dict[str, list[str]]:
        return {path.stem: sorted(json.loads(line)["id"]
                                  for line in path.read_text().splitlines())
                for path in sorted(folder.glob("*.jsonl"))}

    first = meltano("run", "tap-braze-currents", "target-jsonl", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "in incremental mode" in first.stderr
    expected = {STREAMS[t]: sorted(exported.ids[t]) for t in TYPES}
    assert written() == expected  # the default selection, each record once
    second = meltano("run", "tap-braze-currents", "target-jsonl", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert written() == expected  # nothing read again
    assert "tap-braze-currents-to-target-jsonl" in meltano("state", "list", env=env).stdout
