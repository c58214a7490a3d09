"""Benchmark: where each microsecond per event goes, stage by stage, on one core.

    python bench/hot_paths.py                 # 200,000 events
    python bench/hot_paths.py --events 50000

Stages, each timed alone in CPU time over the same events (the export bench/tap_throughput.py
makes; identified and unidentified Braze events of eight busy types):

- tap: Avro decoding and RECORD lines on stdout (the tap process, output to /dev/null);
- target, per event: Singer line parse (msgspec), Mixpanel event mapping, Mixpanel's rules
  (check_event), JSON encoding of the event, the request body (a JSON array of 2,000), and
  gzip of that body at each level ISA-L offers (0-3; `gzip_level`), with the bytes per event
  it leaves to send.

The HTTP request itself, the worker hand-off and the state bookkeeping are not in the stages;
`bench/target_throughput.py` measures the whole target.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from isal import igzip

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import OUT_DIR, measure  # noqa: E402
from bench.tap_throughput import make_export  # noqa: E402
from target_mixpanel.event_mapping import BrazeCurrentsMapping, SkippedByRule  # noqa: E402
from target_mixpanel.import_client import json_array  # noqa: E402
from target_mixpanel.mixpanel_rules import check_event  # noqa: E402

BATCH = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    work = OUT_DIR / "hot-paths"
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export"
    total = make_export(export, args.events)
    config = work / "tap.json"
    config.write_text(json.dumps({"storage_url": str(export)}))
    tap = [sys.executable, "-m", "tap_braze_currents.tap", "--config", str(config)]
    print(f"{total:,} events, CPU time per event:")
    measured = measure(tap, one_core=True)
    print(f"  {'tap: Avro decoding + RECORD lines (whole process)':<46} "
          f"{measured.cpu_seconds / total * 1e6:>7.2f} µs   start-up included", flush=True)

    lines_path = work / "tap-output.jsonl"
    with lines_path.open("wb") as out:
        subprocess.run(tap, stdout=out, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    lines = [line for line in lines_path.read_bytes().split(b"\n")
             if line.startswith(b'{"type":"RECORD"')]
    count = len(lines)
    gc.freeze()  # as the target's workers do (target_mixpanel/delivery.py)
    gc.set_threshold(100_000, 50, 100)
    stages = target_stages(lines)
    sent = stages.events
    for label, seconds in stages.seconds.items():
        if not label.startswith("gzip"):
            per = count if label in ("line parse", "mapping") else sent
            print(f"  target: {label:<38} {seconds / per * 1e6:>7.2f} µs", flush=True)
    print(f"  {'(skipped by rule in the mapping)':<46} {count - sent:>7,} events")
    print(f"  {'(uncompressed body)':<46} {stages.body_bytes / sent:>7.0f} bytes/event")
    for level, size in stages.gzip_bytes.items():
        name = f"gzip level {level} (ISA-L)" if level != "zlib-6" else "zlib level 6 (reference)"
        print(f"  target: {name:<38} {stages.seconds[f'gzip {level}'] / sent * 1e6:>7.2f} µs"
              f"   {size / sent:.0f} bytes/event, {stages.body_bytes / size:.1f}x smaller",
              flush=True)


@dataclass
class Stages:
    seconds: dict[str, float]      # CPU seconds per stage
    events: int                    # events mapped (not skipped by rule)
    body_bytes: int                # uncompressed request bodies
    gzip_bytes: dict[Any, int]     # compressed, per level


def target_stages(lines: list[bytes]) -> Stages:
    """CPU seconds per stage, processing the lines a request (2,000) at a time, as a worker."""
    decode = msgspec.json.Decoder().decode
    mapping = BrazeCurrentsMapping()
    encode = msgspec.json.Encoder(decimal_format="number").encode
    seconds: dict[str, float] = dict.fromkeys(
        ["line parse", "mapping", "Mixpanel's rules (check_event)", "JSON encoding",
         "request body (JSON array)", *[f"gzip {level}" for level in [*range(4), "zlib-6"]]],
        0.0)
    sizes: dict[Any, int] = dict.fromkeys([*range(4), "zlib-6"], 0)
    clock = time.process_time
    events_sent = body_bytes = 0
    for start in range(0, len(lines), BATCH):
        chunk = lines[start:start + BATCH]
        t0 = clock()
        messages = [decode(line) for line in chunk]
        t1 = clock()
        events = []
        for message in messages:
            with contextlib.suppress(SkippedByRule):
                events.append(mapping.map(message["stream"], message["record"]))
        t2 = clock()
        for event in events:
            check_event(event["event"], event["properties"])
        t3 = clock()
        encoded = [encode(event) for event in events]
        t4 = clock()
        body = json_array(encoded)
        t5 = clock()
        for key, time_spent in zip(list(seconds)[:5], (t1 - t0, t2 - t1, t3 - t2, t4 - t3,
                                                      t5 - t4), strict=True):
            seconds[key] += time_spent
        for level in range(4):
            t6 = clock()
            sizes[level] += len(igzip.compress(body, compresslevel=level))
            seconds[f"gzip {level}"] += clock() - t6
        t7 = clock()
        sizes["zlib-6"] += len(zlib.compress(body, 6))
        seconds["gzip zlib-6"] += clock() - t7
        events_sent += len(events)
        body_bytes += len(body)
    return Stages(seconds, events_sent, body_bytes, sizes)

if __name__ == "__main__":
    main()
