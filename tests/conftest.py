"""Shared fixtures: generated Currents exports, storage servers, and running the tap for real."""

from __future__ import annotations

import base64
import functools
import inspect
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import fsspec
import pytest

# gcsfs asks a gRPC control plane for the bucket layout; emulators have none (60 s timeouts).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from tap_braze_currents.event_types import stream_name
from tap_braze_currents.file_ledger import file_digest
from tap_braze_currents.storage import CurrentsStorage
from testkit.services import Service, start_azurite, start_gcs, start_s3

# A small set covering every quirk: JSON properties, float32, arrays, long time, time_ms.
SAMPLE_TYPES = [
    "users.behaviors.CustomEvent",
    "users.behaviors.Purchase",
    "users.behaviors.Location",
    "users.messages.email.Send",
    "users.messages.email.Click",
    "users.messages.whatsapp.Send",
    "users.profile.Update",
    "users.behaviors.pushnotification.TokenStateChange",
]


@dataclass
class TapRun:
    """What one tap process printed."""

    returncode: int
    messages: list[dict[str, Any]]
    stdout: str
    stderr: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.records = [m for m in self.messages if m["type"] == "RECORD"]

    @property
    def ids(self) -> list[str]:
        return [m["record"]["id"] for m in self.records]

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else None

    def schemas(self, stream: str) -> list[dict[str, Any]]:
        return [m["schema"] for m in self.messages
                if m["type"] == "SCHEMA" and m["stream"] == stream]


def tap_command(config_path: Path, state_path: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "tap_braze_currents.tap", "--config", str(config_path)]
    if state_path is not None:
        command += ["--state", str(state_path)]
    return command


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _digests_by_url(export_root: Path) -> dict[tuple[str, str], str]:
    """(stream, packed digest of one file) -> the file's URL, for every file of an export."""
    storage = CurrentsStorage(str(export_root))
    found = {}
    for event_type in storage.event_type_folders:
        for file in storage.files(event_type, None, None):
            packed = base64.urlsafe_b64encode(file_digest(file)).decode()
            found[(stream_name(event_type), packed)] = storage.url_of(file.path)
    return found


def _files_in_state(state: dict, digests: dict[tuple[str, str], str]) -> set[str]:
    urls = set()
    for stream, bookmark in state.get("bookmarks", {}).items():
        for packed in bookmark.get("read", {}).values():
            raw = base64.urlsafe_b64decode(packed)
            for i in range(0, len(raw), 6):
                urls.add(digests[(stream, base64.urlsafe_b64encode(raw[i:i + 6]).decode())])
    return urls


def assert_states_follow_their_records(messages: list[dict], export_root: Path) -> int:
    """Every STATE marks read only files whose records were all printed before it.

    RECORD messages, or BATCH messages (their files' records count where the message is).
    """
    messages = _records_in_place_of_batches(messages)
    digests = _digests_by_url(export_root)
    expected_per_file = {}
    for url in digests.values():
        with fsspec.open(url, "rb") as handle:
            expected_per_file[url] = sum(block.num_records
                                         for block in fastavro.block_reader(handle))
    printed: Counter[str] = Counter()
    states = 0
    for message in messages:
        if message["type"] == "RECORD":
            printed[message["record"]["_sdc_source_file"]] += 1
        elif message["type"] == "STATE":
            states += 1
            for url in _files_in_state(message["value"], digests):
                assert printed[url] == expected_per_file[url], f"STATE before records of {url}"
    return states


def _records_in_place_of_batches(messages: list[dict]) -> list[dict]:
    flat = []
    for message in messages:
        if message["type"] != "BATCH":
            flat.append(message)
            continue
        for url in message["manifest"]:
            with fsspec.open(url, "rt", encoding="utf-8",
                             compression="infer") as handle:
                flat += [{"type": "RECORD", "record": json.loads(line)} for line in handle]
    return flat


# -- running on several workers (pytest-xdist, scripts/run-tests) ---------------------------
# Meltano keeps an extractor's catalog and state.json in the project's .meltano/run/<extractor>/:
# two `meltano run`s of one extractor in the repository at the same time would read each other's
# state. The modules that run a pipeline there (by hand, through meltano_runner.py or the fault
# campaign) therefore run on one worker per extractor (all on one if a module runs two); a module
# with module- or class-scoped fixtures (a PostgreSQL or Airflow cluster, the SDK's standard
# tests) runs on one worker, so that they are set up once.
_MELTANO_RUN_OF = re.compile(r'"run",\s*"(tap-[a-z-]+)"')
_FAULT_CAMPAIGN_EXTRACTOR = "tap-braze-currents"  # testkit/fault_campaign.py's meltano runs


@functools.cache
def _extractors_run_by_meltano(module_file: str) -> frozenset[str]:
    return frozenset(_MELTANO_RUN_OF.findall(Path(module_file).read_text()))


def _extractors_run_by(item: pytest.Item) -> frozenset[str]:
    found = _extractors_run_by_meltano(item.module.__file__)  # type: ignore[attr-defined]
    function = getattr(item, "function", None)
    if function is not None and re.search(r"\brun_campaign\(", inspect.getsource(function)):
        found |= {_FAULT_CAMPAIGN_EXTRACTOR}
    return found


def _has_module_fixtures(item: pytest.Item) -> bool:
    return any(d.scope in ("module", "class") and d.baseid
               for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)


def _name_the_group_in_the_node_id(item: pytest.Item, group: str) -> None:
    """What xdist's --dist loadgroup does itself up to pytest 9.1: "<node id>@<group>" (from 9.2
    the id is `_id`, and xdist 3.8 still sets `_nodeid`, which no longer changes it)."""
    if "@" in item.nodeid or not hasattr(item, "_id"):
        return
    item._id = type(item._id).parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    extractors = {item: _extractors_run_by(item)
                  for item in items if getattr(item, "module", None) is not None}
    one_group = any(len(found) > 1 for found in extractors.values())
    groups: dict[pytest.Item, str] = {}
    for item in items:
        found = extractors.get(item, frozenset())
        if found:
            groups[item] = "meltano-run" if one_group else f"meltano-run-{min(found)}"
        elif _has_module_fixtures(item):
            groups[item] = item.nodeid.split("::")[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(groups[item]))
        _name_the_group_in_the_node_id(item, groups[item])
    if hasattr(config, "workerinput"):
        # scripts/run-tests hands out work in this order (--no-loadscope-reorder): the longest
        # groups first, one to each worker (the Currents one holds the 20-trial fault campaign),
        # then the other groups, then single tests to whichever worker is free
        def rank(item: pytest.Item) -> tuple[int, str]:
            group = groups.get(item)
            if group is None:
                return (2, "")
            return (0 if group.startswith("meltano-run") else 1, group)

        items.sort(key=rank)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """An epoch time near now (seconds or milliseconds) is named by its distance from now in
    minutes, not by its value: every xdist worker must collect the same test ids, a second apart."""
    if not isinstance(val, int) or isinstance(val, bool):
        return None
    for unit, per_second in (("s", 1), ("ms", 1000)):
        minutes = (val / per_second - time.time()) / 60
        if abs(minutes) < 60 * 24 * 800:
            return f"now{round(minutes):+d}min-{unit}"
    return None


@pytest.fixture
def run_tap(tmp_path: Path):
    """Run the tap as its own process with a config (and state); return what it printed."""
    counter = iter(range(1000))

    def run(config: dict[str, Any], state: dict[str, Any] | None = None) -> TapRun:
        n = next(counter)
        config_path = write_json(tmp_path / f"config-{n}.json", config)
        state_path = write_json(tmp_path / f"state-{n}.json", state) if state else None
        done = subprocess.run(tap_command(config_path, state_path), capture_output=True,
                              text=True, timeout=600, check=False)
        messages = parse_messages(done.stdout) if done.returncode == 0 else []
        return TapRun(done.returncode, messages, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Service]:
    service = start_s3()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Service]:
    service = start_gcs()
    yield service
    service.stop()


# -- target side -------------------------------------------------------------------------

from testkit.mixpanel_server import MixpanelServer  # noqa: E402


@dataclass
class TargetRun:
    """What one target process printed and wrote."""

    returncode: int
    stdout: str
    stderr: str
    dead_letters: list[dict[str, Any]]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def summary(self) -> dict[str, Any]:
        line = next(x for x in self.stderr.splitlines() if "| summary: " in x)
        return json.loads(line.split("| summary: ", 1)[1])


@pytest.fixture
def mixpanel() -> Iterator[MixpanelServer]:
    server = MixpanelServer().start()
    yield server
    server.stop()


FAST_RETRIES = {"retry_first_delay_seconds": 0.01, "retry_max_delay_seconds": 0.05,
                "retry_jitter_seconds": [0, 0.01], "max_retry_seconds": 30}


def target_config(server: MixpanelServer, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    creds = server.state.credentials
    config = {"api_url": server.url, "project_id": creds.project_id,
              "service_account_username": creds.service_account[0],
              "service_account_secret": creds.service_account[1],
              "dead_letter_path": str(tmp_path / "dead-letters.jsonl"),
              "progress_interval_seconds": 1, **FAST_RETRIES}
    config.update(overrides)
    return config


@pytest.fixture
def run_target(tmp_path: Path):
    """Run the target as its own process on Singer lines; return what it printed and wrote."""
    counter = iter(range(1000))

    def run(config: dict[str, Any], lines: str, timeout: float = 600) -> TargetRun:
        n = next(counter)
        config_path = write_json(tmp_path / f"target-config-{n}.json", config)
        done = subprocess.run([sys.executable, "-m", "target_mixpanel.target", "--config",
                               str(config_path)], input=lines, capture_output=True, text=True,
                              timeout=timeout, check=False)
        dead_path = Path(config.get("dead_letter_path", "mixpanel-dead-letters.jsonl"))
        dead = [json.loads(x) for x in dead_path.read_text().splitlines()] \
            if dead_path.exists() else []
        return TargetRun(done.returncode, done.stdout, done.stderr, dead)

    return run


def singer_lines(stream: str, records: list[dict[str, Any]], schema: dict | None = None,
                 states: dict[int, dict] | None = None) -> str:
    """A Singer stream: SCHEMA, RECORDs, and STATE messages after the given record counts."""
    schema = schema or {"type": "object", "properties": {}, "additionalProperties": True}
    out = [json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema,
                       "key_properties": []})]
    for i, record in enumerate(records, start=1):
        out.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
        if states and i in states:
            out.append(json.dumps({"type": "STATE", "value": states[i]}))
    return "\n".join(out) + "\n"
