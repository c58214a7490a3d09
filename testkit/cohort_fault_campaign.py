"""Cohort-sync fault trials: `tap-mixpanel-cohorts | target-braze` under faults, seeded.

Each trial seeds cohorts on the Mixpanel Query API-compatible server and known users on the
Braze-compatible server, then runs a few syncs with membership changes between them (the state
the target printed feeding the next run, as Meltano does) and a random mix of faults:

- Braze: a burst of 429s, random 429/5xx, connections dropped before and after the server
  applied a request;
- Mixpanel: scripted 429s, 5xx and dropped connections on the queries;
- processes: SIGKILL of the tap or of the target at a random moment of one sync, or of the
  target right after it printed its first STATE (a state printed before its changes reached
  Braze would lose them), followed by a clean rerun from the last state the target printed.

After a final clean run every Braze user's cohort attribute must equal its Mixpanel membership:
`differing` counts the users for whom it does not (must be 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_query_server import MixpanelQueryServer

USERS = [f"user-{i}" for i in range(60)]
KNOWN_USERS = set(USERS[:50])            # the others exist only in Mixpanel: never created
COHORTS = {1: "Power users", 2: "Churn risk", 3: "Trial"}
KILLS = ["tap", "target", "target-at-state"]
TAP_RETRIES = {"retry_first_delay_seconds": 0.05, "max_retry_seconds": 30}
TARGET_RETRIES = {"retry_first_delay_seconds": 0.05, "retry_max_delay_seconds": 0.4,
                  "retry_jitter_seconds": [0, 0.05], "max_retry_seconds": 60,
                  "objects_per_request": 10}
RUN_TIMEOUT = 120


@dataclass
class CohortTrial:
    """One trial's plan, drawn from its seed."""

    number: int
    seed: int
    syncs: int
    braze_burst: int                         # 429s answering the first requests of each sync
    braze_fault_rates: dict[str, float]
    mixpanel_script: list[str]               # faults for each sync's first queries
    kill: str | None                         # one of KILLS, during one sync
    kill_sync: int
    kill_after: float                        # seconds after that sync started


@dataclass
class CohortOutcome:
    """What a trial ended with."""

    trial: CohortTrial
    runs: int = 0
    killed: bool = False                     # the signal reached a running process
    applied_objects: int = 0
    differing: int = -1                      # users whose Braze attribute != Mixpanel membership
    problem: str | None = None
    faults_seen: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None and self.differing == 0


@dataclass
class FaultCountingBrazeState(BrazeState):
    """BrazeState that counts the faults it served (dropped connections have no status)."""

    served: Counter = field(default_factory=Counter)

    def next_fault(self) -> str | None:
        fault = super().next_fault()
        if fault is not None:
            self.served[fault] += 1
        return fault


def plan(rng: random.Random, number: int, kills: list[str | None]) -> CohortTrial:
    """A trial's faults; kills lists the process faults to draw from (None: no kill)."""
    return CohortTrial(
        number=number, seed=rng.randrange(1 << 30), syncs=rng.choice([2, 3]),
        braze_burst=rng.choice([0, 0, 3, 6]),
        braze_fault_rates={fault: rng.choice([0.0, 0.1, 0.2])
                           for fault in ("429", "503", "drop_before", "drop_after")},
        mixpanel_script=rng.sample(["429", "500", "502", "drop", "503"], rng.randrange(4)),
        kill=rng.choice(kills), kill_sync=rng.randrange(2), kill_after=rng.uniform(0.3, 1.0))


def _draw_membership(rng: random.Random) -> dict[int, list[str]]:
    return {cohort: sorted(rng.sample(USERS, rng.randrange(5, 25))) for cohort in COHORTS}


class CohortTrialRun:
    """Runs one trial against its own two servers, in its own folder."""

    def __init__(self, trial: CohortTrial, work: Path):
        self.trial = trial
        self.work = work
        self.rng = random.Random(trial.seed)
        self.mixpanel = MixpanelQueryServer().start()
        self.mixpanel.state.max_per_window = 100_000
        self.braze_state = FaultCountingBrazeState(known_users=set(KNOWN_USERS),
                                                   seed=trial.seed, keep_bodies=False)
        self.braze = BrazeServer(state=self.braze_state).start()
        self.state: dict[str, Any] | None = None
        self.outcome = CohortOutcome(trial)

    def stop(self) -> None:
        self.braze.stop()
        self.mixpanel.stop()

    def set_membership(self, membership: dict[int, list[str]]) -> None:
        for cohort, members in membership.items():
            self.mixpanel.state.add_cohort(cohort, COHORTS[cohort], members)

    def run(self) -> CohortOutcome:
        trial, outcome = self.trial, self.outcome
        for sync in range(trial.syncs):
            self.set_membership(_draw_membership(self.rng))
            self.braze.state.script = ["429"] * trial.braze_burst
            self.braze.state.fault_rates = dict(trial.braze_fault_rates)
            self.mixpanel.state.script = list(trial.mixpanel_script)
            kill = trial.kill if sync == trial.kill_sync else None
            code = self.sync(kill)
            if code != 0:                    # killed, or the faults outlasted the retries
                self.clear_faults()
                if self.sync(None) != 0:
                    outcome.problem = f"sync {sync}: the clean rerun failed"
                    return outcome
        self.clear_faults()
        if self.sync(None) != 0:
            outcome.problem = "the final clean run failed"
            return outcome
        outcome.differing = self.differing_users()
        outcome.applied_objects = self.braze.state.applied_objects
        outcome.faults_seen = dict(self.braze_state.served)
        return outcome

    def clear_faults(self) -> None:
        self.braze.state.script = []
        self.braze.state.fault_rates = {}
        self.mixpanel.state.script = []

    def sync(self, kill: str | None) -> int:
        """One `tap | target` run; keeps the last state the target printed; its exit code."""
        self.outcome.runs += 1
        n = self.outcome.runs
        query = self.mixpanel.state
        tap_config = self._write(f"tap-{n}.json", {
            "api_url": self.mixpanel.url, "project_id": query.project_id,
            "service_account_username": query.service_account[0],
            "service_account_secret": query.service_account[1],
            "snapshot_url": str(self.work / "snapshots"), **TAP_RETRIES})
        target_config = self._write(f"target-{n}.json", {
            "api_key": API_KEY, "rest_endpoint": self.braze.url,
            "dead_letter_path": str(self.work / "dead-letters.jsonl"), **TARGET_RETRIES})
        tap_command = [sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config",
                       str(tap_config)]
        if self.state is not None:
            tap_command += ["--state", str(self._write(f"state-{n}.json", self.state))]
        out_path, err_path = self.work / f"target-{n}.out", self.work / f"target-{n}.err"
        with (self.work / f"tap-{n}.err").open("w") as tap_err, out_path.open("w") as out, \
                err_path.open("w") as err:
            # odd trials run as in a container image, with PYTHONUNBUFFERED=1
            env = {**os.environ, **({"PYTHONUNBUFFERED": "1"} if self.trial.number % 2 else {})}
            tap = subprocess.Popen(tap_command, stdout=subprocess.PIPE, stderr=tap_err, env=env)
            target = subprocess.Popen([sys.executable, "-m", "target_braze.target", "--config",
                                       str(target_config)], stdin=tap.stdout, stdout=out,
                                      stderr=err, env=env)
            assert tap.stdout is not None
            tap.stdout.close()
            if kill == "target-at-state":
                self._kill_at_state(target, out_path)
            elif kill is not None:
                self._kill_later(tap if kill == "tap" else target)
            target_code = target.wait(timeout=RUN_TIMEOUT)
            tap_code = tap.wait(timeout=RUN_TIMEOUT)
        states = [json.loads(line) for line in out_path.read_text().splitlines()
                  if line.strip()]
        if states:
            self.state = states[-1]
        logs = err_path.read_text() + (self.work / f"tap-{n}.err").read_text()
        if API_KEY in logs or query.service_account[1] in logs:
            self.outcome.problem = f"run {n}: a secret in the logs"
        return target_code or tap_code

    def _kill_later(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.trial.kill_after
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.outcome.killed = True

    def _kill_at_state(self, target: subprocess.Popen, out_path: Path) -> None:
        while target.poll() is None and not out_path.read_text().strip():
            time.sleep(0.005)
        if target.poll() is None:
            target.send_signal(signal.SIGKILL)
            self.outcome.killed = True

    def differing_users(self) -> int:
        """Braze users whose cohort attribute is not their Mixpanel membership."""
        membership: dict[str, set[str]] = {user: set() for user in KNOWN_USERS}
        for cohort in self.mixpanel.state.cohorts.values():
            for member in cohort.members:
                if member.distinct_id in membership:
                    membership[member.distinct_id].add(cohort.name)
        return sum(self.braze.state.cohorts_of(user) != cohorts
                   for user, cohorts in membership.items())

    def _write(self, name: str, value: Any) -> Path:
        path = self.work / name
        path.write_text(json.dumps(value))
        return path


def run_cohort_campaign(trials: int, seed: int, work: Path, out: TextIO = sys.stdout,
                        kills: list[str | None] | None = None) -> list[CohortOutcome]:
    """Runs the trials; prints one line per trial and the totals."""
    rng = random.Random(seed)
    outcomes = []
    print(f"{'trial':>5} {'syncs':>5} {'burst':>5} {'kill':>15} {'killed':>6} {'runs':>4} "
          f"{'objects':>7} {'differing':>9}  mixpanel script; braze faults served", file=out)
    for number in range(1, trials + 1):
        trial = plan(rng, number, kills if kills is not None else [None, *KILLS])
        work_dir = work / f"cohort-trial-{number}"
        work_dir.mkdir(parents=True, exist_ok=True)
        runner = CohortTrialRun(trial, work_dir)
        try:
            outcome = runner.run()
        finally:
            runner.stop()
        outcomes.append(outcome)
        print(f"{number:>5} {trial.syncs:>5} {trial.braze_burst:>5} {trial.kill or '-':>15} "
              f"{'yes' if outcome.killed else 'no':>6} {outcome.runs:>4} "
              f"{outcome.applied_objects:>7} {outcome.differing:>9}  {trial.mixpanel_script}; "
              f"{outcome.faults_seen}"
              + (f"  PROBLEM: {outcome.problem}" if outcome.problem else ""), file=out)
    print(f"cohort trials: {len(outcomes)}, users differing: "
          f"{sum(max(o.differing, 0) for o in outcomes)}, problems: "
          f"{sum(o.problem is not None for o in outcomes)}", file=out)
    return outcomes
