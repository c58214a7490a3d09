"""Benchmark: a 30-minute diff of 10,000 changes through Mixpanel's cohort webhooks to Braze.

    python bench/cohort_webhook_source.py                    # a 2,000,000-member cohort
    python bench/cohort_webhook_source.py --members 200000   # a quicker look

Mixpanel's side (testkit/mixpanel_webhook_sender.py) syncs the cohort to mixpanel-cohort-receiver
(its full export, then 30 minutes on a diff: `--changes` / 2 members left, as many joined); after
each, one tap-mixpanel-cohorts run with `source: webhook`, only `user_cohorts` selected as in
meltano.yml (its Singer output to a file), then
target-braze reading that file against the Braze-compatible server (no rate limit, counting
objects), and once more for a second diff (the export deleted from the spool by then). Printed
per run: the tap's wall time, CPU and peak memory, the target's wall time, and the objects
Braze applied. Beside it, the Query API source for the same cohort: each run pages
every member through /engage, 1,000 a query, at its documented budget of 60 queries an hour.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cohorts_tap import stream_catalog  # noqa: E402
from bench.common import measure  # noqa: E402
from testkit.braze_server import API_KEY, BrazeServer, BrazeState  # noqa: E402
from testkit.mixpanel_webhook_sender import PAGE_SIZE, CohortWebhookSync  # noqa: E402
from testkit.receiver_process import PASSWORD, USER, ReceiverProcess  # noqa: E402

QUERIES_PER_HOUR = 60      # Mixpanel's Query API budget (tap_mixpanel_cohorts.mixpanel_query_api)


def one_run(work: Path, n: int, braze: BrazeServer, state: dict | None) -> dict:
    """The tap's run to a file, then the target's over it; what each took, what Braze got."""
    settings = {"source": "webhook", "spool_url": str(work / "spool"),
                "snapshot_url": str(work / "snapshots"), "snapshot_grace_hours": 0}
    tap_config = work / f"tap-{n}.json"
    tap_config.write_text(json.dumps(settings))
    catalog = stream_catalog(work, settings, "user_cohorts")   # as meltano.yml selects
    command = [sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config", str(tap_config),
               "--catalog", str(catalog)]
    if state is not None:
        (work / f"state-{n}.json").write_text(json.dumps(state))
        command += ["--state", str(work / f"state-{n}.json")]
    singer = work / f"singer-{n}.jsonl"
    with singer.open("wb") as out, (work / f"tap-{n}.log").open("wb") as log:
        tap = measure(command, stdout=out, stderr=log, cwd=ROOT)
    assert tap.returncode == 0, (work / f"tap-{n}.log").read_text()[-2000:]
    target_config = work / f"target-{n}.json"
    target_config.write_text(json.dumps({
        "api_key": API_KEY, "rest_endpoint": braze.url, "max_concurrency": 16,
        "dead_letter_path": str(work / "dead.jsonl")}))
    before = braze.state.applied_objects
    states = work / f"states-{n}.jsonl"
    with singer.open("rb") as stdin, states.open("wb") as out:
        target = measure([sys.executable, "-m", "target_braze.target", "--config",
                          str(target_config)], stdin=stdin, stdout=out, cwd=ROOT)
    assert target.returncode == 0
    printed = [json.loads(line) for line in states.read_text().splitlines() if line.strip()]
    return {"tap_s": tap.seconds, "tap_cpu_s": tap.cpu_seconds, "tap_mb": tap.peak_mb,
            "target_s": target.seconds, "objects": braze.state.applied_objects - before,
            "state": printed[-1] if printed else state}


def show(label: str, run: dict) -> None:
    print(f"{label}: tap {run['tap_s']:.1f} s (CPU {run['tap_cpu_s']:.1f} s, peak "
          f"{run['tap_mb']:.0f} MB), target {run['target_s']:.1f} s; Braze applied "
          f"{run['objects']:,} objects; in Braze {run['tap_s'] + run['target_s']:.1f} s after "
          "the run started")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=2_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="webhook-source-bench-"))
    receiver = ReceiverProcess(work / "spool", work / "receiver.log")
    braze = BrazeServer(state=BrazeState(keep_bodies=False, fast=True)).start()
    try:
        members = {f"user-{i:08d}" for i in range(args.members)}
        mixpanel = CohortWebhookSync(receiver.url + "/", 7, "Everyone", auth=(USER, PASSWORD),
                                     members=members)
        began = time.perf_counter()
        full = mixpanel.sync(now=0)
        assert full.ok, full.error
        print(f"cohort of {args.members:,} members: Mixpanel's full export, {full.messages:,} "
              f"messages, stored by the receiver in {time.perf_counter() - began:.1f} s")
        first = one_run(work, 1, braze, None)
        show("  first run (every member's set)", first)
        half = args.changes // 2
        left = set(sorted(members)[:half])
        mixpanel.members = (members - left) | {f"new-{i:08d}" for i in range(half)}
        began = time.perf_counter()
        diff = mixpanel.sync(now=1800)
        assert diff.ok, diff.error
        print(f"30 minutes on, a diff of {args.changes:,} changes ({half:,} left, {half:,} "
              f"joined): {diff.messages} messages, stored in {time.perf_counter() - began:.1f} s")
        second = one_run(work, 2, braze, first["state"])
        show("  the diff's run", second)
        assert second["objects"] == args.changes, second["objects"]
        # the export is deleted now (the state this run started from covered it): the next
        # diff's run reads only the diffs, as every run does from then on
        members = mixpanel.members
        left = set(sorted(members)[:half])
        mixpanel.members = (members - left) | {f"newer-{i:08d}" for i in range(half)}
        assert mixpanel.sync(now=3600).ok
        third = one_run(work, 3, braze, second["state"])
        show("  the next diff's run (the export no longer in the spool)", third)
        assert third["objects"] == args.changes, third["objects"]
        queries = args.members // PAGE_SIZE + 2   # /engage pages and the cohorts list
        print(f"Query API source, same cohort: every run pages every member, {queries:,} "
              f"queries at {QUERIES_PER_HOUR} an hour: {queries / QUERIES_PER_HOUR:.1f} h of "
              "budget per run, the diff's too")
    finally:
        braze.stop()
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
