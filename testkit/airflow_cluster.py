"""Apache Airflow 3 for the DAG tests, from its own virtualenv (.airflow-venv, scripts/setup-tests).

Metadata in a throwaway PostgreSQL (testkit/postgres_server.py), the LocalExecutor, and the
processes a scheduled task needs: the scheduler, the dag-processor and the api-server (the task
execution API the workers report to). Scheduled runs are off (`use_job_schedule`): the tests
trigger every run. The API lets anyone in as admin (loopback only).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testkit.postgres_server import PostgresServer
from testkit.services import ROOT, free_port, wait_for_port

VENV = ROOT / ".airflow-venv"
AIRFLOW = VENV / "bin" / "airflow"


def missing() -> str | None:
    """Why Airflow cannot be started here, or None."""
    if not AIRFLOW.exists():
        return f"Airflow is not installed in {VENV}: run bash scripts/setup-tests"
    return None


@dataclass
class AirflowCluster:
    """A running Airflow: its environment, its processes, the CLI and the API."""

    home: Path
    postgres: PostgresServer
    env: dict[str, str]
    api_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def start(cls, home: Path, postgres: PostgresServer, dags_folder: Path,
              extra_env: dict[str, str]) -> AirflowCluster:
        """Migrate the metadata database, then start the api-server, scheduler, dag-processor."""
        api_port = free_port()
        env = {**os.environ, **extra_env,
               "AIRFLOW_HOME": str(home),
               "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
               "AIRFLOW__CORE__PARALLELISM": "8",
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                   f"http://127.0.0.1:{api_port}/execution/",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                   f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/postgres",
               "AIRFLOW__API__PORT": str(api_port),
               "AIRFLOW__API__WORKERS": "1",
               "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-for-loopback-airflow",
               "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
               # a task marked failed learns it at its next heartbeat (default: within 5 s)
               "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
               "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
               "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5"}
        env.pop("PYTHONPATH", None)
        cluster = cls(home, postgres, env, api_port)
        cluster.cli("db", "migrate", timeout=300)
        for component in (["api-server", "--port", str(api_port)], ["scheduler"],
                          ["dag-processor"]):
            log = (home / f"{component[0]}.log").open("wb")
            cluster.processes.append(subprocess.Popen([str(AIRFLOW), *component], env=env,
                                                      stdout=log, stderr=subprocess.STDOUT,
                                                      start_new_session=True))
        wait_for_port(api_port, cluster.processes[0], "Airflow api-server", timeout=180)
        return cluster

    def cli(self, *args: str, timeout: float = 120) -> str:
        """`airflow <args>`'s output; a failure raises with its stderr."""
        done = subprocess.run([str(AIRFLOW), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            msg = f"airflow {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}"
            raise RuntimeError(msg)
        return done.stdout

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query on Airflow's metadata database."""
        return self.postgres.psql(sql)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has parsed the DAG."""
        self._wait(lambda: self.query(f"SELECT 1 FROM dag WHERE dag_id = '{dag_id}' "
                                      "AND NOT is_stale"), f"DAG {dag_id}", timeout)

    def trigger(self, dag_id: str, run_id: str) -> None:
        """A manual run of the DAG (what "Trigger" in the UI does)."""
        self._api("POST", f"dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})

    def run_state(self, dag_id: str, run_id: str) -> str:
        rows = self.query(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' "
                          f"AND run_id = '{run_id}'")
        return rows[0][0] if rows else ""

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """The run's final state (success or failed)."""
        self._wait(lambda: self.run_state(dag_id, run_id) in ("success", "failed"),
                   f"run {run_id} of {dag_id}", timeout)
        return self.run_state(dag_id, run_id)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, str]]:
        """task_id -> its state, start and end (epoch seconds) in the run."""
        rows = self.query(
            "SELECT task_id, state, extract(epoch FROM start_date), extract(epoch FROM end_date)"
            f" FROM task_instance WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
        return {r[0]: {"state": r[1], "start": r[2], "end": r[3]} for r in rows}

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, state: str,
                            timeout: float = 300) -> None:
        self._wait(lambda: self.task_instances(dag_id, run_id).get(task_id, {})
                   .get("state") == state, f"{task_id} {state}", timeout)

    def mark_failed(self, dag_id: str, run_id: str, task_id: str) -> None:
        """What "Mark as failed" in the UI does: PATCH the task instance's state."""
        self._api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
                  {"new_state": "failed"})

    def _api(self, method: str, path: str, body: dict) -> None:
        """A call of Airflow's REST API (all-admins mode: no login)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v2/{path}", method=method,
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()

    def wait_for_log(self, dag_id: str, run_id: str, task_id: str, text: str,
                     timeout: float = 120) -> str:
        """The task's log once it holds `text`."""
        self._wait(lambda: text in self.task_log(dag_id, run_id, task_id),
                   f"{text!r} in the log of {task_id}", timeout)
        return self.task_log(dag_id, run_id, task_id)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task's log files' text (the worker writes them under AIRFLOW_HOME/logs)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / \
            f"task_id={task_id}"
        lines = []
        for path in sorted(folder.rglob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:  # the task SDK logs JSON lines; their "event" is the message
                    lines.append(str(json.loads(line).get("event", line)))
                except ValueError:
                    lines.append(line)
        return "\n".join(lines)

    @staticmethod
    def _wait(condition: Callable[[], object], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                msg = f"timed out waiting for {what}"
                raise TimeoutError(msg)
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGKILL to each component's process group (its workers too): nothing to keep."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
