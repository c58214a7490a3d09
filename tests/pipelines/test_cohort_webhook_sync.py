"""Mixpanel's cohort webhook sync | mixpanel-cohort-receiver | spool | tap (source webhook) |
target-braze: Braze users end with Mixpanel's membership (the sender's `members`).

Every part runs as its own process against the Braze /users/track-compatible server; the
state the target prints feeds the next run, as Meltano saves it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin_support.webhook_spool import WebhookSpool
from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_webhook_sender import CohortWebhookSync
from testkit.receiver_process import PASSWORD, USER, ReceiverProcess
from tests.conftest import write_json
from tests.pipelines.test_cohort_sync import braze_view

KNOWN = {f"user-{i}" for i in range(1, 21)}
TARGET_RETRIES = {"retry_first_delay_seconds": 0.05, "retry_max_delay_seconds": 0.2,
                  "retry_jitter_seconds": [0, 0.01], "max_retry_seconds": 60}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    running = ReceiverProcess(tmp_path / "spool", tmp_path / "receiver.log")
    yield running
    running.stop()


@pytest.fixture
def braze() -> Iterator[BrazeServer]:
    server = BrazeServer(state=BrazeState(known_users=set(KNOWN))).start()
    yield server
    server.stop()


def sender(receiver: ReceiverProcess, cohort: int, name: str, members: set[str]
           ) -> CohortWebhookSync:
    return CohortWebhookSync(receiver.url + "/", cohort, name, auth=(USER, PASSWORD),
                             retry_scale=0.002, members=set(members))


class Pipeline:
    """`tap | target` runs over one spool; keeps the last state the target printed."""

    def __init__(self, tmp_path: Path, braze: BrazeServer, **tap_settings: Any):
        self.tmp_path, self.braze, self.runs = tmp_path, braze, 0
        self.state: dict | None = None
        self.tap_settings = {"source": "webhook", "spool_url": str(tmp_path / "spool"),
                             "snapshot_url": str(tmp_path / "snapshots"),
                             "snapshot_grace_hours": 0, **tap_settings}

    def start(self) -> tuple[subprocess.Popen, subprocess.Popen, Path]:
        self.runs += 1
        n, tmp = self.runs, self.tmp_path
        tap_config = write_json(tmp / f"tap-{n}.json", self.tap_settings)
        target_config = write_json(tmp / f"target-{n}.json", {
            "api_key": API_KEY, "rest_endpoint": self.braze.url, "objects_per_request": 5,
            "dead_letter_path": str(tmp / "dead-letters.jsonl"), **TARGET_RETRIES})
        command = [sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config",
                   str(tap_config)]
        if self.state is not None:
            command += ["--state", str(write_json(tmp / f"state-{n}.json", self.state))]
        out = tmp / f"target-{n}.out"
        with (tmp / f"tap-{n}.log").open("w") as tap_log, out.open("w") as target_out, \
                (tmp / f"target-{n}.log").open("w") as target_log:
            tap = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=tap_log)
            target = subprocess.Popen([sys.executable, "-m", "target_braze.target", "--config",
                                       str(target_config)], stdin=tap.stdout,
                                      stdout=target_out, stderr=target_log)
        assert tap.stdout is not None
        tap.stdout.close()
        return tap, target, out

    def finish(self, tap: subprocess.Popen, target: subprocess.Popen, out: Path) -> int:
        code = target.wait(timeout=120) or tap.wait(timeout=60)
        states = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        if states:
            self.state = states[-1]
        return code

    def run(self) -> None:
        code = self.finish(*self.start())
        logs = self.log(self.runs)
        assert code == 0, logs[-3000:]
        assert API_KEY not in logs
        assert PASSWORD not in logs

    def log(self, n: int) -> str:
        return "".join((self.tmp_path / f"{p}-{n}.log").read_text() for p in ("tap", "target"))


def expected(*syncs: CohortWebhookSync) -> dict[str, set[str]]:
    """Mixpanel's membership of each cohort, as far as Braze knows the users."""
    return {s.cohort_name: s.members & KNOWN for s in syncs if s.members & KNOWN}


def spooled(tmp_path: Path, cohort: int) -> list[str]:
    return [json.loads(body)["action"]
            for _, body in WebhookSpool(str(tmp_path / "spool")).messages(str(cohort))]


def test_a_full_sync_then_diffs_reach_braze_and_a_run_with_nothing_new_sends_nothing(
        receiver, braze, tmp_path: Path) -> None:
    power = sender(receiver, 1, "Power users", {f"user-{i}" for i in range(1, 8)}
                   | {f"visitor-{i}" for i in range(2500)})       # 3 pages of 1,000
    churn = sender(receiver, 2, "Churn risk", {"user-3", "user-9"})
    assert power.sync(now=0).ok
    assert churn.sync(now=0).ok
    pipeline = Pipeline(tmp_path, braze)
    pipeline.run()
    assert braze_view(braze) == expected(power, churn)
    assert braze.state.bulk_requests >= 1                          # a first sync: a bulk load
    entry = pipeline.state["bookmarks"]["user_cohorts"]["cohorts"]["1"]
    assert entry["position"] > 0
    assert entry["settled_above"] == []
    # 30 minutes on: who entered and who left; one diff delivered twice (a lost answer)
    power.members -= {"user-1", "user-2"}
    power.members |= {"user-10"}
    churn.members |= {"user-11"}
    assert power.sync(now=1800).ok
    assert churn.sync(now=1800).ok
    repeat = next(iter(power.bodies("add_members", ["user-12"])))
    for _ in range(2):
        assert requests.post(receiver.url, data=repeat, auth=(USER, PASSWORD),
                             timeout=5).status_code == 200
    power.members.add("user-12")
    assert receiver.health()["duplicates"] == 1
    objects = braze.state.applied_objects
    pipeline.run()
    assert braze_view(braze) == expected(power, churn)
    assert braze.state.applied_objects - objects == 5   # user-1, -2, -10, -11, -12: the diff
    # nothing new in the spool: nothing is sent
    requests_before = sum(braze.state.statuses.values())
    pipeline.run()
    assert sum(braze.state.statuses.values()) == requests_before
    assert braze_view(braze) == expected(power, churn)


def test_an_export_cut_short_waits_and_one_started_again_from_the_top_replaces_it(
        receiver, braze, tmp_path: Path) -> None:
    power = sender(receiver, 1, "Power users", {f"user-{i}" for i in range(1, 6)}
                   | {f"visitor-{i}" for i in range(1500)})
    first_page = next(iter(power.bodies("members", sorted(power.members))))
    assert requests.post(receiver.url, data=first_page, auth=(USER, PASSWORD),
                         timeout=5).status_code == 200               # page 1 of 2, then a failure
    pipeline = Pipeline(tmp_path, braze)
    pipeline.run()
    assert braze_view(braze) == {}                         # membership not known yet: nothing
    assert "1" not in (pipeline.state or {}).get("bookmarks", {}).get("user_cohorts", {}).get(
        "cohorts", {})
    assert power.sync(now=0).ok                            # Mixpanel starts again from the top
    pipeline.run()
    assert braze_view(braze) == expected(power)
    # a diff cut short: its first page waits, then Mixpanel sends the diff again whole
    power.members -= {"user-1"}
    power.members |= {f"user-{i}" for i in range(6, 9)} | {f"new-{i}" for i in range(1200)}
    adds = sorted(power.members - power.snapshot)          # type: ignore[operator]
    cut = next(iter(power.bodies("add_members", adds)))
    assert requests.post(receiver.url, data=cut, auth=(USER, PASSWORD), timeout=5).ok
    pipeline.run()
    assert braze_view(braze) == expected(power) | {"Power users": {f"user-{i}" for i in
                                                                   range(1, 6)}}
    assert power.sync(now=1800).ok
    pipeline.run()
    assert braze_view(braze) == expected(power)


def test_spool_messages_are_deleted_only_once_a_saved_state_covers_them(
        receiver, braze, tmp_path: Path) -> None:
    power = sender(receiver, 1, "Power users", {"user-1", "user-2"})
    assert power.sync(now=0).ok
    pipeline = Pipeline(tmp_path, braze)
    pipeline.run()
    assert spooled(tmp_path, 1) == ["members"]   # settled, but no saved state covers it yet
    power.members.add("user-3")
    assert power.sync(now=1800).ok
    pipeline.run()                               # starts from the state covering the export
    assert spooled(tmp_path, 1) == ["add_members", "remove_members"]
    pipeline.run()
    assert spooled(tmp_path, 1) == []
    assert braze_view(braze) == expected(power)
    # the grace period: a saved state covers the diff, but it arrived less than an hour ago
    power.members.add("user-4")
    assert power.sync(now=3600).ok
    pipeline.tap_settings["snapshot_grace_hours"] = 1
    pipeline.run()
    pipeline.run()
    assert spooled(tmp_path, 1) == ["add_members", "remove_members"]
    assert braze_view(braze) == expected(power)


def test_a_full_resync_resends_every_members_set_from_the_snapshot(
        receiver, braze, tmp_path: Path) -> None:
    power = sender(receiver, 1, "Power users", {"user-1", "user-2", "user-3"})
    assert power.sync(now=0).ok
    pipeline = Pipeline(tmp_path, braze)
    pipeline.run()
    pipeline.run()                                # its state covers the export: deleted
    assert spooled(tmp_path, 1) == []
    objects, bulk = braze.state.applied_objects, braze.state.bulk_requests
    pipeline.tap_settings["full_resync_hours"] = 0
    pipeline.run()                                # nothing in the spool, every set again
    assert braze.state.applied_objects - objects == 3
    assert braze.state.bulk_requests > bulk
    assert braze_view(braze) == expected(power)


@pytest.mark.parametrize("killed", ["tap", "target"])
def test_a_run_killed_between_reading_the_spool_and_its_state_then_a_clean_rerun(
        receiver, braze, tmp_path: Path, killed: str) -> None:
    braze.state.known_users |= {f"visitor-{i}" for i in range(6000)}
    power = sender(receiver, 1, "Power users", {f"visitor-{i}" for i in range(6000)})
    assert power.sync(now=0).ok
    pipeline = Pipeline(tmp_path, braze)
    braze.state.script = ["", *["429"] * 40]      # the first request applied, then 429s
    tap, target, out = pipeline.start()
    while braze.state.applied_objects == 0:       # the tap has read the spool, Braze has some
        assert target.poll() is None, pipeline.log(1)[-2000:]
    victim = tap if killed == "tap" else target
    assert victim.poll() is None                  # still before its state
    victim.send_signal(signal.SIGKILL)
    assert pipeline.finish(tap, target, out) != 0
    delivered = (pipeline.state or {}).get("bookmarks", {}).get("user_cohorts", {})
    assert "1" not in delivered.get("cohorts", {})   # no user_cohorts state reached Meltano
    assert spooled(tmp_path, 1) == ["members"] * 6   # so nothing was deleted
    braze.state.script = []
    pipeline.run()
    assert braze_view(braze) == expected(power) | {"Power users": power.members}
    power.members -= {f"visitor-{i}" for i in range(10)}
    assert power.sync(now=1800).ok
    pipeline.run()
    assert braze_view(braze) == {"Power users": power.members}


def test_source_webhook_needs_spool_url_and_query_api_still_needs_its_credentials(
        tmp_path: Path) -> None:
    for settings, says in (({"source": "webhook"}, "spool_url"),
                           ({}, "project_id, service_account_username, "
                                "service_account_secret")):
        done = subprocess.run([sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config",
                               str(write_json(tmp_path / "c.json", settings))],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1
        assert says in done.stderr
        assert "Traceback" not in done.stderr


# -- through Meltano: the receiver, then `meltano run tap-mixpanel-cohorts target-braze` ----

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"


def test_meltano_run_with_source_webhook_deletes_messages_once_its_saved_state_covers_them(
        receiver, braze, tmp_path: Path) -> None:
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "TAP_MIXPANEL_COHORTS_SOURCE": "webhook",
           "TAP_MIXPANEL_COHORTS_SPOOL_URL": str(tmp_path / "spool"),
           "TAP_MIXPANEL_COHORTS_SNAPSHOT_URL": str(tmp_path / "snapshots"),
           "TAP_MIXPANEL_COHORTS_SNAPSHOT_GRACE_HOURS": "0",
           "TARGET_BRAZE_API_KEY": API_KEY, "TARGET_BRAZE_REST_ENDPOINT": braze.url,
           "TARGET_BRAZE_DRY_RUN": "false",
           "TARGET_BRAZE_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl")}

    def meltano_run() -> None:
        done = subprocess.run([str(MELTANO), "run", "tap-mixpanel-cohorts", "target-braze"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert API_KEY not in done.stderr + done.stdout

    power = sender(receiver, 1, "Power users", {"user-1", "user-2", "visitor-1"})
    assert power.sync(now=0).ok
    meltano_run()
    assert braze_view(braze) == expected(power)
    assert spooled(tmp_path, 1) == ["members"]      # Meltano saved the state only now
    power.members = {"user-2", "user-3"}
    assert power.sync(now=1800).ok
    meltano_run()
    assert braze_view(braze) == expected(power)
    assert spooled(tmp_path, 1) == ["add_members", "remove_members"]
    assert braze.state.applied_objects == 2 + 2      # user-1 out, user-3 in
