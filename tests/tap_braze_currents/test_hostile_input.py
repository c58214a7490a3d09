"""Hostile input for tap-braze-currents (issue 23): odd export folders, settings, state, secrets.

Each case runs the tap as its own process and checks what a user gets: the exit code, a message
naming the setting, folder or file, every record accounted for, no STATE past a record it did
not print, and no marker secret in stdout, stderr or any file the run wrote. "No network" is
an unreachable loopback port (and a loopback proxy that refuses, for the libraries that go to
Google's token endpoint): nothing leaves the machine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pytest

from tap_braze_currents.demo_export import currents_key, make_event, write_avro_file
from tap_braze_currents.event_types import catalog_avro_schema
from testkit.services import Service
from tests.conftest import assert_states_follow_their_records, parse_messages

SEND = "users.messages.email.Send"
# Marker secrets: distinctive values searched for in everything a run prints or writes.
GCS_TOKEN = "ya29.MARKERgcsToken5150"
S3_KEY = "AKIAMARKERKEY5150"
S3_SECRET = "MARKERs3Secret5150xyz"
OPTION_SECRET = "MARKERoptionSecret5150"
MARKERS = (GCS_TOKEN, S3_KEY, S3_SECRET, OPTION_SECRET)
UNREACHABLE = "http://127.0.0.1:9"
# requests (gcsfs's token check) honours these; the loopback port refuses at once
NO_NETWORK_ENV = {"HTTPS_PROXY": UNREACHABLE, "HTTP_PROXY": UNREACHABLE, "NO_PROXY": ""}


def write_files(root: Path | str, folder_type: str, hour: str, records: int, *, files: int = 1,
                schema_type: str = SEND, integration: str = "int1",
                storage_options: dict[str, Any] | None = None) -> int:
    """Avro files of `records` events each under `event_type=<folder_type>/date=<hour>`."""
    fs, base = fsspec.core.url_to_fs(str(root), **(storage_options or {}))
    schema = catalog_avro_schema(schema_type)
    assert schema is not None
    rng = random.Random(f"{folder_type}{hour}{integration}")
    epoch = int(dt.datetime.strptime(hour, "%Y-%m-%d-%H").replace(
        tzinfo=dt.timezone.utc).timestamp())
    for part in range(files):
        events = [make_event(schema_type, schema["fields"], rng, i, epoch) for i in range(records)]
        key = currents_key(integration, folder_type, hour, old_layout=False, partition=part,
                           offset=part)
        write_avro_file(fs, f"{base.rstrip('/')}/{key}", schema, events)
    return records * files


@dataclass
class Case:
    """One hostile input and what the user must get."""

    name: str
    export: Callable[[Path], int] = lambda root: 0  # writes the export, returns its records
    config: dict[str, Any] = field(default_factory=dict)
    state: Any = None  # a dict, or raw text written as the state file
    returncode: int = 0
    messages: tuple[str, ...] = ()  # each must appear in stderr
    records: int | None = None  # None: every record of the export
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any] | None], None] | None = None  # on the last STATE
    traceback: bool = False  # whether a traceback may be shown


def _no_future_bookmark(state: dict[str, Any] | None) -> None:
    assert state is not None
    for bookmark in state["bookmarks"].values():
        assert bookmark.get("newest_hour", "") < "2090", bookmark
        assert all(hour < "2090" for hour in bookmark.get("read", {})), bookmark


def _future_folder(root: Path) -> int:
    real = write_files(root, SEND, "2025-04-01-00", 5) + write_files(root, SEND, "2025-04-01-02", 5)
    write_files(root, SEND, "2099-01-01-00", 7)
    return real


def _case_folders(root: Path) -> int:
    return (write_files(root, SEND, "2025-04-01-00", 30)
            + write_files(root, SEND.upper(), "2025-04-01-00", 30, integration="int2"))


def _empty_type_folder(root: Path) -> int:
    write_files(root, "", "2025-04-01-00", 4)
    return write_files(root, SEND, "2025-04-01-00", 6)


LONG_TYPE = "users.custom." + "x" * 187  # 200 characters


def _long_type_folder(root: Path) -> int:
    return write_files(root, LONG_TYPE, "2025-04-01-00", 3) + write_files(root, SEND,
                                                                          "2025-04-01-00", 2)


def _small(root: Path) -> int:
    return write_files(root, SEND, "2025-04-01-00", 3)


FUTURE_STATE = {"bookmarks": {"users_messages_email_send": {
    "newest_hour": "2099-01-01-00", "read": {"2099-01-01-00": "AAAAAAAA"}}}}

CASES = [
    Case("future hour folder", _future_folder, messages=("date=2099-01-01-00",
                                                         "future_hours_tolerance"),
         check=_no_future_bookmark),
    Case("state whose newest hour is in the future", _future_folder, state=FUTURE_STATE,
         messages=("users_messages_email_send", "2099-01-01-00", "future_hours_tolerance"),
         check=_no_future_bookmark),
    Case("event_type folders differing only in case", _case_folders, records=60,
         messages=(f"event_type={SEND}", f"event_type={SEND.upper()}")),
    Case("empty event_type folder", _empty_type_folder, records=6,
         messages=("event_type=/",)),
    Case("200-character event type in BATCH mode", _long_type_folder,
         config={"batch_config": "BATCH"}),
    Case("negative lookback_hours", _small, {"lookback_hours": -5}, returncode=1,
         messages=("lookback_hours",), records=0),
    Case("prefetch_files 0", _small, {"prefetch_files": 0}, returncode=1,
         messages=("prefetch_files",), records=0),
    Case("prefetch_megabytes 0", _small, {"prefetch_megabytes": 0}, returncode=1,
         messages=("prefetch_megabytes",), records=0),
    Case("negative state_interval_seconds", _small, {"state_interval_seconds": -1},
         returncode=1, messages=("state_interval_seconds",), records=0),
    Case("negative future_hours_tolerance", _small, {"future_hours_tolerance": -1},
         returncode=1, messages=("future_hours_tolerance",), records=0),
    Case("end_date before start_date", _small,
         {"start_date": "2025-04-02T00:00:00Z", "end_date": "2025-04-01T00:00:00Z"},
         returncode=1, messages=("end_date", "start_date"), records=0),
    Case("end_date in start_date's hour", _small,
         {"start_date": "2025-04-01T00:10:00Z", "end_date": "2025-04-01T00:50:00Z"},
         returncode=1, messages=("end_date", "start_date"), records=0),
    Case("start_date not a date", _small, {"start_date": "yesterday"}, returncode=1,
         messages=("start_date", "'yesterday'", "2025-04-01T00:00:00Z"), records=0),
    Case("state file not JSON", _small, state="{not json", returncode=1,
         messages=("state-input.json", "is not JSON"), records=0),
    Case("state digests not base64", _small,
         state={"bookmarks": {"users_messages_email_send": {
             "newest_hour": "2025-04-01-00", "read": {"2025-04-01-00": "abc"}}}},
         returncode=1, messages=("users_messages_email_send", "not a state this tap wrote"),
         records=0),
    Case("state newest_hour not an hour", _small,
         state={"bookmarks": {"users_messages_email_send": {"newest_hour": "soon"}}},
         returncode=1, messages=("users_messages_email_send", "newest_hour"), records=0),
    Case("state bookmark not an object", _small,
         state={"bookmarks": {"users_messages_email_send": ["x"]}},
         returncode=1, messages=("users_messages_email_send", "not a state this tap wrote"),
         records=0),
    Case("state bookmarks not an object", _small, state={"bookmarks": "x"},
         returncode=1, messages=("bookmarks", "not a state this tap wrote"), records=0),
    Case("state not an object", _small, state="[1]", returncode=1,
         messages=("state-input.json", "JSON array"), records=0),
    Case("a whole STATE message as the state", _small,
         state={"type": "STATE", "value": {"bookmarks": {}}}, returncode=1,
         messages=("state-input.json", "pass its value"), records=0),
    Case("event_types spelled in another case", _case_folders, {"event_types": [SEND.upper()]},
         records=60, messages=(f"event_type={SEND.upper()}",)),
    Case("gs:// token, no network",
         config={"storage_url": "gs://currents-bucket/export",
                 "storage_options": {"token": GCS_TOKEN, "endpoint_url": UNREACHABLE}},
         returncode=1, messages=("storage_url",), records=0, env=NO_NETWORK_ENV),
    Case("s3:// credentials in the URL, no network",
         config={"storage_url": f"s3://{S3_KEY}:{S3_SECRET}@currents-bucket/export",
                 "storage_options": {"endpoint_url": UNREACHABLE, "client_kwargs": {
                     "aws_session_token": OPTION_SECRET},
                     "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}},
         returncode=1, messages=("storage_url", "currents-bucket", "put them in storage_options"),
         records=0, env=NO_NETWORK_ENV),
]


def run_case(case: Case, tmp_path: Path, extra_args: tuple[str, ...] = ()
             ) -> tuple[subprocess.CompletedProcess[str], int, Path]:
    root = tmp_path / "export"
    root.mkdir()
    expected = case.export(root)
    config = {"storage_url": str(root), **case.config}
    if config.get("batch_config") == "BATCH":
        config["batch_config"] = {"encoding": {"format": "jsonl", "compression": "none"},
                                  "storage": {"root": (tmp_path / "batches").as_uri()}}
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_braze_currents.tap", "--config", str(config_path),
               *extra_args]
    if case.state is not None:
        state_path = tmp_path / "state-input.json"
        state_path.write_text(case.state if isinstance(case.state, str)
                              else json.dumps(case.state))
        command += ["--state", str(state_path)]
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env={**env, **case.env})
    return done, expected, root


def assert_no_marker_anywhere(done: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    for marker in MARKERS:
        assert marker not in done.stdout
        assert marker not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("config.json",):
            data = path.read_bytes()
            assert not any(marker.encode() in data for marker in MARKERS), path


def _records(messages: list[dict[str, Any]]) -> int:
    count = 0
    for message in messages:
        if message["type"] == "RECORD":
            count += 1
        elif message["type"] == "BATCH":
            for url in message["manifest"]:
                with fsspec.open(url, "rt") as handle:
                    count += sum(1 for _ in handle)
    return count


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    done, expected, root = run_case(case, tmp_path)
    assert_no_marker_anywhere(done, tmp_path)
    assert done.returncode == case.returncode, done.stderr[-3000:]
    for message in case.messages:
        assert message in done.stderr, (message, done.stderr[-3000:])
    if not case.traceback:
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
    messages = parse_messages(done.stdout)
    assert _records(messages) == (expected if case.records is None else case.records)
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    if done.returncode == 0:
        assert states, "a run that ends well ends with a STATE"
        assert_states_follow_their_records(messages, root)
    if case.check is not None:
        case.check(states[-1] if states else None)


def test_discovery_with_storage_secrets_and_no_network_shows_none(tmp_path: Path) -> None:
    for n, config in enumerate(c.config for c in CASES if c.env):
        case = Case("discovery", config=config, env=NO_NETWORK_ENV)
        where = tmp_path / str(n)
        where.mkdir()
        done, _, _ = run_case(case, where, ("--discover",))
        assert_no_marker_anywhere(done, where)
        assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_a_future_folder_never_holds_back_the_hours_after_it(tmp_path: Path, run_tap) -> None:
    """Run after run, every real hour is read; the future folder waits for its hour."""
    root = tmp_path / "export"
    expected = _future_folder(root)
    config = {"storage_url": str(root), "lookback_hours": 2}
    first = run_tap(config)
    assert first.returncode == 0, first.stderr
    assert len(first.records) == expected
    # a real hour lands later, past the lookback window of the future folder's hour
    write_files(root, SEND, "2025-04-01-07", 4)
    second = run_tap(config, first.last_state)
    assert second.returncode == 0, second.stderr
    assert len(second.records) == 4
    assert "date=2099-01-01-00" in second.stderr
    _no_future_bookmark(second.last_state)


def test_a_remote_export_with_odd_folders_shows_no_secret(s3_server: Service,
                                                          tmp_path: Path) -> None:
    """moto S3 with marker credentials in storage_options: a whole run over odd folders (case
    variants, an empty type, a future hour); every record read, no secret printed."""
    options = {"endpoint_url": s3_server.storage_options["endpoint_url"],
               "client_kwargs": {"region_name": "eu-west-1"}}
    writer = {**options, "key": S3_KEY, "secret": S3_SECRET}
    fs = fsspec.filesystem("s3", **writer)
    if not fs.exists("hostile-bucket"):
        fs.mkdir("hostile-bucket")
    url = "s3://hostile-bucket/export"
    expected = (write_files(url, SEND, "2025-04-01-00", 30, storage_options=writer)
                + write_files(url, SEND.upper(), "2025-04-01-00", 30, integration="int2",
                              storage_options=writer))
    write_files(url, "", "2025-04-01-00", 3, storage_options=writer)
    write_files(url, SEND, "2099-01-01-00", 3, storage_options=writer)
    case = Case("remote", config={
        "storage_url": url,
        "storage_options": {**writer, "config_kwargs": {"user_agent_extra": OPTION_SECRET}}})
    done, _, _ = run_case(case, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_no_marker_anywhere(done, tmp_path)
    messages = parse_messages(done.stdout)
    assert _records(messages) == expected
    assert "event_type=USERS.MESSAGES.EMAIL.SEND" in done.stderr
    assert "event_type=/" in done.stderr
    assert "date=2099-01-01-00" in done.stderr
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    _no_future_bookmark(states[-1])
