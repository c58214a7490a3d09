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
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
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


def per_event(label: str, count: int, work: Callable[[], Any],
              note: Callable[[], str] = str) -> float:
    """Run `work` (which handles `count` events), print its CPU microseconds per event and
    `note()` (asked afterwards)."""
    started = time.process_time()
    work()
    micros = (time.process_time() - started) / count * 1e6
    text = note()
    print(f"  {label:<46} {micros:>7.2f} µs{('   ' + text) if text else ''}", flush=True)
    return micros


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
          f"{measured.cpu_seconds / total * 1e6:>7.2f} µs", flush=True)

    lines_path = work / "tap-output.jsonl"
    with lines_path.open("wb") as out:
        subprocess.run(tap, stdout=out, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    lines = [line for line in lines_path.read_bytes().split(b"\n")
             if line.startswith(b'{"type":"RECORD"')]
    count = len(lines)
    decode = msgspec.json.Decoder().decode
    messages: list[Any] = []
    per_event("target: Singer line parse (msgspec)", count,
              lambda: messages.extend(decode(line) for line in lines))
    mapping = BrazeCurrentsMapping()
    events: list[dict] = []

    def map_all() -> None:
        for message in messages:
            with contextlib.suppress(SkippedByRule):
                events.append(mapping.map(message["stream"], message["record"]))

    per_event("target: Mixpanel event mapping", count, map_all,
              lambda: f"{count - len(events):,} skipped by rule")
    per_event("target: Mixpanel's rules (check_event)", len(events),
              lambda: [check_event(e["event"], e["properties"]) for e in events])
    encode = msgspec.json.Encoder(decimal_format="number").encode
    encoded: list[bytes] = []
    per_event("target: JSON encoding of the event", len(events),
              lambda: encoded.extend(encode(e) for e in events))
    bodies: list[bytes] = []
    per_event("target: request body (JSON array)", len(encoded),
              lambda: bodies.extend(json_array(encoded[i:i + BATCH])
                                    for i in range(0, len(encoded), BATCH)))
    raw = sum(len(b) for b in bodies)
    print(f"  {'(uncompressed body)':<46} {raw / len(encoded):>7.0f} bytes/event")
    for level in range(4):
        sizes: list[int] = []
        per_event(f"target: gzip level {level} (ISA-L)", len(encoded),
                  lambda level=level, sizes=sizes: sizes.extend(
                      len(igzip.compress(b, compresslevel=level)) for b in bodies),
                  lambda sizes=sizes: f"{sum(sizes) / len(encoded):.0f} bytes/event, "
                                      f"{raw / max(sum(sizes), 1):.1f}x smaller")
    sizes = []
    per_event("reference: zlib gzip level 6 (Python's default)", len(encoded),
              lambda: sizes.extend(len(zlib.compress(b, 6)) for b in bodies),
              lambda: f"{sum(sizes) / len(encoded):.0f} bytes/event")


if __name__ == "__main__":
    main()
