"""The Airflow operator that runs one Meltano schedule's job through meltano_runner.py.

The runner (and Meltano under it) runs in a session of its own: Airflow's signals to the task's
process group do not reach it. `on_kill` (a timeout, "mark failed", a worker shutdown) asks the
runner to stop, which stops the tap first (see meltano_runner.py), and waits for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

RUNNER = Path(__file__).resolve().with_name("meltano_runner.py")


class MeltanoScheduleOperator(BaseOperator):
    """A schedule's `meltano [--environment=E] run <job>` in `project_root`.

    `project_root` may name `{schedule}`: each schedule then runs in a checkout of its own.
    """

    def __init__(self, *, schedule: str, job: str, schedule_env: dict[str, str],
                 project_root: str, meltano: str, environment: str | None,
                 grace_seconds: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.schedule = schedule
        self.job = job
        self.schedule_env = schedule_env
        self.project_root = project_root
        self.meltano = meltano
        self.environment = environment
        self.grace_seconds = grace_seconds
        self._runner: subprocess.Popen | None = None
        self._stopped = False

    def command(self) -> list[str]:
        """The runner's command line."""
        environment = [f"--environment={self.environment}"] if self.environment else []
        return [sys.executable, str(RUNNER), "--grace-seconds", str(self.grace_seconds),
                "--lock", f".meltano/run/airflow-{self.schedule}.lock", "--",
                self.meltano, *environment, "run", self.job]

    def execute(self, context: Any) -> None:
        """Run the schedule; fail when Meltano fails or the task was stopped."""
        root = self.project_root.format(schedule=self.schedule)
        self.log.info("in %s: %s", root, " ".join(self.command()[7:]))
        self._runner = subprocess.Popen(self.command(), cwd=root, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, **self.schedule_env,
                                             "MELTANO_PROJECT_ROOT": root})
        # read in a thread: on_kill may wait for the runner while its output still flows
        reader = threading.Thread(target=self._log_output, args=(self._runner.stdout,),
                                  daemon=True)
        reader.start()
        # poll rather than wait(): on_kill, run by a signal handler in this thread, waits too
        while (code := self._runner.poll()) is None:
            time.sleep(0.5)
        reader.join(timeout=5)
        if self._stopped:
            raise AirflowException(f"stopped: the tap was stopped first; meltano exited {code}")
        if code != 0:
            raise AirflowException(f"meltano run {self.job} exited {code}")

    def _log_output(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            self.log.info("%s", line.decode(errors="replace").rstrip())

    def on_kill(self) -> None:
        """Ask the runner to stop (the tap first) and wait for it to end."""
        runner = self._runner
        if runner is None or runner.poll() is not None:
            return
        self._stopped = True
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=self.grace_seconds + 180)  # the runner's own stop sequence
        except subprocess.TimeoutExpired:
            self.log.warning("the runner (pid %s) is still stopping", runner.pid)
