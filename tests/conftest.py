"""Shared fixtures: generated Currents exports, storage servers, and running the tap for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# gcsfs asks a gRPC control plane for the bucket layout; emulators have none (60 s timeouts).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from tests.services import Service, start_azurite, start_gcs, start_s3

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

from tests.mixpanel_server import MixpanelServer  # noqa: E402


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
