"""tap-mixpanel-cohorts | target-braze: Mixpanel cohort membership ends on Braze profiles.

Both plugins run as their own processes, piped, against the project's Mixpanel Query API- and
Braze /users/track-compatible servers; the state the target prints feeds the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_query_server import Member, MixpanelQueryServer
from tests.conftest import write_json

KNOWN = {f"user-{i}" for i in range(1, 11)}


@pytest.fixture
def mixpanel() -> Iterator[MixpanelQueryServer]:
    server = MixpanelQueryServer().start()
    yield server
    server.stop()


@pytest.fixture
def braze() -> Iterator[BrazeServer]:
    server = BrazeServer(state=BrazeState(known_users=set(KNOWN))).start()
    yield server
    server.stop()


def sync(mixpanel: MixpanelQueryServer, braze: BrazeServer, tmp_path: Path, n: int,
         state: dict | None, **tap_settings: Any) -> tuple[int, list[dict], str]:
    """One `tap | target` run; (target exit code, states it printed, target stderr)."""
    query = mixpanel.state
    tap_config = write_json(tmp_path / f"tap-{n}.json", {
        "api_url": mixpanel.url, "project_id": query.project_id,
        "service_account_username": query.service_account[0],
        "service_account_secret": query.service_account[1],
        "snapshot_url": str(tmp_path / "snapshots"), "retry_first_delay_seconds": 0.05,
        "max_retry_seconds": 10, **tap_settings})
    target_config = write_json(tmp_path / f"target-{n}.json", {
        "api_key": API_KEY, "rest_endpoint": braze.url,
        "dead_letter_path": str(tmp_path / "dead-letters.jsonl")})
    tap_command = [sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config", str(tap_config)]
    if state is not None:
        tap_command += ["--state", str(write_json(tmp_path / f"state-{n}.json", state))]
    with (tmp_path / f"tap-{n}.log").open("w") as tap_log:
        tap = subprocess.Popen(tap_command, stdout=subprocess.PIPE, stderr=tap_log)
        assert tap.stdout is not None
        target = subprocess.run([sys.executable, "-m", "target_braze.target", "--config",
                                 str(target_config)], stdin=tap.stdout, capture_output=True,
                                text=True, timeout=120, check=False)
        tap.stdout.close()
        assert tap.wait(timeout=60) == 0, (tmp_path / f"tap-{n}.log").read_text()
    states = [json.loads(line) for line in target.stdout.splitlines() if line.strip()]
    return target.returncode, states, target.stderr


def braze_view(braze: BrazeServer) -> dict[str, set[str]]:
    """Cohort name -> the Braze users whose attribute holds it."""
    view: dict[str, set[str]] = {}
    for user, profile in braze.state.profiles.items():
        for name in profile.get("mixpanel_cohorts") or []:
            view.setdefault(name, set()).add(user)
    return view


def test_a_first_sync_and_a_sync_after_changes_leave_braze_equal_to_mixpanel(
        mixpanel, braze, tmp_path: Path) -> None:
    query = mixpanel.state
    query.add_cohort(1, "Power users", ["user-1", "user-2", "user-3", "stranger-1"])
    query.add_cohort(2, "Churn risk", ["user-3", "user-4"])
    code, states, err = sync(mixpanel, braze, tmp_path, 1, None)
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {"user-1", "user-2", "user-3"},
                                 "Churn risk": {"user-3", "user-4"}}
    assert "stranger-1" not in braze.state.profiles           # unknown to Braze: not created
    assert API_KEY not in err
    # membership changes and a rename between runs
    query.add_cohort(1, "Power users", ["user-2", "user-3", "user-5"])
    query.add_cohort(2, "Churn risk, EU", ["user-3", "user-4", "user-6"])
    objects_before = braze.state.applied_objects
    code, states, err = sync(mixpanel, braze, tmp_path, 2, states[-1])
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {"user-2", "user-3", "user-5"},
                                 "Churn risk, EU": {"user-3", "user-4", "user-6"}}
    # only the changes were sent: user-1 (out), user-5 (in), user-6 (in), and the rename
    # for user-3 and user-4
    assert braze.state.applied_objects - objects_before == 5
    code, states, err = sync(mixpanel, braze, tmp_path, 3, states[-1])  # nothing changed
    assert code == 0, err
    assert braze.state.applied_objects - objects_before == 5


def test_members_without_a_mixpanel_profile_reach_braze(mixpanel, braze, tmp_path: Path) -> None:
    """Users known to Mixpanel only by their imported events have no profile (30% here)."""
    members = [Member(f"user-{i}", None if i % 10 < 3 else {"$name": "x"}) for i in range(10)]
    mixpanel.state.add_cohort(1, "Power users", members)
    braze.state.known_users |= {f"user-{i}" for i in range(10)}
    code, _, err = sync(mixpanel, braze, tmp_path, 1, None)
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {f"user-{i}" for i in range(10)}}


def test_a_user_created_in_braze_later_gets_its_cohorts_on_the_next_full_resync(
        mixpanel, braze, tmp_path: Path) -> None:
    mixpanel.state.add_cohort(1, "Power users", ["user-1", "late-1"])
    code, states, err = sync(mixpanel, braze, tmp_path, 1, None)
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {"user-1"}}     # late-1 is not in Braze yet
    assert braze.state.bulk_requests == 1                       # a first sync: a bulk load
    braze.state.known_users.add("late-1")                       # created in Braze an hour on
    code, states, err = sync(mixpanel, braze, tmp_path, 2, states[-1])
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {"user-1"}}     # nothing changed in Mixpanel
    assert braze.state.bulk_requests == 1
    # the last full resync that reached Braze is 72 h old: every member's set again
    state = states[-1]
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=73)
    resync = state["bookmarks"]["user_cohorts"]
    resync["full_resync_at"] = long_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    code, states, err = sync(mixpanel, braze, tmp_path, 3, state)
    assert code == 0, err
    assert braze_view(braze) == {"Power users": {"user-1", "late-1"}}
    assert braze.state.bulk_requests == 2
    objects = braze.state.applied_objects
    code, states, err = sync(mixpanel, braze, tmp_path, 4, states[-1], full_resync_hours=0)
    assert code == 0, err
    assert braze.state.applied_objects == objects + 2          # 0: every run resyncs
    state = states[-1]                                         # a resync time in the future
    state["bookmarks"]["user_cohorts"]["full_resync_at"] = "2099-01-01T00:00:00Z"
    code, states, err = sync(mixpanel, braze, tmp_path, 5, state)
    assert code == 0, err
    assert braze.state.applied_objects == objects + 4          # is not trusted: a resync


def test_two_cohorts_with_one_name_never_share_a_value(mixpanel, braze, tmp_path: Path) -> None:
    mixpanel.state.add_cohort(1, "VIP", ["user-1", "user-2"])
    mixpanel.state.add_cohort(2, "VIP", ["user-1"])
    code, states, err = sync(mixpanel, braze, tmp_path, 1, None)
    assert code == 0, err
    assert braze_view(braze) == {"VIP (1)": {"user-1", "user-2"}, "VIP (2)": {"user-1"}}
    mixpanel.state.add_cohort(2, "VIP", [])                     # user-1 leaves one of them
    code, states, err = sync(mixpanel, braze, tmp_path, 2, states[-1])
    assert code == 0, err
    assert braze_view(braze) == {"VIP (1)": {"user-1", "user-2"}}


# -- through Meltano: the job's pair, `meltano run tap-mixpanel-cohorts target-braze` ------

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"


def test_meltano_run_syncs_membership_then_only_the_changes(
        mixpanel, braze, tmp_path: Path) -> None:
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    query = mixpanel.state
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "TAP_MIXPANEL_COHORTS_API_URL": mixpanel.url,
           "TAP_MIXPANEL_COHORTS_PROJECT_ID": query.project_id,
           "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_USERNAME": query.service_account[0],
           "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_SECRET": query.service_account[1],
           "TAP_MIXPANEL_COHORTS_SNAPSHOT_URL": str(tmp_path / "snapshots"),
           "TAP_MIXPANEL_COHORTS_RETRY_FIRST_DELAY_SECONDS": "0.05",
           "TARGET_BRAZE_API_KEY": API_KEY, "TARGET_BRAZE_REST_ENDPOINT": braze.url,
           "TARGET_BRAZE_DRY_RUN": "false",
           "TARGET_BRAZE_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
           "TARGET_BRAZE_RETRY_FIRST_DELAY_SECONDS": "0.05"}

    def meltano_run() -> None:
        done = subprocess.run([str(MELTANO), "run", "tap-mixpanel-cohorts", "target-braze"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert API_KEY not in done.stderr + done.stdout
        assert query.service_account[1] not in done.stderr + done.stdout

    query.add_cohort(1, "Power users", ["user-1", "user-2", "user-3"])
    query.add_cohort(2, "Churn risk", ["user-3", "user-4"])
    meltano_run()
    assert braze_view(braze) == {"Power users": {"user-1", "user-2", "user-3"},
                                 "Churn risk": {"user-3", "user-4"}}
    assert braze.state.applied_objects == 4                   # one object per user
    query.add_cohort(1, "Power users", ["user-2", "user-3", "user-5"])
    meltano_run()                                             # Meltano's saved state: the diff
    assert braze_view(braze) == {"Power users": {"user-2", "user-3", "user-5"},
                                 "Churn risk": {"user-3", "user-4"}}
    assert braze.state.applied_objects == 4 + 2               # user-1 out, user-5 in
