"""The project's own Airflow DAGs (orchestrate/airflow/dags), run by Airflow's scheduler.

Airflow 3.3 from .airflow-venv (scripts/setup-tests), metadata in PostgreSQL, LocalExecutor.
Every group task runs from a copy of the project of its own, as on separate workers, with
Meltano's state in a shared S3 state backend (moto), in the `prod` environment:

- the hourly DAG's four fan-out groups run at the same time and deliver every demo event
  exactly once; in the second run one group's task is marked failed mid-run (Airflow's SIGTERM
  reaches meltano_runner.py, never Meltano), the other groups send nothing again, and a third
  run sends exactly the rest (nothing resent, nothing lost);
- the cohort DAG: a full sync, then the diff, then nothing;
- `airflow dags list-import-errors` is empty, and `dev` leaves the cohort schedule out.

Without the Airflow virtualenv these tests skip; under .ci/run (THIRD_PARTY_PLUGINS_REQUIRED=1)
they fail instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest

from tap_braze_currents.demo_export import write_demo_export
from testkit import airflow_cluster
from testkit.airflow_cluster import AirflowCluster
from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_query_server import MixpanelQueryServer
from testkit.mixpanel_server import MixpanelServer
from testkit.postgres_server import PostgresServer
from testkit.postgres_server import missing as postgres_missing
from testkit.services import Service

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "orchestrate" / "airflow" / "dags"
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
HOURLY = "meltano_hourly"
COHORTS = "meltano_mixpanel-cohorts-to-braze-every-2-hours"
GROUPS = ["email", "messaging", "behaviors", "journeys"]
# one exported event type per fan-out group (meltano.yml's tap-braze-currents--<group>)
TYPES = {"email": "users.messages.email.Send",
         "messaging": "users.messages.pushnotification.Send",
         "behaviors": "users.behaviors.CustomEvent",
         "journeys": "users.canvas.Entry"}
KNOWN = {f"user-{i}" for i in range(1, 8)}


def _unavailable(reason: str) -> None:
    if os.environ.get("THIRD_PARTY_PLUGINS_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Setup:
    airflow: AirflowCluster
    mixpanel: MixpanelServer
    query: MixpanelQueryServer
    braze: BrazeServer
    export: Path
    workers: Path


def _worker_copy(folder: Path) -> None:
    """A checkout of the project as a worker machine has it: meltano.yml, installed plugins."""
    (folder / ".meltano").mkdir(parents=True)
    shutil.copy(ROOT / "meltano.yml", folder / "meltano.yml")
    for kind in ("extractors", "loaders"):
        (folder / ".meltano" / kind).symlink_to(ROOT / ".meltano" / kind)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, s3_server: Service) -> Iterator[Setup]:
    for reason in (airflow_cluster.missing(), postgres_missing()):
        if reason:
            _unavailable(reason)
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    tmp = tmp_path_factory.mktemp("airflow")
    workers = tmp / "workers"
    for group in GROUPS:
        _worker_copy(workers / f"braze-to-mixpanel-{group}-hourly")
    _worker_copy(workers / "mixpanel-cohorts-to-braze-every-2-hours")
    s3 = s3_server
    postgres = PostgresServer.start()
    mixpanel = MixpanelServer().start()
    query = MixpanelQueryServer().start()
    braze = BrazeServer(state=BrazeState(known_users=set(KNOWN))).start()
    fs, _ = fsspec.core.url_to_fs("s3://meltano-state", **s3.storage_options)
    if not fs.exists("meltano-state"):
        fs.mkdir("meltano-state")
    creds = mixpanel.state.credentials
    env = {
        # the DAGs' settings: one checkout per schedule (as separate workers), prod
        "MELTANO_PROJECT_ROOT": str(ROOT),
        "MELTANO_TASK_PROJECT_ROOT": str(workers / "{schedule}"),
        "MELTANO_EXECUTABLE": str(MELTANO),
        "MELTANO_ENVIRONMENT": "prod",
        "MELTANO_STOP_GRACE_SECONDS": "120",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        # the state every worker shares
        "MELTANO_STATE_BACKEND_URI": "s3://meltano-state/state",
        "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": s3.endpoint,
        "MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID": s3.storage_options["key"],
        "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY": s3.storage_options["secret"],
        "AWS_DEFAULT_REGION": "eu-west-1",
        # the Currents pipeline
        "TAP_BRAZE_CURRENTS_STORAGE_URL": str(tmp / "export"),
        "TARGET_MIXPANEL_API_URL": mixpanel.url,
        "TARGET_MIXPANEL_PROJECT_ID": creds.project_id,
        "TARGET_MIXPANEL_PROJECT_TOKEN": creds.project_token,
        "TARGET_MIXPANEL_REGION": "US",
        "TARGET_MIXPANEL_WORKER_PROCESSES": "1",
        "TARGET_MIXPANEL_BATCH_SIZE": "100",
        "TARGET_MIXPANEL_MAX_CONCURRENCY": "2",
        "TARGET_MIXPANEL_ADAPTIVE_SENDING": "false",  # 2 in flight, however slow the answers
        "TARGET_MIXPANEL_DEAD_LETTER_PATH": str(tmp / "dead-letters.jsonl"),
        "TARGET_MIXPANEL_RETRY_FIRST_DELAY_SECONDS": "0.05",
        # the cohort sync
        "TAP_MIXPANEL_COHORTS_API_URL": query.url,
        "TAP_MIXPANEL_COHORTS_PROJECT_ID": query.state.project_id,
        "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_USERNAME": query.state.service_account[0],
        "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_SECRET": query.state.service_account[1],
        "TAP_MIXPANEL_COHORTS_SNAPSHOT_URL": str(tmp / "snapshots"),
        "TAP_MIXPANEL_COHORTS_RETRY_FIRST_DELAY_SECONDS": "0.05",
        "TARGET_BRAZE_API_KEY": API_KEY,
        "TARGET_BRAZE_REST_ENDPOINT": braze.url,
        "TARGET_BRAZE_DEAD_LETTER_PATH": str(tmp / "braze-dead-letters.jsonl"),
        "TARGET_BRAZE_RETRY_FIRST_DELAY_SECONDS": "0.05",
    }
    home = tmp / "home"
    home.mkdir()
    cluster = None
    try:
        cluster = AirflowCluster.start(home, postgres, DAGS, env)
        cluster.wait_for_dag(HOURLY)
        cluster.wait_for_dag(COHORTS)
        yield Setup(cluster, mixpanel, query, braze, tmp / "export", workers)
    finally:
        if cluster is not None:
            cluster.stop()
        for server in (braze, query, mixpanel):
            server.stop()
        postgres.stop()


def _run(setup: Setup, dag_id: str, run_id: str) -> dict[str, dict[str, str]]:
    setup.airflow.trigger(dag_id, run_id)
    state = setup.airflow.wait_for_run(dag_id, run_id)
    tasks = setup.airflow.task_instances(dag_id, run_id)
    failed = {t: setup.airflow.task_log(dag_id, run_id, t)[-3000:] for t, v in tasks.items()
              if v["state"] != "success"}
    assert state == "success", failed
    return tasks


def _sent(mixpanel: MixpanelServer) -> set[str]:
    return {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}


def test_the_hourly_fan_out_runs_at_once_sends_each_event_once_and_a_stop_loses_nothing(
        setup: Setup) -> None:
    mixpanel = setup.mixpanel.state
    first = write_demo_export(str(setup.export), event_types=list(TYPES.values()), hours=2,
                              events_per_file=40)
    identified = sum(len(first.ids[t]) - first.without_external_id[t] for t in TYPES.values())
    tasks = _run(setup, HOURLY, "first")
    assert sorted(tasks) == [f"braze-to-mixpanel-{g}-hourly" for g in sorted(GROUPS)]
    # the four groups ran at one moment (LocalExecutor, parallelism 8)
    assert max(float(t["start"]) for t in tasks.values()) < \
        min(float(t["end"]) for t in tasks.values())
    assert len(_sent(setup.mixpanel)) == identified == mixpanel.raw_events
    assert _sent(setup.mixpanel) <= {i for t in TYPES.values() for i in first.ids[t]}
    # each group ran from its own copy of the project (as on its own worker)
    for group in GROUPS:
        copy = setup.workers / f"braze-to-mixpanel-{group}-hourly"
        assert (copy / ".meltano" / "run" / f"tap-braze-currents--{group}").is_dir()

    # new files for one group; its task is marked failed while the server is slow
    behaviors = TYPES["behaviors"]
    second = write_demo_export(str(setup.export), event_types=[behaviors], hours=6,
                               events_per_file=300, seed=11,
                               start=dt.datetime(2025, 4, 2, tzinfo=dt.timezone.utc))
    new = set(second.ids[behaviors])
    new_identified = len(new) - second.without_external_id[behaviors]
    stopped = "braze-to-mixpanel-behaviors-hourly"
    mixpanel.script = ["slow:2"] * 100_000  # about 35 s for the group's 36 requests
    setup.airflow.trigger(HOURLY, "stopped")
    deadline = time.monotonic() + 300
    while not _sent(setup.mixpanel) & new:
        assert time.monotonic() < deadline, "the behaviors group never reached the server"
        time.sleep(0.2)
    setup.airflow.mark_failed(HOURLY, "stopped", stopped)
    assert len(_sent(setup.mixpanel) & new) < new_identified  # a stop mid-run
    assert setup.airflow.wait_for_run(HOURLY, "stopped") == "failed"
    mixpanel.script = []
    tasks = setup.airflow.task_instances(HOURLY, "stopped")
    assert {t: v["state"] for t, v in tasks.items() if t != stopped} == {
        f"braze-to-mixpanel-{g}-hourly": "success" for g in GROUPS if g != "behaviors"}
    # Airflow's SIGTERM reached the runner only; in BATCH mode (prod) the tap is long done, so
    # the target delivers its backlog and Meltano saves the state (meltano_runner.py)
    setup.airflow.wait_for_log(HOURLY, "stopped", stopped, "meltano_runner: stop requested")
    # the rerun (it waits for the stopped run's end): every event once, nothing resent
    _run(setup, HOURLY, "after-the-stop")
    assert len(_sent(setup.mixpanel) & new) == new_identified
    assert mixpanel.raw_events == len(mixpanel.unique_events) == identified + new_identified
    errors = setup.airflow.cli("dags", "list-import-errors", "-o", "json")
    assert json.loads(errors.strip().splitlines()[-1]) == []  # after the CLI's warnings


def _braze_view(braze: BrazeServer) -> dict[str, set[str]]:
    view: dict[str, set[str]] = {}
    for user, profile in braze.state.profiles.items():
        for name in profile.get("mixpanel_cohorts") or []:
            view.setdefault(name, set()).add(user)
    return view


def test_the_cohort_dag_syncs_all_then_the_diff_then_nothing(setup: Setup) -> None:
    query = setup.query.state
    query.add_cohort(1, "Power users", ["user-1", "user-2", "user-3"])
    query.add_cohort(2, "Churn risk", ["user-3", "user-4"])
    _run(setup, COHORTS, "full")
    assert _braze_view(setup.braze) == {"Power users": {"user-1", "user-2", "user-3"},
                                        "Churn risk": {"user-3", "user-4"}}
    assert setup.braze.state.applied_objects == 4                  # one object per user
    query.add_cohort(1, "Power users", ["user-2", "user-3", "user-5"])
    _run(setup, COHORTS, "diff")
    assert _braze_view(setup.braze)["Power users"] == {"user-2", "user-3", "user-5"}
    assert setup.braze.state.applied_objects == 4 + 2              # user-1 out, user-5 in
    _run(setup, COHORTS, "nothing")
    assert setup.braze.state.applied_objects == 4 + 2


def test_dev_leaves_out_the_cohort_schedule_it_has_no_configuration_for(tmp_path: Path) -> None:
    reason = airflow_cluster.missing()
    if reason:
        _unavailable(reason)
    dags = tmp_path / "dags"
    shutil.copytree(DAGS, dags)
    listed = {}
    for environment in ("dev", "prod"):
        done = subprocess.run(
            [str(airflow_cluster.VENV / "bin" / "python"), "-c",
             "import meltano_schedules as m; print(sorted(m.build_dags()))"],
            cwd=dags, env={**os.environ, "MELTANO_PROJECT_ROOT": str(ROOT),
                           "MELTANO_EXECUTABLE": str(MELTANO),
                           "MELTANO_ENVIRONMENT": environment,
                           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                           "AIRFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(dags)},
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        listed[environment] = done.stdout.split("\n")[-2]
    assert listed["dev"] == str([HOURLY])
    assert listed["prod"] == str(sorted([HOURLY, COHORTS]))
    # the schedule list is cached next to the DAG file: no Meltano at the next parse
    assert json.loads((dags / "meltano_schedules.cache.json").read_text())["schedules"]
