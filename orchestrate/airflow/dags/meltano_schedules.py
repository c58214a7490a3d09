"""Airflow DAGs for the Meltano project: one DAG per schedule interval, one task per schedule.

The schedules come from `meltano schedule list --format=json`, cached in
meltano_schedules.cache.json next to this file and listed again only when meltano.yml changes,
so parsing this file does not run Meltano. Each task runs its schedule's job (`meltano run
<job>`, with the schedule's env) through meltano_runner.py: a stop stops the tap first and
loses nothing (see there). A schedule whose
meltano.yml entry has `annotations: {airflow: {skip_environments: [...]}}` naming the
environment gets no task.

Settings (environment variables of the Airflow processes):

- MELTANO_PROJECT_ROOT: the Meltano project (default: the project this folder is in);
- MELTANO_TASK_PROJECT_ROOT: where the tasks run, if not there; `{schedule}` is replaced by
  the schedule's name (a checkout per schedule);
- MELTANO_EXECUTABLE: the `meltano` command (default: `meltano` on the PATH);
- MELTANO_ENVIRONMENT: the Meltano environment (default: meltano.yml's default_environment);
- MELTANO_STOP_GRACE_SECONDS: how long a stopped task waits for the target (default 300);
- MELTANO_TASK_TIMEOUT_MINUTES: the tasks' execution_timeout (default: none).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from airflow.sdk import DAG
from meltano_task import MeltanoScheduleOperator

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = Path(os.environ.get("MELTANO_PROJECT_ROOT") or HERE.parents[2])
TASK_PROJECT_ROOT = os.environ.get("MELTANO_TASK_PROJECT_ROOT") or str(PROJECT_ROOT)
MELTANO = os.environ.get("MELTANO_EXECUTABLE") or "meltano"
GRACE_SECONDS = float(os.environ.get("MELTANO_STOP_GRACE_SECONDS") or 300)
TIMEOUT_MINUTES = os.environ.get("MELTANO_TASK_TIMEOUT_MINUTES")
CACHE = HERE / "meltano_schedules.cache.json"
CACHE_FORMAT = 1


def _listed(project_yml: Path, digest: str) -> dict[str, Any]:
    """Meltano's schedule list, with each schedule's Airflow annotations from meltano.yml."""
    done = subprocess.run([MELTANO, "schedule", "list", "--format=json"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        msg = f"`{MELTANO} schedule list` failed in {PROJECT_ROOT}: {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    project = yaml.safe_load(project_yml.read_text()) or {}
    annotated = {s["name"]: (s.get("annotations") or {}).get("airflow") or {}
                 for s in project.get("schedules") or []}
    schedules = [{"name": s["name"], "job": s["job"]["name"], "env": s.get("env") or {},
                  "interval": s["interval"],
                  "cron_interval": s.get("cron_interval") or s["interval"],
                  "skip_environments": annotated.get(s["name"], {}).get("skip_environments", [])}
                 for s in json.loads(done.stdout)["schedules"]["job"]]
    return {"format": CACHE_FORMAT, "meltano_yml": str(project_yml), "sha256": digest,
            "default_environment": project.get("default_environment"), "schedules": schedules}


def schedules() -> dict[str, Any]:
    """The cached schedule list, refreshed when meltano.yml is not the one it was listed from."""
    project_yml = PROJECT_ROOT / "meltano.yml"
    digest = hashlib.sha256(project_yml.read_bytes()).hexdigest()
    try:
        cached = json.loads(CACHE.read_text())
        if (cached["format"], cached["sha256"], cached["meltano_yml"]) == \
                (CACHE_FORMAT, digest, str(project_yml)):
            return cached
    except (OSError, ValueError, KeyError):
        pass
    fresh = _listed(project_yml, digest)
    with contextlib.suppress(OSError):  # a read-only DAG folder: list again at the next parse
        CACHE.write_text(json.dumps(fresh, indent=1))
    return fresh


def dag_id(interval: str, names: list[str]) -> str:
    """meltano_hourly for @hourly; a cron interval's single schedule names its DAG."""
    if interval.startswith("@"):
        return f"meltano_{interval[1:]}"
    if len(names) == 1:
        return f"meltano_{names[0]}"
    return "meltano_" + re.sub(r"[^0-9A-Za-z]+", "_", interval.replace("*", "x")).strip("_")


def build_dags() -> dict[str, DAG]:
    """One DAG per interval, one task per schedule not skipped in the environment."""
    listed = schedules()
    environment = os.environ.get("MELTANO_ENVIRONMENT") or listed["default_environment"]
    by_interval: dict[str, list[dict[str, Any]]] = {}
    for schedule in listed["schedules"]:
        if environment not in schedule["skip_environments"]:
            by_interval.setdefault(schedule["interval"], []).append(schedule)
    timeout = timedelta(minutes=float(TIMEOUT_MINUTES)) if TIMEOUT_MINUTES else None
    dags = {}
    for interval, group in by_interval.items():
        names = [s["name"] for s in group]
        with DAG(dag_id(interval, names), schedule=group[0]["cron_interval"],
                 start_date=datetime(2025, 1, 1, tzinfo=timezone.utc), catchup=False,
                 max_active_runs=1, tags=["meltano"],
                 doc_md=f"Meltano schedules ({interval}): {', '.join(names)}") as dag:
            for schedule in group:
                MeltanoScheduleOperator(task_id=schedule["name"], schedule=schedule["name"],
                                        job=schedule["job"], schedule_env=schedule["env"],
                                        project_root=TASK_PROJECT_ROOT, meltano=MELTANO,
                                        environment=environment, grace_seconds=GRACE_SECONDS,
                                        execution_timeout=timeout, retries=0)
        dags[dag.dag_id] = dag
    return dags


globals().update(build_dags())
