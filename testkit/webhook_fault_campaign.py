"""Webhook-source fault trials: Mixpanel's cohort webhook sync | receiver | spool | tap
(source webhook) | target-braze, under faults, seeded.

Each trial syncs three cohorts to a mixpanel-cohort-receiver as Mixpanel does
(testkit/mixpanel_webhook_sender.py: a full export, then diffs), runs `tap | target` after each
sync (the state the target printed feeding the next run, as Meltano saves it; spool messages
deleted once that state covers them, snapshot_grace_hours 0), with Braze's 429/5xx and dropped
connections and one of these faults during one sync:

- receiver-kill: the receiver SIGKILLed while Mixpanel posts, then started again; a failed
  sync's export stays cut short in the spool through the next run, and Mixpanel's next sync
  starts again from the top;
- disk-full: the receiver's spool a tmpfs (`unshare -rm`) filled up to its size during the
  sync (503: Mixpanel retries, then gives up), then made larger; as for receiver-kill;
- repeat: messages of the sync delivered again (answers lost on the way back);
- reorder: the pages of each export posted out of order;
- tap / target: SIGKILLed between reading the spool and the state (Braze has part of the
  run's sets, no state reached Meltano), followed by a clean rerun.

After a final clean run every Braze user's cohort attribute must equal Mixpanel's membership
(the senders' `members`): `differing` counts the users for whom it does not (must be 0).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from testkit.braze_server import API_KEY
from testkit.cohort_fault_campaign import (
    COHORTS,
    USERS,
    CohortOutcome,
    CohortTrial,
    CohortTrialRun,
    run_trials,
)
from testkit.mixpanel_webhook_sender import CohortWebhookSync, SyncResult
from testkit.receiver_process import PASSWORD, USER, ReceiverProcess

WEBHOOK_FAULTS = ["receiver-kill", "disk-full", "repeat", "reorder", "tap", "target"]
VISITORS = [f"visitor-{i}" for i in range(1500)]   # unknown to Braze; two pages of 1,000
SYNC_SECONDS = 1800                                 # Mixpanel's diff schedule
BIG_SPOOL = "64m"


@dataclass
class RecordingSync(CohortWebhookSync):
    """A sync that keeps the bodies answered success, and can post an export's pages shuffled."""

    answered: list[bytes] = field(default_factory=list)
    shuffle: random.Random | None = None
    reordered: int = 0                       # exports posted out of order

    def bodies(self, action: str, users: list[str]) -> Iterable[bytes]:
        pages = list(super().bodies(action, users))
        if self.shuffle is not None:
            self.shuffle.shuffle(pages)
            self.reordered += [json.loads(p)["parameters"]["page_info"]["page_count"]
                               for p in pages] != list(range(1, len(pages) + 1))
        return pages

    def _post(self, body: bytes, result: SyncResult) -> bool:
        ok = super()._post(body, result)
        if ok:
            self.answered.append(body)
        return ok


def unshare_works() -> bool:
    """Whether a user and mount namespace can be made here (for a small tmpfs)."""
    return shutil.which("unshare") is not None and shutil.which("nsenter") is not None \
        and subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                           check=False).returncode == 0


class WebhookTrialRun(CohortTrialRun):
    """One webhook trial against its own receiver and Braze server, in its own folder."""

    fault: str

    def start_source(self) -> None:
        """Mixpanel's side: a receiver, and one webhook sync per cohort."""
        self.fault = self.trial.kill or "-"
        self.spool = self.work / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.in_namespace = self.fault == "disk-full" and unshare_works()
        self.start_receiver()
        self.senders = {cohort: RecordingSync("", cohort, name, auth=(USER, PASSWORD),
                                              retry_scale=0.002)
                        for cohort, name in COHORTS.items()}
        self.clock = 0.0

    def start_receiver(self) -> None:
        wrap = None
        if self.in_namespace:   # the spool a tmpfs of its own, seen by the tap through nsenter
            wrap = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size={BIG_SPOOL} tmpfs '
                    f'"{self.spool}" && exec "$0" "$@"']
        self.receiver = ReceiverProcess(self.spool, self.work / "receiver.log", wrap=wrap)
        if self.in_namespace:
            self.tap_prefix = ["nsenter", "-t", str(self.receiver.process.pid), "-m", "-U",
                               "--preserve-credentials"]

    def stop(self) -> None:
        self.braze.stop()
        self.receiver.stop()

    def tap_settings(self) -> dict[str, Any]:
        return {"source": "webhook", "spool_url": str(self.spool), "snapshot_grace_hours": 0}

    def secrets(self) -> list[str]:
        return [API_KEY, PASSWORD]

    def membership(self) -> dict[str, set[str]]:
        return {sync.cohort_name: set(sync.members) for sync in self.senders.values()}

    def change_membership(self, sync: int) -> str | None:
        """Mixpanel's sync number `sync` of every cohort, with the trial's fault if it is due.

        The kill, if the fault is the tap's or the target's: at a barrier, once Braze applied
        the run's first request (one applied, then 429s).
        """
        self.clock = sync * SYNC_SECONDS
        for cohort, members in self._draw().items():
            self.senders[cohort].members = set(members)
        at_fault = sync == self.trial.kill_sync
        self.mixpanel_sync(self.fault if at_fault else None)
        if at_fault and self.fault in ("tap", "target"):
            self.braze.state.script = ["", *["429"] * 40]
            self.braze.state.fault_rates = {}
            return self.fault
        return None

    def before_final_run(self) -> None:
        """A failed sync's export waits in the spool till now: Mixpanel catches up."""
        self.mixpanel_catches_up()

    def _draw(self) -> dict[int, list[str]]:
        drawn = {cohort: sorted(self.rng.sample(USERS, self.rng.randrange(5, 25)))
                 for cohort in COHORTS}
        drawn[1] += VISITORS[:self.rng.choice([1200, 1500])]   # an export of two pages
        return drawn

    def clear_faults(self) -> None:
        self.braze.state.script = []
        self.braze.state.fault_rates = {}

    def mixpanel_sync(self, fault: str | None) -> None:
        """Every cohort's scheduled sync, with the fault; failed syncs run again after it."""
        for sync in self.senders.values():
            sync.url = self.receiver.url + "/"
            sync.shuffle = random.Random(self.trial.seed) if fault == "reorder" else None
        if fault == "receiver-kill":
            self._kill_receiver_while_posting()
        elif fault == "disk-full" and self.in_namespace:
            self._remount(self._used_kilobytes() + 8)       # a few KB left: the spool fills
            self._sync_all()
            self._remount(None)
            self.outcome.killed = "No space left" in (self.work / "receiver.log").read_text()
        else:
            self._sync_all()
        if fault == "reorder":
            self.outcome.killed = any(s.reordered for s in self.senders.values())
        if fault == "repeat":
            for sync in self.senders.values():
                again = self.rng.sample(sync.answered, min(3, len(sync.answered)))
                for body in again:
                    requests.post(sync.url, data=body, auth=(USER, PASSWORD), timeout=10)
            self.outcome.killed = self.receiver.health().get("duplicates", 0) > 0
        for sync in self.senders.values():
            sync.shuffle = None

    def mixpanel_catches_up(self) -> None:
        """Mixpanel's next syncs of the cohorts whose last one failed, until one succeeds."""
        for sync in self.senders.values():
            for _ in range(3):
                if sync.snapshot == sync.members:
                    break
                sync.url = self.receiver.url + "/"
                sync.sync(now=self.clock + SYNC_SECONDS / 2)

    def _sync_all(self) -> list[SyncResult]:
        return [sync.sync(now=self.clock) for sync in self.senders.values()]

    def _kill_receiver_while_posting(self) -> None:
        stored = self.receiver.health().get("stored", 0)
        poster = threading.Thread(target=self._sync_all)
        poster.start()
        while poster.is_alive() and self.receiver.health().get("stored", 0) == stored:
            time.sleep(0.001)
        self.receiver.stop(signal.SIGKILL)
        poster.join()
        self.outcome.killed = any(s.snapshot != s.members for s in self.senders.values())
        self.start_receiver()

    def _nsenter(self, *command: str) -> str:
        return subprocess.run([*self.tap_prefix, *command], capture_output=True, text=True,
                              check=True).stdout

    def _used_kilobytes(self) -> int:
        return int(self._nsenter("df", "-k", "--output=used", str(self.spool)).split()[-1])

    def _remount(self, kilobytes: int | None) -> None:
        size = f"{kilobytes}k" if kilobytes is not None else BIG_SPOOL
        self._nsenter("mount", "-o", f"remount,size={size}", str(self.spool))

    def kill_during_run(self, kill: str, tap: subprocess.Popen, target: subprocess.Popen,
                        out_path: Path) -> None:
        """SIGKILL `kill` (tap or target) once Braze applied the run's first request.

        The tap has read the spool then; no state has reached the target's output.
        """
        applied = self.braze.state.applied_objects
        while self.braze.state.applied_objects == applied and target.poll() is None:
            time.sleep(0.005)
        victim = tap if kill == "tap" else target
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            self.outcome.killed = True


def plan_webhook(rng: random.Random, number: int, faults: list[str]) -> CohortTrial:
    """A trial: Braze's faults as the Query API trials draw them, and one webhook fault."""
    return CohortTrial(
        number=number, seed=rng.randrange(1 << 30), syncs=2,
        braze_burst=rng.choice([0, 3]),
        braze_fault_rates={fault: rng.choice([0.0, 0.1])
                           for fault in ("429", "503", "drop_before", "drop_after")},
        mixpanel_script=[], kill=faults[(number - 1) % len(faults)],
        kill_sync=rng.randrange(2), kill_after=0.0)


def run_webhook_campaign(trials: int, seed: int, work: Path, out: TextIO = sys.stdout,
                         faults: list[str] | None = None) -> list[CohortOutcome]:
    """Runs the trials, each fault in turn; prints one line per trial and the totals."""
    rng = random.Random(seed)
    print(f"{'trial':>5} {'fault':>13} {'sync':>4} {'fault hit':>9} {'runs':>4} "
          f"{'objects':>7} {'differing':>9}  braze faults served", file=out)

    def line(outcome: CohortOutcome) -> str:
        trial = outcome.trial
        return (f"{trial.number:>5} {trial.kill:>13} {trial.kill_sync:>4} "
                f"{'yes' if outcome.killed else 'no':>9} {outcome.runs:>4} "
                f"{outcome.applied_objects:>7} {outcome.differing:>9}  {outcome.faults_seen}")

    planned = (plan_webhook(rng, number, faults or WEBHOOK_FAULTS)
               for number in range(1, trials + 1))
    return run_trials(planned, WebhookTrialRun, work, "webhook", out, line)
