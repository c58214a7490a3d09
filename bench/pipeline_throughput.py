"""Benchmark: the whole pipeline under `meltano run`, local export -> local Mixpanel-compatible
server that answers at once (tests/mixpanel_server.py --fast).

    python bench/pipeline_throughput.py --events 1000000

Prints events/s end to end (every event the tap read, divided by the wall time of
`meltano run`), CPU seconds of the whole process tree and its peak memory (PSS).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import OUT_DIR, measure  # noqa: E402
from bench.tap_throughput import make_export  # noqa: E402
from bench.target_throughput import start_server  # noqa: E402
from tests.mixpanel_server import Credentials  # noqa: E402

MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    work = OUT_DIR / "pipeline"
    work.mkdir(parents=True, exist_ok=True)
    total = make_export(work / "export", args.events)
    server, url = start_server()
    env = {"MELTANO_DATABASE_URI": f"sqlite:///{work}/meltano.db",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "TAP_BRAZE_CURRENTS_STORAGE_URL": str(work / "export"),
           "TARGET_MIXPANEL_DRY_RUN": "false", "TARGET_MIXPANEL_API_URL": url,
           "TARGET_MIXPANEL_PROJECT_TOKEN": Credentials().project_token,
           "TARGET_MIXPANEL_DEAD_LETTER_PATH": str(work / "dead-letters.jsonl")}
    (work / "meltano.db").unlink(missing_ok=True)
    try:
        os.chdir(ROOT)
        m = measure([str(MELTANO), "run", "tap-braze-currents", "target-mixpanel"], env=env)
        if m.returncode != 0:
            raise SystemExit(f"meltano run failed with {m.returncode}")
        print(f"meltano run tap-braze-currents target-mixpanel: {total:,} events in "
              f"{m.seconds:.1f} s = {total / m.seconds:,.0f} events/s, "
              f"{m.cpu_seconds:.1f} CPU s, peak {m.peak_mb:.0f} MB")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
