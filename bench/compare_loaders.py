"""Benchmark: this project's pipeline beside the loaders people use today, on the same events.

    python bench/compare_loaders.py                     # 300,000 events; no faults, then 10% 429s
    python bench/compare_loaders.py --events 100000 --scenarios 429

Contestants, each against a fresh local Mixpanel-compatible server (testkit/mixpanel_server.py
--fast --count-ids, which counts every event and every distinct $insert_id):

- tap-braze-currents | target-mixpanel: reads the Avro export, maps, sends (default settings),
  the same with adaptive_sending off, and target-mixpanel alone on the tap's output (a file),
  which does the loaders' share of the work (plus the mapping);
- a plain singer-sdk tap and target pair (bench/baseline_sdk_*.py) over the same export;
- mixpanel-import (npm, pinned below) over the same events as Mixpanel JSON lines;
- mixpanel-utils (PyPI, pinned below) over the same events (it takes a list: read whole).

The Mixpanel JSON lines are what target-mixpanel's dry run writes for the export, so every
contestant delivers the same events; the loaders skip the Avro reading and the mapping. The two
packages are installed on first use under bench/out/compare/ (not into the project). Their API
hosts are fixed, so bench/loaders/ points them at the local server.

Per contestant and scenario it prints events/s (events delivered, unique at the server, over
the wall time: an event lost is no throughput), CPU seconds per million events expected (the
whole process tree), peak memory (PSS of the tree), events missing at the server (expected -
unique) and duplicates sent (raw - unique). Scenario `429`: the server answers 10% of
requests with 429 at random.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import OUT_DIR, measure, server_stats, start_mixpanel_server  # noqa: E402
from tap_braze_currents.demo_export import write_demo_export  # noqa: E402
from testkit.mixpanel_server import Credentials  # noqa: E402

MIXPANEL_IMPORT = "mixpanel-import@3.1.43"
MIXPANEL_UTILS = "mixpanel-utils==2.2.7"
TYPES = ["users.messages.email.Send", "users.messages.email.Open",
         "users.messages.pushnotification.Send", "users.behaviors.CustomEvent",
         "users.behaviors.app.SessionStart", "users.behaviors.Purchase"]
EVENTS_PER_FILE = 10_000
SCENARIOS = {"none": {}, "429": {"429": 0.1}}
TAP_OUTPUT = "tap-output.jsonl"


@dataclass
class Row:
    name: str
    scenario: str
    events_per_second: float
    cpu_per_million: float
    peak_mb: float
    missing: int
    duplicates: int
    exit_code: int


def install_loaders(work: Path) -> tuple[Path, Path]:
    """The two packages, installed once under `work`: (node_modules, Python site folder)."""
    node = work / "node"
    if not (node / "node_modules" / "mixpanel-import").exists():
        print(f"installing {MIXPANEL_IMPORT} (npm) ...", flush=True)
        node.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(node), "--no-audit", "--no-fund",
                        "--loglevel=error", MIXPANEL_IMPORT], check=True)
    site = work / "python"
    if not (site / "mixpanel_utils").exists():
        print(f"installing {MIXPANEL_UTILS} (pip) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target",
                        str(site), MIXPANEL_UTILS], check=True)
    return node / "node_modules", site


def make_events(work: Path, events: int) -> tuple[Path, Path, int]:
    """The export, and the same events as Mixpanel JSON lines (target-mixpanel's dry run)."""
    export = work / "export"
    shutil.rmtree(export, ignore_errors=True)
    hours = max(1, round(events / (len(TYPES) * EVENTS_PER_FILE)))
    write_demo_export(str(export), event_types=TYPES, hours=hours, integrations=1,
                      events_per_file=EVENTS_PER_FILE)
    dry = work / "dry-run"
    shutil.rmtree(dry, ignore_errors=True)
    tap_config = _write(work / "tap.json", {"storage_url": str(export)})
    target_config = _write(work / "dry-target.json", {
        "dry_run": True, "dry_run_path": str(dry), "project_token": "unused",
        "dead_letter_path": str(work / "dry-dead-letters.jsonl")})
    singer = work / TAP_OUTPUT  # the tap's output, also for the target-alone contestant
    with singer.open("wb") as out:
        subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config",
                        str(tap_config)], stdout=out, stderr=subprocess.DEVNULL, check=True,
                       cwd=ROOT)
    with singer.open("rb") as source:
        subprocess.run([sys.executable, "-m", "target_mixpanel.target", "--config",
                        str(target_config)], stdin=source, stderr=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, check=True, cwd=ROOT)
    lines = work / "events.ndjson"
    count = 0
    with lines.open("wb") as out:
        for body in sorted(dry.glob("batch-*.json")):
            for event in json.loads(body.read_bytes()):
                out.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
                count += 1
    return tap_config, lines, count


def _write(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def _plugin(module: str, config: Path) -> str:
    """The shell command running a plugin's Python module with its config."""
    return f"{shlex.quote(sys.executable)} -m {module} --config {shlex.quote(str(config))}"


def _pipe(tap_config: Path, target_config: Path, tap: str = "tap_braze_currents.tap",
          target: str = "target_mixpanel.target") -> str:
    """The shell pipe `tap | target`."""
    return f"{_plugin(tap, tap_config)} | {_plugin(target, target_config)}"


def contestants(work: Path, tap_config: Path, lines: Path, node_modules: Path, site: Path,
                url: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Name -> (shell command, extra environment), each sending to `url`."""
    credentials = Credentials()
    target = {"api_url": url, "project_token": credentials.project_token,
              "dead_letter_path": str(work / "dead-letters.jsonl")}
    ours = _write(work / "target.json", target)
    unpaced = _write(work / "target-unpaced.json", {**target, "adaptive_sending": False})
    plain_tap = _write(work / "plain-tap.json", {"folder": json.loads(
        tap_config.read_text())["storage_url"]})
    plain_target = _write(work / "plain-target.json", {
        "api_url": url, "project_token": credentials.project_token})
    return {
        "tap-braze-currents | target-mixpanel": (
            _pipe(tap_config, ours), {"PYTHONPATH": str(ROOT)}),
        "  the same, adaptive_sending: false": (
            _pipe(tap_config, unpaced), {"PYTHONPATH": str(ROOT)}),
        "  target-mixpanel alone (tap's output)": (
            f"{_plugin('target_mixpanel.target', ours)} < {shlex.quote(str(work / TAP_OUTPUT))}",
            {"PYTHONPATH": str(ROOT)}),
        "plain singer-sdk tap | target": (
            _pipe(plain_tap, plain_target, "bench.baseline_sdk_tap", "bench.baseline_sdk_target"),
            {"PYTHONPATH": str(ROOT)}),
        "mixpanel-import (npm)": (
            f"node {ROOT / 'bench/loaders/mixpanel_import.js'} {node_modules} {url} "
            f"{credentials.project_token} {lines}", {}),
        "mixpanel-utils (PyPI)": (
            f"{shlex.quote(sys.executable)} {ROOT / 'bench/loaders/mixpanel_utils_import.py'} "
            f"{url} {credentials.api_secret} {credentials.project_token} {lines}",
            {"PYTHONPATH": str(site)}),
    }


def run(name: str, scenario: str, expected: int, work: Path, tap_config: Path, lines: Path,
        node_modules: Path, site: Path) -> Row:
    server, url = start_mixpanel_server("--fast", "--count-ids", "--fault-rates",
                                        json.dumps(SCENARIOS[scenario]))
    try:
        command, env = contestants(work, tap_config, lines, node_modules, site, url)[name]
        label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        with (work / f"{label}-{scenario}.log").open("wb") as log:
            measured = measure(command, shell=True, env=env, stderr=log, stdout=log,
                               cwd=work)
        counts = server_stats(url)
    finally:
        server.terminate()
        server.wait()
    unique = counts["unique_events"]
    return Row(name, scenario, unique / measured.seconds,  # delivered events only
               measured.cpu_seconds / expected * 1e6, measured.peak_mb,
               expected - unique, counts["raw_events"] - unique, measured.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--scenarios", default="none,429")
    parser.add_argument("--only", help="comma-separated contestant names (default: all)")
    args = parser.parse_args()
    work = OUT_DIR / "compare"
    work.mkdir(parents=True, exist_ok=True)
    node_modules, site = install_loaders(work)
    tap_config, lines, expected = make_events(work, args.events)
    names = list(contestants(work, tap_config, lines, node_modules, site, "http://x"))
    if args.only:
        names = [n for n in names if any(o.strip() in n for o in args.only.split(","))]
    print(f"{expected:,} identified events; 2 CPUs; each contestant with its default settings")
    print(f"{'contestant':<38} {'429s':>5} {'events/s':>9} {'CPU s/M':>8} {'peak MB':>8} "
          f"{'missing':>8} {'dups':>7} {'exit':>4}")
    for scenario in args.scenarios.split(","):
        for name in names:
            row = run(name, scenario, expected, work, tap_config, lines, node_modules, site)
            print(f"{row.name:<38} {'10%' if scenario == '429' else '-':>5} "
                  f"{row.events_per_second:>9,.0f} {row.cpu_per_million:>8.1f} "
                  f"{row.peak_mb:>8.0f} {row.missing:>8,} {row.duplicates:>7,} "
                  f"{row.exit_code:>4}", flush=True)


if __name__ == "__main__":
    main()
