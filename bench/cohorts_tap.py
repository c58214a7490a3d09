"""Benchmark: tap-mixpanel-cohorts' own cost per member, beside the obvious set-based tap.

    python bench/cohorts_tap.py                       # cohorts of 10,000 and 2,000,000 members
    python bench/cohorts_tap.py --members 10000 --no-baseline
    python bench/cohorts_tap.py --stream cohort_membership_changes   # the adds/removes stream

Against the Query API-compatible server answering at once (testkit/mixpanel_query_server.py,
members generated, no object per member there): a first run (every member's set), then a run
after 1,000 members left and 1,000 joined, then a full resync (`full_resync_hours: 0`: every
member's set again). Only `--stream` is selected (default `user_cohorts`, what target-braze
reads). Prints CPU µs per member (whole tap process: paging, decoding, snapshot, diff, Singer
output to a file), wall seconds, peak memory (PSS) and records; for a full resync also how long
Braze takes to accept that many objects at its default rate limit (3,000 requests per 3 s, 75
objects a request). The issue's claim: a 2,000,000-member cohort diffed in under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, OUT_DIR, Measured, measure
from testkit.mixpanel_query_server import QueryState
from testkit.services import free_port, wait_for_port

CHANGED = 1000  # members that leave (the first) and join (after the last) before the 2nd run
BRAZE_OBJECTS_PER_SECOND = 3000 / 3 * 75  # /users/track's default limit, full requests


def start_server(members: int, first: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "testkit.mixpanel_query_server", "--port",
                                str(port), "--members", str(members), "--first", str(first)],
                               cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    wait_for_port(port, process, "Query API-compatible server")
    return process, f"http://127.0.0.1:{port}"


def last_state(path: Path) -> dict | None:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1_000_000))
        lines = [json.loads(x) for x in handle.read().splitlines()[1:] if x.startswith(b"{")]
    states = [m["value"] for m in lines if m.get("type") == "STATE"]
    return states[-1] if states else None


def run(module: str, config: dict, work: Path, label: str, state: dict | None = None,
        catalog: Path | None = None) -> tuple[Measured, Path]:
    config_path = work / f"{label}-config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", module, "--config", str(config_path)]
    if state:
        state_path = work / f"{label}-state.json"
        state_path.write_text(json.dumps(state))
        command += ["--state", str(state_path)]
    if catalog:
        command += ["--catalog", str(catalog)]
    out = work / f"{label}.singer"
    with open(out, "wb") as handle:
        measured = measure(command, stdout=handle, cwd=BENCH_DIR.parent)
    if measured.returncode != 0:
        raise SystemExit(f"{module} failed with {measured.returncode}")
    return measured, out


def stream_catalog(work: Path, config: dict, stream: str) -> Path:
    """The tap's catalog with only `stream` selected."""
    config_path = work / "discover-config.json"
    config_path.write_text(json.dumps(config))
    found = subprocess.run([sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config",
                            str(config_path), "--discover"], capture_output=True, text=True,
                           check=True, cwd=BENCH_DIR.parent)
    catalog = json.loads(found.stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] == stream
    path = work / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def bench(members: int, work: Path, baseline: bool, stream: str) -> None:
    creds = QueryState()
    rows = [("tap-mixpanel-cohorts", "tap_mixpanel_cohorts.tap")]
    if baseline:
        rows.append(("plain singer-sdk tap (set + JSON snapshot)", "bench.baseline_cohorts_tap"))
    for label, module in rows:
        snapshots = work / f"snapshots-{module}"
        shutil.rmtree(snapshots, ignore_errors=True)
        state = None
        steps = [("first run", 0, {}), ("1,000 left, 1,000 joined", CHANGED, {})]
        if module == "tap_mixpanel_cohorts.tap" and stream == "user_cohorts":
            steps.append(("full resync", CHANGED, {"full_resync_hours": 0}))
        for step, first, extra in steps:
            process, url = start_server(members, first)
            try:
                if module == "tap_mixpanel_cohorts.tap":
                    config = {"api_url": url, "project_id": creds.project_id,
                              "service_account_username": creds.service_account[0],
                              "service_account_secret": creds.service_account[1],
                              "snapshot_url": str(snapshots),
                              "max_queries_per_hour": 1_000_000,
                              "max_concurrent_queries": 5, **extra}
                    catalog = stream_catalog(work, config, stream)
                else:
                    config = {"api_url": url, "project_id": creds.project_id,
                              "username": creds.service_account[0],
                              "secret": creds.service_account[1],
                              "snapshot_folder": str(snapshots)}
                    catalog = None
                measured, out = run(module, config, work, f"{module}-{step[:5]}", state, catalog)
                state = last_state(out)
                with open(out, "rb") as handle:
                    records = sum(1 for line in handle if b'"RECORD"' in line[:30])
            finally:
                process.terminate()
                process.wait()
            out.unlink()
            braze = f"  (Braze at its default limit: {records / BRAZE_OBJECTS_PER_SECOND:.0f} s)" \
                if extra else ""
            print(f"{members:>10,} {label:<44} {step:<26} "
                  f"{measured.cpu_seconds * 1e6 / members:>8.1f} {measured.seconds:>8.1f} "
                  f"{measured.peak_mb:>8.0f} {records:>10,}{braze}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, action="append",
                        help="cohort size (repeatable); default 10,000 and 2,000,000")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--stream", default="user_cohorts",
                        choices=["user_cohorts", "cohort_membership_changes"])
    args = parser.parse_args()
    work = OUT_DIR / "cohorts"
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'members':>10} {'tap':<44} {'run':<26} {'CPU µs/m':>8} {'wall s':>8} "
          f"{'peak MB':>8} {'records':>10}")
    for members in args.members or [10_000, 2_000_000]:
        bench(members, work, not args.no_baseline, args.stream)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
