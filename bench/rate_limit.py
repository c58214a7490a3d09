"""Benchmark: how close target-mixpanel stays to a project's intake limit without tripping it.

    python bench/rate_limit.py                          # R = 5,000, 20,000, 30,000; 3 min each
    python bench/rate_limit.py --rates 30000 --seconds 60
    python bench/rate_limit.py --rates 20000 --seconds 60 --no-adaptive

For each R the Mixpanel-compatible server runs with a token bucket of R events/s (one second
of burst) and answers 429 above it, as Mixpanel does above its intake. The target gets R x
seconds Braze CustomEvent records on stdin (as fast as it reads them) with its default
settings, and must sustain at least 90% of R with under 2% of its requests answered 429.
Prints, per R: events/s accepted, the share of R, requests, 429s and their share.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import OUT_DIR, server_stats, start_mixpanel_server  # noqa: E402
from testkit.mixpanel_server import Credentials  # noqa: E402

STREAM = "users_behaviors_customevent"
FEEDER = r'''
import sys, time
n, stream = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
out.write(('{"type":"SCHEMA","stream":"%s","schema":{"type":"object","properties":{}},'
           '"key_properties":["id"]}\n' % stream).encode())
now = int(time.time()) - 3600
head = '{"type":"RECORD","stream":"%s","record":{"id":"evt-' % stream
for start in range(0, n, 10000):
    lines = [head + '%d","user_id":"b-%d","external_user_id":"user-%d","time":%d,'
             '"name":"Added to Cart","platform":"ios","app_id":"app-1",'
             '"properties":{"plan":"pro","n":%d},"event_type":"users.behaviors.CustomEvent"}}\n'
             % (i, i % 5000, i % 5000, now, i) for i in range(start, min(n, start + 10000))]
    out.write("".join(lines).encode())
out.write(b'{"type":"STATE","value":{"done":true}}\n')
'''


def run_rate(rate: int, seconds: float, work: Path, adaptive: bool = True) -> dict:
    """One run against a server limited to `rate` events/s; the measured outcome."""
    server, url = start_mixpanel_server("--fast", "--count-ids", "--rate-limit", str(rate))
    events = int(rate * seconds)
    config = work / "target.json"
    config.write_text(json.dumps({"api_url": url, "project_token": Credentials().project_token,
                                  "dead_letter_path": str(work / "dead-letters.jsonl"),
                                  "max_retry_seconds": 3600, "adaptive_sending": adaptive}))
    try:
        feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(events), STREAM],
                                  stdout=subprocess.PIPE)
        started = time.perf_counter()
        with (work / f"target-{rate}.log").open("wb") as log:  # its progress lines
            target = subprocess.run([sys.executable, "-m", "target_mixpanel.target",
                                     "--config", str(config)], stdin=feeder.stdout,
                                    stdout=subprocess.DEVNULL, stderr=log, check=False)
        elapsed = time.perf_counter() - started
        feeder.wait()
        if target.returncode != 0:
            raise SystemExit((work / f"target-{rate}.log").read_text()[-2000:])
        counts = server_stats(url)
    finally:
        server.terminate()
    requests = counts["requests"]
    throttled = counts["statuses"].get("429", 0)
    return {"rate": rate, "events": events, "seconds": elapsed,
            "accepted": counts["raw_events"], "unique": counts["unique_events"],
            "events_per_second": counts["raw_events"] / elapsed, "requests": requests,
            "throttled": throttled, "throttled_share": throttled / max(requests, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="5000,20000,30000")
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--no-adaptive", action="store_true",
                        help="with adaptive_sending: false (full speed, per-batch backoff)")
    args = parser.parse_args()
    work = OUT_DIR / "rate-limit"
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'limit R':>8} {'events':>10} {'seconds':>8} {'events/s':>9} {'of R':>6} "
          f"{'requests':>9} {'429s':>6} {'429 share':>9} {'missing':>8}")
    failed = False
    for rate in (int(r) for r in args.rates.split(",")):
        row = run_rate(rate, args.seconds, work, adaptive=not args.no_adaptive)
        share = row["events_per_second"] / rate
        failed |= share < 0.9 or row["throttled_share"] >= 0.02
        print(f"{rate:>8,} {row['events']:>10,} {row['seconds']:>8.1f} "
              f"{row['events_per_second']:>9,.0f} {share:>6.1%} {row['requests']:>9,} "
              f"{row['throttled']:>6,} {row['throttled_share']:>9.2%} "
              f"{row['events'] - row['unique']:>8,}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
