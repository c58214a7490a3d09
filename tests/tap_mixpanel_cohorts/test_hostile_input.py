"""tap-mixpanel-cohorts fed what a careless or hostile user gives it (issue 23), table-driven.

Each case: the settings, the saved state and the server's faults; the exit code and a message
naming the setting or state key; no record emitted before a refused state; and the marker
secrets (the service account's secret, its Basic header, snapshot credentials) nowhere: not
in stdout, stderr, the state, or any file the tap wrote.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.mixpanel_query_server import MixpanelQueryServer
from tests.conftest import TapRun, write_json
from tests.tap_mixpanel_cohorts.test_query_api_runs import Runner, tap_command, tap_config

SNAPSHOT = "cohort-7/20261201T000000Z-0123456789ab"
TOKEN = "hostile-gcs-token-4f3e2d1c0b9a"
S3_SECRET = "hostile-s3-secret-8a7b6c5d4e"
SPOOL_SECRET = "hostile-spool-secret-1b2c3d4e5f"


def entry(snapshot: Any = SNAPSHOT, **extra: Any) -> dict[str, Any]:
    return {"name": "Power users", "snapshot": snapshot, "synced_at": "2026-12-01T00:00:00Z",
            **extra}


def saved(stream: str, cohorts: Any, **extra: Any) -> dict[str, Any]:
    return {"bookmarks": {stream: {"cohorts": cohorts, **extra}}}


@dataclass
class Case:
    """One hostile input and what the user must see."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    script: list[str] = field(default_factory=list)
    exit_code: int = 1
    message: str = ""
    state_text: str | None = None          # a state file that is not what json.dumps gives


CASES = [
    Case("no queries an hour (hung for ever)", {"max_queries_per_hour": 0},
         message="max_queries_per_hour"),
    Case("no concurrent queries (hung for ever)", {"max_concurrent_queries": 0},
         message="max_concurrent_queries"),
    Case("a negative grace deletes newer snapshots", {"snapshot_grace_hours": -100},
         message="snapshot_grace_hours"),
    Case("a negative resync period", {"full_resync_hours": -1}, message="full_resync_hours"),
    Case("a negative retry delay", {"retry_first_delay_seconds": -1},
         message="retry_first_delay_seconds"),
    Case("a state entry without its snapshot",
         state=saved("user_cohorts", {"7": {"name": "Power users"}}),
         message="state bookmarks.user_cohorts.cohorts.7.snapshot"),
    Case("a state cohort key that is not an id, after good ones",
         state=saved("cohort_membership_changes", {"7": entry(), "x": entry()}),
         message="state bookmarks.cohort_membership_changes.cohorts: 'x' is not a cohort id"),
    Case("a state naming a snapshot outside snapshot_url",
         state=saved("user_cohorts", {"7": entry("../../x")}),
         message="state bookmarks.user_cohorts.cohorts.7.snapshot: '../../x'"),
    Case("a state naming another cohort's snapshot",
         state=saved("user_cohorts", {"9": entry()}),
         message="another cohort's snapshot"),
    Case("a state whose full resync time is not a time",
         state=saved("user_cohorts", {}, full_resync_at="yesterday"),
         message="state bookmarks.user_cohorts.full_resync_at"),
    Case("a state file that is not JSON", state_text="not json",
         message="The state file state.json is not JSON"),
    Case("a state file holding a string", state_text='"x"',
         message="The state file state.json holds a JSON string, not an object"),
    Case("a state file holding a whole STATE message",
         state_text='{"type": "STATE", "value": {"bookmarks": {}}}',
         message="holds a whole STATE message"),
    Case("a state whose cohorts are not an object", state=saved("user_cohorts", [1]),
         message="state bookmarks.user_cohorts.cohorts"),
    Case("a spool position that is not a number",
         state=saved("user_cohorts", {"7": entry(position="soon")}),
         message="state bookmarks.user_cohorts.cohorts.7.position"),
    Case("a settled spool message name that is a path",
         state=saved("cohort_membership_changes",
                     {"7": entry(position=5, settled_above=["../../etc/passwd"])}),
         message="state bookmarks.cohort_membership_changes.cohorts.7.settled_above: "
                 "'../../etc/passwd'"),
    Case("source webhook without spool_url", {"source": "webhook"}, message="spool_url"),
    Case("source webhook with a profile property as id_property",
         {"source": "webhook", "spool_url": "spool", "id_property": "$email"},
         message="id_property '$email'"),
    Case("an s3:// spool_url that cannot be reached, its secret in spool_options",
         {"source": "webhook", "spool_url": "s3://hostile-bucket/spool",
          "spool_options": {"key": "AKIAHOSTILE", "secret": SPOOL_SECRET,
                            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
                            "config_kwargs": {"retries": {"max_attempts": 1}}}},
         message="spool_url cannot be read"),
    Case("an error body echoing the Authorization header", script=["echo_auth"],
         message="answered 400"),
    Case("a gs:// snapshot_url with a token and no network",
         {"snapshot_url": "gs://hostile-bucket/snaps",
          "snapshot_options": {"token": TOKEN, "project": "p"}}, message="snapshot_url"),
    Case("an s3:// snapshot_url holding its secret",
         {"snapshot_url": f"s3://AKIAHOSTILE:{S3_SECRET}@hostile-bucket/snaps",
          "snapshot_options": {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
                               "config_kwargs": {"retries": {"max_attempts": 1}}}},
         message="snapshot_url"),
]


@pytest.fixture
def server() -> Iterator[MixpanelQueryServer]:
    running = MixpanelQueryServer().start()
    running.state.add_cohort(7, "Power users", ["a", "b"])
    yield running
    running.stop()


def written_text(root: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, server: MixpanelQueryServer, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    server.state.script = list(case.script)
    config = tap_config(server, tmp_path, **case.settings)
    if case.state_text is None:
        run = Runner(tmp_path)(config, case.state)
    else:
        (tmp_path / "state.json").write_text(case.state_text)
        done = subprocess.run(tap_command(write_json(tmp_path / "config.json", config),
                                          Path("state.json")), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        run = TapRun(done.returncode, [], done.stdout, done.stderr)
    assert run.returncode == case.exit_code, run.stderr[-2000:]
    assert case.message in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    if (case.state is not None or case.state_text) and case.exit_code:  # refused at once
        assert "RECORD" not in run.stdout
    user, secret = server.state.service_account
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    files = written_text(tmp_path / "snapshots") if (tmp_path / "snapshots").exists() else ""
    for marker in (secret, basic, TOKEN, S3_SECRET, SPOOL_SECRET):
        for where, text in (("stdout", run.stdout), ("stderr", run.stderr), ("files", files)):
            assert marker not in text, f"{marker} in {where}"
