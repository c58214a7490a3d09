"""Benchmark: the STATE share of a steady hourly run, after the lookback window is full.

    python bench/tap_hourly_state.py [--types 58]

A first run reads 25 hours of the production shape (bench/tap_small_files.py), then an hourly
run reads the one new hour from the saved state, as a scheduled `meltano run` does every hour.
The state then holds the whole lookback window for every stream (its largest), while the run
prints one hour of records: the case where STATE lines weigh most. Prints, for the hourly run,
STATE lines, bytes of one STATE, the STATE share of all bytes printed and the seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT_DIR
from bench.tap_small_files import FIRST_HOUR, make_export, run, state_share

WINDOW_HOURS = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=None,
                        help="state_interval_seconds (default: the tap's)")
    args = parser.parse_args()
    work = OUT_DIR / "hourly-state"
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export"
    files, events = make_export(export, WINDOW_HOURS + 2)
    config = {"storage_url": str(export), "lookback_hours": WINDOW_HOURS,
              "start_date": f"{FIRST_HOUR[:10]}T00:00:00Z"}
    if args.interval is not None:
        config["state_interval_seconds"] = args.interval
    backfill = {**config, "end_date": "2025-04-02T01:00:00Z"}  # the first 25 hours
    _, _, output, _ = run(work, "tap_braze_currents.tap", backfill, "backfill")
    last = [line for line in output.read_bytes().splitlines()
            if line.startswith(b'{"type":"STATE"')]
    state_path = work / "state.json"
    state_path.write_text(json.dumps(json.loads(last[-1])["value"]))
    config_path = work / "hourly.json"
    config_path.write_text(json.dumps(config))
    hourly = work / "hourly.out"
    started = time.monotonic()
    with hourly.open("wb") as stdout:
        subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config",
                        str(config_path), "--state", str(state_path)], stdout=stdout,
                       stderr=subprocess.DEVNULL, check=True)
    seconds = time.monotonic() - started
    lines, state_bytes, total = state_share(hourly)
    records = sum(1 for line in hourly.open("rb") if line.startswith(b'{"type":"RECORD"'))
    print(f"export: {files:,} files, {events:,} events over {WINDOW_HOURS + 2} hours")
    print(f"hourly run: {records:,} records, {lines} STATE lines of "
          f"{state_bytes // max(lines, 1):,} bytes, STATE {100 * state_bytes / total:.2f}% of "
          f"{total:,} bytes printed, {seconds:.1f} s")


if __name__ == "__main__":
    main()
