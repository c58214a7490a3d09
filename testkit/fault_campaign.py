"""Fault campaign: seeded trials of the whole pipeline under faults; no event may go missing.

    python bench/fault_campaign.py --trials 200 --seed 1    # the long form (totals in README)
    python bench/fault_campaign.py --trials 20 --seed 12    # the short form CI runs

Each trial generates a small Currents export (in a local folder or in moto's S3 server), then
runs the pipeline (`meltano run`, in RECORD or BATCH mode, or the bare `tap | target` pipe)
against the Mixpanel-compatible server with a random mix of faults:

- Mixpanel: 429/502/503, connections dropped before or after the server stored the batch,
  slow answers, a 429 burst lasting longer than one backoff, a lowered event cap (413), and
  strict-mode refusals of some users' events (400 with failed_records);
- storage: a truncated file, a file rewritten under the same key, a late file for an old hour;
  and, for S3, a proxy in front of the S3 server answering 503 SlowDown, dropping
  connections, cutting transfers midway and answering slowly;
- processes: SIGKILL of the tap, the target or `meltano run` at a random moment; a graceful
  stop (SIGTERM to both processes of the pipe, or to the tap under `meltano run`), which must
  end cleanly and cost no duplicates; or SIGTERM to `meltano run` itself, whose cost in
  replays is counted (Meltano 4.4.1 drops the state emitted after it, README).

Cohort-sync trials (testkit/cohort_fault_campaign.py, `--cohort-trials`) follow: the second
pipeline, `tap-mixpanel-cohorts | target-braze`, under Braze and Mixpanel faults and kills;
after a clean rerun no Braze user's cohort attribute may differ from its Mixpanel membership.

A run that was killed or stopped is followed by a clean rerun from the saved state. After the
trial it prints: events expected (every identified event the files hold, read the way the tap reads
them), unique at the server, dead-lettered (each with a reason), skipped by rule, missing
(must be 0), and duplicates sent (raw minus unique: what the faults cost in replays).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import fsspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tap_braze_currents.demo_export import (  # noqa: E402
    currents_key,
    write_avro_file,
    write_demo_export,
)
from tap_braze_currents.event_types import catalog_avro_schema  # noqa: E402
from testkit.cohort_fault_campaign import run_cohort_campaign  # noqa: E402
from testkit.mixpanel_server import MixpanelServer, MixpanelState  # noqa: E402
from testkit.services import Service, start_s3  # noqa: E402
from testkit.storage_fault_proxy import StorageFaultProxy  # noqa: E402

MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
# Types in the default selection (so `meltano run` reads them all), with JSON properties,
# float32 prices and e-mail addresses among them.
TYPES = ["users.behaviors.CustomEvent", "users.behaviors.Purchase",
         "users.messages.email.Send", "users.behaviors.app.SessionStart"]
RETRIES = {"retry_first_delay_seconds": 0.05, "retry_max_delay_seconds": 0.4,
           "retry_jitter_seconds": [0, 0.05], "max_retry_seconds": 120}
BATCH_CONFIG = {"encoding": {"format": "jsonl", "compression": "none"},
                "storage": {"root": ".meltano/run/braze-batches"}, "batch_size": 500}
RUN_TIMEOUT = 300
# Process faults: SIGKILL of one process; "term", the graceful stop (SIGTERM to both processes
# of the pipe, to the tap under `meltano run`), which must cost no duplicates; "meltano-term",
# SIGTERM to `meltano run` itself. Meltano 4.4.1 cannot record the STATE its target emits
# after that signal (its job record is already detached: DetachedInstanceError in its
# BookmarkWriter), so the next run resends what was delivered since the last recorded STATE;
# the campaign counts those replays (README).
KILLS = ["tap", "target", "term"]
MELTANO_KILLS = ["meltano", "meltano-term"]
STOPS = {"term", "meltano-term"}
# Exit codes of a stopped run that ended cleanly.
CLEAN_STOP_CODES = {"term": {0}, "meltano-term": {0, 143}}
PLUGIN_EXECUTABLES = {"tap": "extractors/tap-braze-currents/venv/bin/tap-braze-currents",
                      "target": "loaders/target-mixpanel/venv/bin/target-mixpanel"}


@dataclass
class Trial:
    """One seeded draw of runner, storage and faults."""

    number: int
    runner: str                      # meltano-record | meltano-batch | pipe
    storage: str                     # local | s3
    events_per_file: int
    fault_rates: dict[str, float]
    throttle_seconds: float          # a 429 burst at the start
    max_events: int                  # the server's event cap per request (413 above)
    refused_users: int               # external ids the server refuses in strict mode
    storage_faults: list[str]        # truncated, rewritten, late
    s3_fault_rates: dict[str, float]  # the S3 proxy's faults: slowdown, drop, cut, slow
    kill: str | None                 # one of KILLS or MELTANO_KILLS
    kill_at: float                   # ... once this share of the events reached the server
    pii: str = "keep"                # the target's pii setting: keep | hash | drop
    unbuffered: bool = False         # PYTHONUNBUFFERED=1, as in most container images


@dataclass
class Outcome:
    """What one trial delivered, counted at the server and in the dead-letter file."""

    trial: Trial
    expected: int = 0
    unique: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    skipped: int = 0
    missing: int = 0
    duplicates: int = 0
    runs: list[int] = field(default_factory=list)   # exit codes, the killed run included
    leaked: list[str] = field(default_factory=list)  # files holding a configured secret
    emails_shown: int = 0  # e-mail addresses of the export seen at the server or dead-lettered
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.missing == 0 and not self.problem and not self.leaked


def plan(rng: random.Random, number: int, runners: list[str], storages: list[str],
         kills: list[str] | None = None) -> Trial:
    """A random mix of faults for trial `number` (process faults drawn from `kills`)."""
    rates = {f: rng.choice([0, 0, 0.05, 0.15]) for f in ("429", "502", "503")}
    rates.update({f: rng.choice([0, 0, 0.04, 0.08]) for f in ("drop_before", "drop_after")})
    rates["slow:0.3"] = rng.choice([0, 0, 0.05])
    runner = rng.choice(runners)
    allowed = KILLS + (MELTANO_KILLS if "meltano" in runner else [])
    kill = rng.choice([None, None, *allowed])
    if kills is not None:
        kill = rng.choice([k for k in kills if k in allowed or k == "none"])
        kill = None if kill == "none" else kill
    storage = rng.choice(storages)
    s3_rates = {}
    if storage == "s3" and rng.random() < 0.5:
        s3_rates = {"slowdown": rng.choice([0.05, 0.1]), "drop": rng.choice([0, 0.05]),
                    "cut": rng.choice([0, 0.05]), "slow": rng.choice([0, 0.05])}
    # The replays a stop costs are measured alone: no batches stored then dropped, no file
    # rewritten under its key (both resend events by design).
    storage_faults = [f for f in ("truncated", "rewritten", "late") if rng.random() < 0.35]
    if kill in STOPS:
        rates.pop("drop_after", None)
        storage_faults = [f for f in storage_faults if f != "rewritten"]
    return Trial(number=number, runner=runner, storage=storage,
                 events_per_file=rng.randint(20, 120),
                 fault_rates={k: v for k, v in rates.items() if v},
                 throttle_seconds=rng.choice([0, 0, 1.5]),
                 max_events=rng.choice([2000, 2000, 150]),
                 refused_users=rng.choice([0, 0, 2]),
                 storage_faults=storage_faults,
                 s3_fault_rates={k: v for k, v in s3_rates.items() if v},
                 kill=kill, kill_at=rng.uniform(0.05, 0.8),
                 pii=rng.choice(["keep", "hash", "drop"]),
                 # not drawn, so the other draws stay as they were; every graceful stop too
                 unbuffered=kill in STOPS or number % 2 == 1)


class Campaign:
    """Runs trials; holds the S3 server they share."""

    def __init__(self, work: Path, seed: int):
        self.work = work
        self.seed = seed
        self._s3: Service | None = None

    def s3(self) -> Service:
        if self._s3 is None:
            self._s3 = start_s3()
            fs = fsspec.filesystem("s3", **self._s3.storage_options)
            fs.mkdir("campaign")
        return self._s3

    def close(self) -> None:
        if self._s3 is not None:
            self._s3.stop()

    # -- one trial -----------------------------------------------------------------------

    def run_trial(self, trial: Trial) -> Outcome:
        rng = random.Random(self.seed * 100_003 + trial.number)
        folder = self.work / f"trial-{trial.number}"
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier campaign left there
        folder.mkdir(parents=True)
        url, options = self._export(trial, folder, rng)
        fs, root = fsspec.core.url_to_fs(url, **options)
        before = _read_export(fs, root)
        if "truncated" in trial.storage_faults:
            _truncate(fs, rng.choice(sorted(fs.find(root))), rng)
        state = MixpanelState(seed=rng.randrange(1 << 30), fault_rates=trial.fault_rates,
                              max_events=trial.max_events)
        users = sorted(before.users)
        state.refused_distinct_ids = set(rng.sample(users, min(trial.refused_users, len(users))))
        server = MixpanelServer(state=state).start()
        proxy = None
        tap_options = options
        if trial.s3_fault_rates:
            proxy = StorageFaultProxy(options["endpoint_url"], trial.s3_fault_rates,
                                      seed=rng.randrange(1 << 30), slow_seconds=0.3).start()
            tap_options = {**options, "endpoint_url": proxy.url}
        outcome = Outcome(trial)
        started = time.time()
        try:
            runner = Runner(trial, folder, url, tap_options, server)
            self._run_twice(trial, runner, server, len(before.identified), outcome,
                            between=lambda: _storage_changes(trial, fs, url, root, rng))
            contents = _read_export(fs, root)
            letters_path = folder / "dead-letters.jsonl"
            letters = letters_path.read_text() if letters_path.exists() else ""
            self._count(outcome, contents, letters, server)
            secrets = [state.credentials.project_token, *state.credentials.secrets(),
                       options.get("secret", "")]
            outcome.leaked = _files_holding(_produced_files(folder, started), secrets)
            if outcome.leaked:
                outcome.problem = f"secrets found in {', '.join(outcome.leaked)}"
            outcome.emails_shown = len(_emails_shown(contents.emails, server, letters))
            if trial.pii != "keep" and outcome.emails_shown:
                outcome.problem = f"pii {trial.pii}: {outcome.emails_shown} e-mail addresses shown"
        finally:
            server.stop()
            if proxy is not None:
                proxy.stop()
        return outcome

    def _export(self, trial: Trial, folder: Path, rng: random.Random) -> tuple[str, dict]:
        """Write the trial's export (local or on S3); its URL and storage options."""
        options: dict[str, Any] = {}
        if trial.storage == "s3":
            options = self.s3().storage_options
            url = f"s3://campaign/seed-{self.seed}/trial-{trial.number}"
        else:
            url = str(folder / "export")
        write_demo_export(url, storage_options=options, event_types=TYPES, hours=2,
                          integrations=1, events_per_file=trial.events_per_file,
                          seed=rng.randrange(1 << 30))
        return url, options

    @staticmethod
    def _run_twice(trial: Trial, runner: Runner, server: MixpanelServer, events: int,
                   outcome: Outcome, between: Callable[[], None]) -> None:
        """The faulted run (its process fault once `kill_at` of the events arrived), then
        `between` (storage changes), then a clean rerun from the saved state."""
        server.state.throttled_until = time.time() + trial.throttle_seconds
        threshold = int(trial.kill_at * events)
        first = runner.run(kill=trial.kill, when=lambda: server.state.raw_events >= threshold)
        outcome.runs.append(first)
        if trial.kill in STOPS and first not in CLEAN_STOP_CODES[trial.kill]:
            outcome.problem = f"a SIGTERM ended the run with {first}: {runner.last_error()}"
        duplicates_before_rerun = server.state.duplicates
        between()
        final = runner.run()
        outcome.runs.append(final)
        if final != 0:
            outcome.problem = f"the clean rerun exited {final}: {runner.last_error()}"
        replayed = server.state.duplicates - duplicates_before_rerun
        if trial.kill == "term" and replayed:
            outcome.problem = f"the rerun after a graceful stop sent {replayed} duplicates"

    @staticmethod
    def _count(outcome: Outcome, contents: ExportContents, letters: str,
               server: MixpanelServer) -> None:
        identified = contents.identified
        sent = {e["properties"]["$insert_id"] for e in server.state.unique_events}
        dead: dict[str, str] = {}
        for line in letters.splitlines():
            letter = json.loads(line)
            dead[letter["record"]["id"]] = letter["reason"]
        outcome.expected = len(identified)
        outcome.unique = len(sent & identified)
        outcome.dead_lettered = Counter(dead[i] for i in identified - sent if i in dead)
        outcome.skipped = contents.skipped
        outcome.missing = len(identified - sent - set(dead))
        outcome.duplicates = server.state.duplicates


class Runner:
    """Runs the pipeline of a trial, keeps its state between runs, kills on request."""

    def __init__(self, trial: Trial, folder: Path, url: str, options: dict,
                 server: MixpanelServer):
        self.trial = trial
        self.folder = folder
        self.state_path = folder / "state.json"
        creds = server.state.credentials
        self.tap_config = {"storage_url": url, "storage_options": options}
        self.target_config = {"api_url": server.url, "project_token": creds.project_token,
                              "dead_letter_path": str(folder / "dead-letters.jsonl"),
                              "progress_interval_seconds": 2, "pii": trial.pii, **RETRIES}
        self.env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                    "MELTANO_DATABASE_URI": f"sqlite:///{folder}/meltano.db",
                    "TAP_BRAZE_CURRENTS_STORAGE_URL": url,
                    "TAP_BRAZE_CURRENTS_STORAGE_OPTIONS": json.dumps(options),
                    "TARGET_MIXPANEL_DRY_RUN": "false"}
        if trial.unbuffered:
            self.env["PYTHONUNBUFFERED"] = "1"
        for key, value in self.target_config.items():
            self.env[f"TARGET_MIXPANEL_{key.upper()}"] = (
                value if isinstance(value, str) else json.dumps(value))
        if trial.runner == "meltano-batch":
            self.env["TAP_BRAZE_CURRENTS_BATCH_CONFIG"] = json.dumps(BATCH_CONFIG)
        self._stderr = folder / "stderr.log"
        self._force = False

    def run(self, kill: str | None = None, when: Callable[[], bool] = bool) -> int:
        """One run; returns its exit code (the killed process's, when one is killed).

        `kill` names the process to signal, as soon as `when()` is true."""
        with self._stderr.open("ab") as stderr:
            if self.trial.runner == "pipe":
                return self._pipe(stderr, kill, when)
            return self._meltano(stderr, kill, when)

    def last_error(self) -> str:
        lines = self._stderr.read_text(errors="replace").splitlines()
        return " | ".join(x for x in lines[-200:] if "Error" in x or "ERROR" in x)[-600:]

    def _pipe(self, stderr: Any, kill: str | None, when: Callable[[], bool]) -> int:
        tap_config = self.folder / "tap.json"
        tap_config.write_text(json.dumps(self.tap_config))
        target_config = self.folder / "target.json"
        target_config.write_text(json.dumps(self.target_config))
        tap_command = [sys.executable, "-m", "tap_braze_currents.tap", "--config",
                       str(tap_config)]
        if self.state_path.exists():
            tap_command += ["--state", str(self.state_path)]
        tap = subprocess.Popen(tap_command, stdout=subprocess.PIPE, stderr=stderr,
                               env=self.env, start_new_session=True)
        target = subprocess.Popen([sys.executable, "-m", "target_mixpanel.target", "--config",
                                   str(target_config)], stdin=tap.stdout,
                                  stdout=subprocess.PIPE, stderr=stderr, env=self.env,
                                  start_new_session=True)
        assert tap.stdout is not None
        assert target.stdout is not None
        tap.stdout.close()
        killer: _LaterKill | None = None
        if kill == "term":  # a scheduler stopping the task signals the whole group
            killer = _LaterKill(tap.pid, when, signal.SIGTERM, also=[target.pid])
        elif kill is not None:
            killer = _LaterKill({"tap": tap, "target": target}[kill].pid, when)
        states = target.stdout.read().decode().splitlines()
        _wait_exited(target)
        _wait_exited(tap)
        if killer is not None:
            killer.cancel()
        code = _end_with_group(target)
        tap_code = _end_with_group(tap)
        if states:
            self.state_path.write_text(states[-1])
        return code or tap_code

    def _meltano(self, stderr: Any, kill: str | None, when: Callable[[], bool]) -> int:
        force = ["--force"] if self._force else []
        process = subprocess.Popen([str(MELTANO), "run", *force, "tap-braze-currents",
                                    "target-mixpanel"], cwd=ROOT, env=self.env,
                                   stdout=stderr, stderr=stderr, start_new_session=True)
        killer: _LaterKill | None = None
        if kill == "meltano":
            killer = _LaterKill(process.pid, when)
        elif kill == "meltano-term":
            killer = _LaterKill(process.pid, when, signal.SIGTERM)
        elif kill == "term":  # the tap ends after its current file; the run then ends as usual
            killer = _LaterKill(process.pid, when, signal.SIGTERM,
                                session_pattern=PLUGIN_EXECUTABLES["tap"])
        elif kill is not None:
            killer = _LaterKill(process.pid, when, session_pattern=PLUGIN_EXECUTABLES[kill])
        _wait_exited(process)
        if killer is not None:
            killer.cancel()
        code = _end_with_group(process)  # and what a killed `meltano run` left behind
        # A `meltano run` killed outright leaves its run marked as running; an operator reruns
        # with --force (README), as the next run here does.
        self._force = kill == "meltano"
        return code


# -- secrets and personal data -------------------------------------------------------------

def _emails_shown(emails: set[str], server: MixpanelServer, letters: str) -> set[str]:
    """The export's e-mail addresses that reached the server or the dead-letter file."""
    shown = json.dumps(server.state.unique_events) + letters
    return {e for e in emails if e in shown}


def _produced_files(folder: Path, since: float) -> list[Path]:
    """What a trial wrote: its folder (logs, state, dead letters, Meltano's system database)
    and Meltano's run logs."""
    inputs = {"tap.json", "target.json"}  # the configs the pipe runner hands its plugins
    files = [p for p in folder.rglob("*")
             if p.is_file() and p.suffix != ".avro" and p.name not in inputs]
    logs = ROOT / ".meltano" / "logs"
    if logs.exists():
        files += [p for p in logs.rglob("*") if p.is_file() and p.stat().st_mtime >= since]
    return files


def _files_holding(files: list[Path], secrets: list[str]) -> list[str]:
    """The files in which any of the secrets appears."""
    needles = [s.encode() for s in secrets if s]
    found = []
    for path in files:
        data = path.read_bytes()
        if any(needle in data for needle in needles):
            found.append(str(path))
    return found


# -- faults --------------------------------------------------------------------------------

class _LaterKill:
    """Signal `pid` and `also` (or the process of pid's session matching a pattern) as soon
    as `when()` is true (checked every 10 ms), unless `cancel` came first.

    Cancel before the run's processes are reaped: a PID freed by reaping may be taken by a new
    process (of another campaign on the machine, say), which must never get the signal."""

    def __init__(self, pid: int, when: Callable[[], bool], sig: int = signal.SIGKILL,
                 session_pattern: str | None = None, also: list[int] | None = None):
        self._lock = threading.Lock()
        self._cancelled = False
        self._pid, self._when, self._sig = pid, when, sig
        self._pattern, self._also = session_pattern, also or []
        threading.Thread(target=self._kill, daemon=True).start()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True

    def _kill(self) -> None:
        while not self._when():
            time.sleep(0.01)
            if self._cancelled:
                return
        with self._lock:
            if self._cancelled:
                return
            targets = [self._pid, *self._also]
            if self._pattern is not None:
                found = subprocess.run(["pgrep", "-s", str(self._pid), "-f", self._pattern],
                                       capture_output=True, text=True, check=False).stdout
                targets = [int(p) for p in found.split()]
            for victim in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, self._sig)


def _wait_exited(process: subprocess.Popen) -> None:
    """Wait (at most RUN_TIMEOUT) for `process` to exit, without reaping it: until it is
    reaped its PID, which is its group's id, cannot be taken by a new process."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(process.args, RUN_TIMEOUT)
        time.sleep(0.02)


def _end_with_group(process: subprocess.Popen) -> int:
    """Kill what is left of the group of `process` (exited: see `_wait_exited`), then reap
    it; its exit code."""
    _kill_group(process.pid)
    return process.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _storage_changes(trial: Trial, fs: Any, url: str, root: str, rng: random.Random) -> None:
    """Between the two runs: a late file lands, a file is rewritten under its key."""
    if "late" in trial.storage_faults:
        _late_file(fs, url, root, rng)
    if "rewritten" in trial.storage_faults:
        _rewrite(fs, rng.choice(sorted(fs.find(root))), rng)


def _truncate(fs: Any, path: str, rng: random.Random) -> None:
    data = fs.cat_file(path)
    with fs.open(path, "wb") as handle:
        handle.write(data[: rng.randint(len(data) // 3, len(data) - 1)])


def _rewrite(fs: Any, path: str, rng: random.Random) -> None:
    """The same key, new content: its records and some new ones (a new content version)."""
    with fs.open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        schema: dict[str, Any] = reader.writer_schema  # type: ignore[assignment]
        records: list[dict[str, Any]] = []
        with contextlib.suppress(Exception):
            records.extend(reader)  # type: ignore[arg-type]  # records of a record schema
    extra = [{**(records[0] if records else {}), "id": f"rewritten-{rng.randrange(1 << 40)}-{i}",
              "external_user_id": f"user-rw-{i}"} for i in range(5)]
    if records:
        write_avro_file(fs, path, schema, records + extra)


def _late_file(fs: Any, url: str, root: str, rng: random.Random) -> None:
    """A file landing late in the export's first hour (inside the lookback window)."""
    event_type = "users.behaviors.Purchase"
    schema = catalog_avro_schema(event_type)
    assert schema is not None
    template = {f["name"]: None for f in schema["fields"]}
    records = [{**template, "id": f"late-{rng.randrange(1 << 40)}-{i}", "user_id": "u",
                "external_user_id": f"late-user-{i}", "time": 1743467000 + i,
                "product_id": "sku-late", "price": 2.5, "currency": "EUR",
                "properties": "{}"} for i in range(7)]
    key = currents_key("late", event_type, "2025-04-01-00", old_layout=False, partition=7,
                       offset=rng.randrange(1 << 20))
    write_avro_file(fs, f"{root.rstrip('/')}/{key}", schema, records)


@dataclass
class ExportContents:
    """What an export holds, read as the tap reads it (each file up to any damage)."""

    identified: set[str] = field(default_factory=set)  # ids of events with an external id
    skipped: int = 0                                   # events without one
    users: set[str] = field(default_factory=set)       # external ids
    emails: set[str] = field(default_factory=set)      # e-mail addresses


def _read_export(fs: Any, root: str) -> ExportContents:
    contents = ExportContents()
    for path in fs.find(root):
        if not path.endswith(".avro"):
            continue
        # records after a file's damage are not readable, by the tap either
        with fs.open(path, "rb") as handle, contextlib.suppress(Exception):
            for record in fastavro.reader(handle):
                assert isinstance(record, dict)
                user = record.get("external_user_id")
                if user:
                    contents.identified.add(record["id"])
                    contents.users.add(user)
                else:
                    contents.skipped += 1
                if record.get("email_address"):
                    contents.emails.add(record["email_address"])
    return contents


# -- the campaign --------------------------------------------------------------------------

def run_campaign(trials: int, seed: int, runners: list[str], storages: list[str],
                 work: Path, out: Any = sys.stdout,
                 kills: list[str] | None = None) -> list[Outcome]:
    """Run `trials` seeded trials; print a line per trial and the totals."""
    rng = random.Random(seed)
    campaign = Campaign(work, seed)
    outcomes = []
    print(f"{'#':>3} {'runner':<14} {'storage':<6} {'kill':<12} {'pii':<5} {'faults':<34} "
          f"{'expected':>8} "
          f"{'unique':>7} {'dead':>5} {'skipped':>7} {'missing':>7} {'dups':>5}", file=out)
    try:
        for number in range(trials):
            trial = plan(rng, number, runners, storages, kills)
            outcome = campaign.run_trial(trial)
            outcomes.append(outcome)
            faults = ",".join(sorted(trial.fault_rates) + trial.storage_faults
                              + (["burst"] if trial.throttle_seconds else [])
                              + (["413"] if trial.max_events < 2000 else [])
                              + (["refuse"] if trial.refused_users else [])
                              + [f"s3{k}" for k in sorted(trial.s3_fault_rates)])
            print(f"{number:>3} {trial.runner:<14} {trial.storage:<6} {trial.kill or '-':<12} "
                  f"{trial.pii:<5} {faults[:34]:<34} {outcome.expected:>8} {outcome.unique:>7} "
                  f"{sum(outcome.dead_lettered.values()):>5} {outcome.skipped:>7} "
                  f"{outcome.missing:>7} {outcome.duplicates:>5}"
                  + (f"  PROBLEM: {outcome.problem}" if outcome.problem else ""),
                  file=out, flush=True)
    finally:
        campaign.close()
    reasons = sum((o.dead_lettered for o in outcomes), Counter())
    print(f"totals: {len(outcomes)} trials, {sum(o.expected for o in outcomes):,} expected, "
          f"{sum(o.unique for o in outcomes):,} unique at the server, "
          f"{sum(reasons.values()):,} dead-lettered {dict(reasons)}, "
          f"{sum(o.skipped for o in outcomes):,} skipped, "
          f"{sum(o.missing for o in outcomes):,} missing, "
          f"{sum(o.duplicates for o in outcomes):,} duplicates sent, "
          f"{sum(not o.ok for o in outcomes)} trials with a problem", file=out)
    _print_replay_costs(outcomes, out)
    return outcomes


def _print_replay_costs(outcomes: list[Outcome], out: Any) -> None:
    """Duplicates sent per process fault, among trials with no other fault that replays by
    design (answers dropped after the server stored a batch, a file rewritten under its key)."""
    print("duplicates / expected by process fault (trials without replaying faults):", file=out)
    for kill in [None, *KILLS, *MELTANO_KILLS]:
        alone = [o for o in outcomes if o.trial.kill == kill
                 and "drop_after" not in o.trial.fault_rates
                 and "rewritten" not in o.trial.storage_faults]
        expected = sum(o.expected for o in alone)
        if expected:
            duplicates = sum(o.duplicates for o in alone)
            print(f"  {kill or 'none':<12} {len(alone):>3} trials  {duplicates:>6,} / "
                  f"{expected:>7,} = {duplicates / expected:.1%}", file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runners", default="meltano-record,meltano-batch,pipe")
    parser.add_argument("--storages", default="local,s3")
    parser.add_argument("--kills", help="only these process faults: none,tap,target,term,"
                        "meltano,meltano-term (default: a random mix of all)")
    parser.add_argument("--cohort-trials", type=int, default=20,
                        help="cohort-sync trials (tap-mixpanel-cohorts | target-braze) after "
                        "the Currents trials")
    args = parser.parse_args()
    work = ROOT / "bench" / "out" / "campaign" / f"seed-{args.seed}"
    outcomes = run_campaign(args.trials, args.seed, args.runners.split(","),
                            args.storages.split(","), work,
                            kills=args.kills.split(",") if args.kills else None)
    cohort_outcomes = run_cohort_campaign(args.cohort_trials, args.seed, work)
    sys.exit(0 if all(o.ok for o in [*outcomes, *cohort_outcomes]) else 1)


if __name__ == "__main__":
    main()
