"""Benchmark: the whole pipeline under `meltano run`, local export -> local Mixpanel-compatible
server that answers at once (testkit/mixpanel_server.py --fast).

    python bench/pipeline_throughput.py                  # 1,000,000 events, every row
    python bench/pipeline_throughput.py --events 200000 --no-baseline

Rows: this project's pair with RECORD messages (the default), the same pair in BATCH mode
(`batch_config` set: the tap writes JSON Lines files, Meltano relays one BATCH line per file),
and a plain singer-sdk tap and target pair (bench/baseline_sdk_*.py) run by the same Meltano
as custom plugins. Prints events/s end to end (events in the export divided by the wall time
of `meltano run`), CPU seconds of the whole process tree and its peak memory (PSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import OUT_DIR, measure  # noqa: E402
from bench.tap_throughput import make_export  # noqa: E402
from bench.target_throughput import start_server  # noqa: E402
from testkit.mixpanel_server import Credentials  # noqa: E402

MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
PROD_BATCH_CONFIG = next(
    e for e in yaml.safe_load((ROOT / "meltano.yml").read_text())["environments"]
    if e["name"] == "prod")["config"]["plugins"]["extractors"][0]["config"]["batch_config"]


def baseline_project(work: Path, export: Path, url: str) -> Path:
    """A Meltano project whose plugins are the plain singer-sdk tap and target."""
    project = work / "plain-sdk-project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    executables = {}
    for name, module in (("tap-plain-sdk", "bench.baseline_sdk_tap"),
                         ("target-plain-sdk", "bench.baseline_sdk_target")):
        script = project / name
        script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" '
                          f'-m {module} "$@"\n')
        script.chmod(0o755)
        executables[name] = str(script)
    spec = {
        "version": 1, "default_environment": "bench", "project_id": "plain-sdk-bench",
        "send_anonymous_usage_stats": False, "environments": [{"name": "bench"}],
        "plugins": {
            "extractors": [{"name": "tap-plain-sdk", "namespace": "tap_plain_sdk",
                            "executable": executables["tap-plain-sdk"],
                            "capabilities": ["catalog", "discover", "state"],
                            "settings": [{"name": "folder"}],
                            "config": {"folder": str(export)}}],
            "loaders": [{"name": "target-plain-sdk", "namespace": "target_plain_sdk",
                         "executable": executables["target-plain-sdk"],
                         "settings": [{"name": "api_url"},
                                      {"name": "project_token", "sensitive": True}],
                         "config": {"api_url": url,
                                    "project_token": Credentials().project_token}}]}}
    (project / "meltano.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return project


def run(label: str, total: int, cwd: Path, env: dict[str, str], *plugins: str) -> None:
    os.chdir(cwd)
    m = measure([str(MELTANO), "run", *plugins], env=env)
    if m.returncode != 0:
        raise SystemExit(f"{label}: meltano run failed with {m.returncode}")
    print(f"{label:<58} {total / m.seconds:>9,.0f} {m.seconds:>7.1f} {m.cpu_seconds:>7.1f} "
          f"{m.peak_mb:>8.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    work = OUT_DIR / "pipeline"
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export"
    total = make_export(export, args.events)
    server, url = start_server()
    base = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    ours = {**base, "TAP_BRAZE_CURRENTS_STORAGE_URL": str(export),
            "TARGET_MIXPANEL_DRY_RUN": "false", "TARGET_MIXPANEL_API_URL": url,
            "TARGET_MIXPANEL_PROJECT_TOKEN": Credentials().project_token,
            "TARGET_MIXPANEL_DEAD_LETTER_PATH": str(work / "dead-letters.jsonl")}
    batches = work / "batches"
    ours["TARGET_MIXPANEL_BATCH_ROOTS"] = json.dumps([str(batches)])
    # as the prod environment of meltano.yml has it, in a folder of the benchmark's own
    batch_config = {**PROD_BATCH_CONFIG, "storage": {"root": batches.as_uri()}}
    print(f"export: {total:,} events; meltano run into a server that answers at once")
    print(f"{'pipeline':<58} {'events/s':>9} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}")
    try:
        for label, extra in (("tap-braze-currents | target-mixpanel (RECORD messages, dev)", {}),
                             ("tap-braze-currents | target-mixpanel (BATCH mode, prod)",
                              {"TAP_BRAZE_CURRENTS_BATCH_CONFIG": json.dumps(batch_config)})):
            shutil.rmtree(batches, ignore_errors=True)
            database = work / "meltano.db"
            database.unlink(missing_ok=True)
            run(label, total, ROOT,
                {**ours, **extra, "MELTANO_DATABASE_URI": f"sqlite:///{database}"},
                "tap-braze-currents", "target-mixpanel")
        if not args.no_baseline:
            project = baseline_project(work, export, url)
            run("plain singer-sdk tap | plain singer-sdk target", total, project,
                {**base, "MELTANO_DATABASE_URI": f"sqlite:///{project}/meltano.db"},
                "tap-plain-sdk", "target-plain-sdk")
    finally:
        server.terminate()
        shutil.rmtree(batches, ignore_errors=True)


if __name__ == "__main__":
    main()
