"""Benchmark: local Currents Avro -> Singer messages on stdout, this tap beside a plain SDK tap.

    python bench/tap_throughput.py                 # 1,000,000 events, then the memory check
    python bench/tap_throughput.py --events 200000 --no-memory

Prints records/s (one core, pinned with taskset), CPU seconds and peak memory for each, and the
tap's peak memory for a 100 thousand and a 5 million event export.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT_DIR, measure
from tap_braze_currents.demo_export import write_demo_export

# A mix of busy Braze event types, as a real export has them.
MIX = ["users.messages.email.Send", "users.messages.email.Delivery", "users.messages.email.Open",
       "users.messages.pushnotification.Send", "users.behaviors.CustomEvent",
       "users.behaviors.app.SessionStart", "users.behaviors.Purchase",
       "users.messages.inappmessage.Impression"]
BASE_EVENTS_PER_FILE = 12_500


def make_export(folder: Path, events: int) -> int:
    """An export of about `events` events: one generated hour, copied into later hours."""
    if folder.exists():
        shutil.rmtree(folder)
    write_demo_export(str(folder), event_types=MIX, hours=1, integrations=1,
                      events_per_file=BASE_EVENTS_PER_FILE)
    per_hour = len(MIX) * BASE_EVENTS_PER_FILE
    base = sorted(folder.rglob("*.avro"))
    hours = max(1, round(events / per_hour))
    for hour in range(1, hours):
        for path in base:
            hour_folder = f"date=2025-04-{1 + hour // 24:02d}-{hour % 24:02d}"
            target = Path(str(path).replace("date=2025-04-01-00", hour_folder))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return hours * per_hour


def run_tap(folder: Path, work: Path, module: str, config: dict) -> tuple[float, object]:
    config_path = work / f"{module.replace('.', '_')}.json"
    config_path.write_text(json.dumps(config))
    measured = measure([sys.executable, "-m", module, "--config", str(config_path)],
                       one_core=True)
    if measured.returncode != 0:
        raise SystemExit(f"{module} failed with {measured.returncode}")
    return measured.seconds, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the 100k/5M memory check")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    work = OUT_DIR / "tap"
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export"
    total = make_export(export, args.events)
    print(f"export: {total:,} events of {len(MIX)} event types, "
          f"{sum(1 for _ in export.rglob('*.avro'))} files")
    rows = [("tap-braze-currents", "tap_braze_currents.tap", {"storage_url": str(export)})]
    if not args.no_baseline:
        rows.append(("plain singer-sdk tap (default writer + conformance)",
                     "bench.baseline_sdk_tap", {"folder": str(export)}))
    print(f"{'tap':<55} {'records/s':>11} {'CPU s':>7} {'peak MB':>8}")
    for label, module, config in rows:
        _, m = run_tap(export, work, module, config)
        print(f"{label:<55} {total / m.seconds:>11,.0f} {m.cpu_seconds:>7.1f} {m.peak_mb:>8.0f}")
    if not args.no_memory:
        for events in (100_000, 5_000_000):
            size = make_export(export, events)
            _, m = run_tap(export, work, "tap_braze_currents.tap", {"storage_url": str(export)})
            print(f"peak memory, {size:>9,} events: {m.peak_mb:.0f} MB "
                  f"({size / m.seconds:,.0f} records/s)")
    shutil.rmtree(export, ignore_errors=True)


if __name__ == "__main__":
    main()
