"""Benchmark: Singer messages on stdin -> target -> a local Mixpanel-compatible server.

    python bench/target_throughput.py                # 1,000,000 events
    python bench/target_throughput.py --events 200000

The server (testkit/mixpanel_server.py --fast) answers at once and only counts. Prints events/s,
CPU seconds and peak memory of target-mixpanel beside a plain singer-sdk target (default
record validation, one request at a time), and the target's peak memory at two input sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT_DIR, measure, start_mixpanel_server
from bench.tap_throughput import make_export
from testkit.mixpanel_server import Credentials


def singer_input(work: Path, events: int) -> tuple[Path, int]:
    """Tap output for about `events` events, written once to a file."""
    path = work / f"singer-{events}.jsonl"
    export = work / "export"
    total = make_export(export, events)
    config = work / "tap.json"
    config.write_text(json.dumps({"storage_url": str(export)}))
    with path.open("wb") as out:
        subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config", str(config)],
                       stdout=out, stderr=subprocess.DEVNULL, check=True)
    return path, total


def start_server() -> tuple[subprocess.Popen, str]:
    """The server answering at once, counting only."""
    return start_mixpanel_server("--fast")


def run_target(module: str, config: dict, source: Path, work: Path):
    config_path = work / f"{module.replace('.', '_')}.json"
    config_path.write_text(json.dumps(config))
    with source.open("rb") as stdin:
        measured = measure([sys.executable, "-m", module, "--config", str(config_path)],
                           stdin=stdin)
    if measured.returncode != 0:
        raise SystemExit(f"{module} failed with {measured.returncode}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    work = OUT_DIR / "target"
    work.mkdir(parents=True, exist_ok=True)
    source, total = singer_input(work, args.events)
    server, url = start_server()
    token = Credentials().project_token
    ours = {"api_url": url, "project_token": token, "dead_letter_path": str(work / "dl.jsonl")}
    try:
        print(f"input: {total:,} RECORD messages ({source.stat().st_size / 1e6:,.0f} MB)")
        print(f"{'target':<58} {'records/s':>10} {'CPU s':>7} {'peak MB':>8}")
        rows = [("target-mixpanel", "target_mixpanel.target", ours)]
        if not args.no_baseline:
            rows.append(("plain singer-sdk target (validation, 1 request at a time)",
                         "bench.baseline_sdk_target", {"api_url": url, "project_token": token}))
        for label, module, config in rows:
            m = run_target(module, config, source, work)
            print(f"{label:<58} {total / m.seconds:>10,.0f} {m.cpu_seconds:>7.1f} "
                  f"{m.peak_mb:>8.0f}")
            time.sleep(0.2)
        if not args.no_memory:
            for events in (100_000, 1_000_000):
                path, size = singer_input(work, events)
                m = run_target("target_mixpanel.target", ours, path, work)
                print(f"peak memory, {size:>9,} records: {m.peak_mb:.0f} MB "
                      f"({size / m.seconds:,.0f} records/s)")
                path.unlink()
    finally:
        server.terminate()
        source.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
