"""Hostile input for target-mixpanel (issue 23), one table: config, Singer lines, server faults.

Each case runs the target as its own process against the Mixpanel-compatible server, with
marker secrets, and checks: the exit code; the message names the setting or file; every record
received is imported, skipped or dead-lettered; no STATE covers a record not accounted for;
no marker secret appears in stdout, stderr, the state, the dead letters or any file written.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tap_braze_currents.batch_files import file_name_part
from testkit.mixpanel_server import Credentials, MixpanelServer, MixpanelState

NOW = int(time.time())
STREAM = "users_behaviors_customevent"
SA_USER = "sa.loader"
SA_SECRET = "MRKsasecretQ7zT4w"
TOKEN = "MRKtokenX5w2Lp8r"
API_SECRET = "MRKapisecret3Hv6n"
PII_SALT = "MRKsaltJd1k9Z"
WRONG_SECRET = "MRKwrongsecret4Kd9"
WRONG_TOKEN = "MRKwrongtokenY2b7"
MARKERS = [SA_SECRET, TOKEN, API_SECRET, PII_SALT, WRONG_SECRET, WRONG_TOKEN]
FAST_RETRIES = {"retry_first_delay_seconds": 0.01, "retry_max_delay_seconds": 0.05,
                "retry_jitter_seconds": [0, 0.01], "max_retry_seconds": 5}


def custom_event(i: int) -> dict[str, Any]:
    return {"id": f"evt-{i:05d}", "user_id": f"braze-{i}", "external_user_id": f"user-{i}",
            "time": NOW - 3600, "name": "Added to Cart", "platform": "ios",
            "properties": {"n": i}, "event_type": "users.behaviors.CustomEvent"}


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def schema_line() -> str:
    return message("SCHEMA", stream=STREAM, key_properties=[],
                   schema={"type": "object", "properties": {}, "additionalProperties": True})


def records(first: int, last: int) -> list[str]:
    return [message("RECORD", stream=STREAM, record=custom_event(i))
            for i in range(first, last + 1)]


def state(n: int) -> str:
    return message("STATE", value={"n": n})


def nine_records(_: Path) -> list[str]:
    return [schema_line(), *records(1, 9), state(9)]


def with_state_value(value: Any) -> Callable[[Path], list[str]]:
    return lambda _: [schema_line(), *records(1, 3), state(3),
                      message("STATE", value=value), *records(4, 5), state(5)]


def batch_file_name() -> str:
    """A batch file name as the Singer SDK (and tap-braze-currents) write them."""
    return f"tap-braze-currents--{STREAM}-{uuid.uuid4().hex}-1.jsonl"


def batch_of(relative: str) -> Callable[[Path], list[str]]:
    """A BATCH message naming `relative` (under the run's folder), holding 3 records."""
    def lines(out: Path) -> list[str]:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(custom_event(i)) + "\n" for i in range(1, 4)))
        url = "file://" + str(out) + "/" + relative  # as written: `..` is kept
        return [schema_line(), message("BATCH", stream=STREAM, manifest=[url],
                                       encoding={"format": "jsonl", "compression": "none"}),
                state(3)]
    return lines


@dataclass
class Case:
    """One hostile input and what the target must do with it."""

    name: str
    lines: Callable[[Path], list[str]] = nine_records
    config: dict[str, Any] = field(default_factory=dict)   # over the base config
    server: dict[str, Any] = field(default_factory=dict)   # MixpanelState attributes
    exit_ok: bool = True
    named: tuple[str, ...] = ()          # in stderr (the setting, file or line)
    dead: int | None = None              # records dead-lettered
    dead_message: str | None = None      # in every dead letter's message
    states: list[dict] | None = None     # exactly these states
    requests: int | None = None          # requests the server saw
    check: Callable[[Path], None] | None = None  # a last look at the files


def _exists(relative: str) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        assert (out / relative).exists(), f"{relative} was deleted"
    return check


def _gone(relative_dir: str) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        assert list((out / relative_dir).iterdir()) == [], "batch file left"
    return check


def _range_case(setting: str, value: Any) -> Case:
    return Case(f"{setting}={value!r}", config={setting: value}, exit_ok=False,
                named=(setting,), states=[], requests=0)


CASES = [
    # item 1: a 400 that does not account for every event of its batch
    Case("400 without failed_records", server={"script": ["400_no_failed_records"]},
         dead=9, dead_message="unable to parse", states=[{"n": 9}]),
    Case("400 from a proxy, not JSON", server={"script": ["400_not_json"],
                                               "echo_credentials": True},
         dead=9, dead_message="400 Bad Request", states=[{"n": 9}]),
    Case("400 naming only some failed events",
         server={"script": ["400_some_failed_records"],
                 "refused_distinct_ids": {"user-2", "user-4", "user-6"}},
         dead=9, states=[{"n": 9}]),
    # item 7: Mixpanel's answers quoting the credentials back
    Case("strict 400 echoing the credentials",
         server={"echo_credentials": True, "refused_distinct_ids": {"user-3"}},
         dead=1, states=[{"n": 9}]),
    Case("401 echoing a wrong secret", server={"echo_credentials": True},
         config={"service_account_secret": WRONG_SECRET}, exit_ok=False,
         named=("service_account_secret",), states=[]),
    Case("401 echoing a wrong project token", server={"echo_credentials": True},
         config={"service_account_username": None, "service_account_secret": None,
                 "project_id": None, "project_token": WRONG_TOKEN}, exit_ok=False,
         named=("project_token",), states=[]),
    # item 11: api_url that is not an http(s) URL
    Case("api_url without a scheme", config={"api_url": "127.0.0.1:9"}, exit_ok=False,
         named=("api_url", "127.0.0.1:9"), states=[], requests=0),
    Case("api_url of another scheme", config={"api_url": "ftp://127.0.0.1:9"},
         exit_ok=False, named=("api_url",), states=[], requests=0),
    # item 4: counts and durations out of range
    _range_case("max_concurrency", 0),
    _range_case("worker_processes", 0),
    _range_case("batch_size", 0),
    _range_case("batch_size", 5000),
    _range_case("max_batch_bytes", 10),
    _range_case("retry_first_delay_seconds", -1),
    _range_case("retry_max_delay_seconds", -0.5),
    _range_case("retry_jitter_seconds", [5, -1]),
    _range_case("retry_jitter_seconds", [5, 1]),
    _range_case("retry_jitter_seconds", [1, 2, 3]),
    _range_case("request_timeout_seconds", 0),
    _range_case("request_timeout_seconds", "0"),
    _range_case("max_retry_seconds", -5),
    _range_case("progress_interval_seconds", 0),
    # item 13: an unwritable dead_letter_path fails at start
    Case("dead_letter_path under a file", config={"dead_letter_path": "plain-file/dl.jsonl"},
         exit_ok=False, named=("dead_letter_path", "plain-file"), states=[], requests=0),
    Case("dead_letter_path is a folder", config={"dead_letter_path": "."},
         exit_ok=False, named=("dead_letter_path",), states=[], requests=0),
    # item 6: a STATE value that is not an object
    Case("STATE value a string", lines=with_state_value("x"), exit_ok=False,
         named=("STATE", '"value": "x"'), states=[{"n": 3}]),
    Case("STATE value a list", lines=with_state_value([1]), exit_ok=False,
         named=("STATE", '"value": [1]'), states=[{"n": 3}]),
    # item 5: BATCH manifests naming files that are not this pipeline's batch files
    Case("BATCH file outside the default batch root", lines=batch_of("logs/app-log.jsonl"),
         exit_ok=False, named=("logs/app-log.jsonl", "batch_roots"), states=[], requests=0,
         check=_exists("logs/app-log.jsonl")),
    Case("BATCH file in the root, not a batch file name",
         lines=batch_of("batches/app-log.jsonl"), config={"batch_roots": ["batches"]},
         exit_ok=False, named=("batches/app-log.jsonl", "batch_roots"), states=[],
         requests=0, check=_exists("batches/app-log.jsonl")),
    Case("BATCH file escaping the root with ..",
         lines=batch_of(f"batches/../logs/{batch_file_name()}"),
         config={"batch_roots": ["batches"]}, exit_ok=False, named=("batch_roots",),
         states=[], requests=0),
    Case("BATCH file of another stream's name",
         lines=batch_of(f"batches/{batch_file_name().replace(STREAM, 'other_stream')}"),
         config={"batch_roots": ["batches"]}, exit_ok=False, named=("batch_roots",),
         states=[], requests=0),
    Case("BATCH file in the root (delivered, then deleted)",
         lines=batch_of(f"batches/{batch_file_name()}"), config={"batch_roots": ["batches"]},
         states=[{"n": 3}], check=_gone("batches")),
    # item 13: an unknown setting is named with the closest known one (and the run goes on)
    Case("a typo'd setting", config={"batchsize": 10}, named=("batchsize", "batch_size"),
         states=[{"n": 9}]),
]


@pytest.fixture
def server() -> Iterator[MixpanelServer]:
    creds = Credentials(project_id="4242", service_account=(SA_USER, SA_SECRET),
                        project_token=TOKEN, api_secret=API_SECRET)
    running = MixpanelServer(state=MixpanelState(credentials=creds)).start()
    yield running
    running.stop()


def base_config(server: MixpanelServer) -> dict[str, Any]:
    return {"api_url": server.url, "project_id": "4242", "service_account_username": SA_USER,
            "service_account_secret": SA_SECRET, "pii": "hash", "pii_salt": PII_SALT,
            "dead_letter_path": "dead-letters.jsonl", "progress_interval_seconds": 1,
            "worker_processes": 2, **FAST_RETRIES}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict]:
        return [json.loads(line)["value"] if '"type"' in line else json.loads(line)
                for line in self.stdout.splitlines() if line.strip()]

    @property
    def summary(self) -> dict[str, Any] | None:
        lines = [x for x in self.stderr.splitlines() if "| summary: " in x]
        return json.loads(lines[-1].split("| summary: ", 1)[1]) if lines else None


def run_target(config_text: str, lines: str, home: Path) -> Run:
    """The target in `home`/out (its working folder), its config in `home`/config."""
    (home / "config").mkdir(exist_ok=True)
    config_path = home / "config" / "target.json"
    config_path.write_text(config_text)
    done = subprocess.run([sys.executable, "-m", "target_mixpanel.target", "--config",
                           str(config_path)], input=lines, capture_output=True, text=True,
                          cwd=home / "out", timeout=300, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def assert_no_secret(run: Run, out: Path) -> None:
    """No marker secret (nor the Basic header made of one) in anything the run left."""
    basic = base64.b64encode(f"{SA_USER}:{SA_SECRET}".encode()).decode()
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    texts.update({str(p): p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()})
    for where, text in texts.items():
        for marker in [*MARKERS, basic]:
            assert marker not in text, f"{marker} in {where}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, server: MixpanelServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "plain-file").write_text("not a folder\n")
    for name, value in case.server.items():
        setattr(server.state, name, value)
    config = {k: v for k, v in {**base_config(server), **case.config}.items() if v is not None}
    lines = case.lines(out)
    run = run_target(json.dumps(config), "\n".join(lines) + "\n", tmp_path)

    assert (run.returncode == 0) == case.exit_ok, run.stderr[-3000:]
    for text in case.named:
        assert text in run.stderr, f"{text!r} not named:\n{run.stderr[-3000:]}"
    if case.states is not None:
        assert run.states == case.states
    if case.requests is not None:
        assert len(server.state.requests) == case.requests
    summary = run.summary
    if summary is not None:  # every record received is accounted for
        accounted = (summary["imported"] + sum(summary["skipped"].values())
                     + sum(summary["dead_lettered"].values()))
        if case.exit_ok:
            assert accounted == summary["received"], summary
        assert sum(summary["imported_by_event"].values()) == summary["imported"], summary
        assert all(s["n"] <= accounted for s in run.states), (run.states, summary)
    else:
        assert run.states == []
    dead_path = out / "dead-letters.jsonl"
    dead = [json.loads(x) for x in dead_path.read_text().splitlines()] \
        if dead_path.is_file() else []
    if case.dead is not None:
        assert len(dead) == case.dead, dead
        assert summary is not None
        assert sum(summary["dead_lettered"].values()) == case.dead
        assert all("400" in d["reason"] for d in dead)
    if case.dead_message is not None:
        assert all(case.dead_message in (d["message"] or "") for d in dead), dead
    if case.check is not None:
        case.check(out)
    assert_no_secret(run, out)


def test_a_config_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    run = run_target('{"project_token": "abc", oops}', "", tmp_path)
    assert run.returncode != 0
    assert str(tmp_path / "config" / "target.json") in run.stderr
    assert "JSON" in run.stderr
    assert "JSONDecodeError" not in run.stderr


def test_batch_files_of_a_long_stream_name_are_read(server: MixpanelServer,
                                                    tmp_path: Path) -> None:
    """tap-braze-currents shortens a long stream name in its batch file names: still taken."""
    stream = "users_behaviors_" + "x" * 150
    out = tmp_path / "out"
    (out / "batches").mkdir(parents=True)
    name = f"tap-braze-currents--{file_name_part(stream)}-{uuid.uuid4().hex}-1.jsonl"
    batch = out / "batches" / name
    batch.write_text("".join(json.dumps(custom_event(i)) + "\n" for i in range(1, 4)))
    lines = [message("SCHEMA", stream=stream, key_properties=[],
                     schema={"type": "object", "properties": {}}),
             message("BATCH", stream=stream, manifest=[batch.as_uri()],
                     encoding={"format": "jsonl", "compression": "none"}), state(3)]
    config = {**base_config(server), "mapping": "generic", "insert_id_field": "id",
              "distinct_id_field": "external_user_id", "batch_roots": ["batches"]}
    run = run_target(json.dumps(config), "\n".join(lines) + "\n", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [{"n": 3}]
    assert len(server.state.unique_events) == 3
    assert not batch.exists()
