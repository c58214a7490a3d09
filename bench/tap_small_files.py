"""Benchmark: the tap on a production-shaped export (many small files), beside a plain SDK tap.

    python bench/tap_small_files.py                      # 3/6/12/24 hours, baseline at 12 h
    python bench/tap_small_files.py --hours 3 6 --baseline-hours 6
    python bench/tap_small_files.py --hours 24 168 --no-baseline   # a day beside a week

The shape of a real Currents bucket (../shared/docs/currents-format.md): the 58 event types of
Braze's own Mixpanel export, a file per type about every 5 minutes (12 files a type an hour),
~15 events a file, deflate. One run from empty state with `lookback_hours: 24` and `start_date`
at the first hour, every stream selected, stdout to a file. Prints wall seconds, files/s,
records/s, peak memory, the STATE lines' share of the bytes printed and the ratio to the plain
singer-sdk tap (bench/baseline_sdk_tap.py: record by record, default writer and conformance).
The tap runs on one core (taskset), as the floors ask.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT_DIR, measure
from tap_braze_currents.demo_export import write_demo_export

EVENT_NAMES = Path(__file__).resolve().parent.parent / "target_mixpanel" / "braze_event_names.json"
FILES_PER_HOUR = 12
EVENTS_PER_FILE = 15
FIRST_HOUR = "2025-04-01-00"


def exported_types() -> list[str]:
    """The 58 event types Braze's own Mixpanel export sends (the default selection)."""
    table = json.loads(EVENT_NAMES.read_text())
    return sorted(t for t, entry in table.items() if entry["in_braze_mixpanel_export"])


def make_export(folder: Path, hours: int) -> tuple[int, int]:
    """`hours` hours of the production shape: one generated hour copied into the later ones."""
    if folder.exists():
        shutil.rmtree(folder)
    export = write_demo_export(str(folder), event_types=exported_types(), hours=1,
                               integrations=1, files_per_hour=FILES_PER_HOUR,
                               events_per_file=EVENTS_PER_FILE, codecs=("deflate",))
    base = sorted(folder.rglob("*.avro"))
    for hour in range(1, hours):
        for path in base:
            hour_folder = f"date=2025-04-{1 + hour // 24:02d}-{hour % 24:02d}"
            target = Path(str(path).replace(f"date={FIRST_HOUR}", hour_folder))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return len(base) * hours, export.total * hours


def state_share(output: Path) -> tuple[int, int, int]:
    """(STATE lines, STATE bytes, all bytes) of what a run printed."""
    lines = state_bytes = total = 0
    with output.open("rb") as handle:
        for line in handle:
            total += len(line)
            if line.startswith(b'{"type":"STATE"') or line.startswith(b'{"type": "STATE"'):
                lines += 1
                state_bytes += len(line)
    return lines, state_bytes, total


def run(work: Path, module: str, config: dict, label: str) -> tuple[float, float, Path, float]:
    """Run one tap to its end, stdout to a file: (seconds, peak MB, output path, CPU s)."""
    config_path = work / f"{label}.json"
    config_path.write_text(json.dumps(config))
    output = work / f"{label}.out"
    with output.open("wb") as stdout:
        measured = measure([sys.executable, "-m", module, "--config", str(config_path)],
                           stdout=stdout, one_core=True)
    if measured.returncode != 0:
        raise SystemExit(f"{module} failed with {measured.returncode}")
    return measured.seconds, measured.peak_mb, output, measured.cpu_seconds


@dataclass
class RemoteRun:
    """A run from moto S3 behind the latency proxy, with the CPU time of each process."""

    seconds: float
    peak_mb: float
    requests: int
    state_share: float
    tap_cpu: float
    server_cpu: float  # moto's S3 server
    proxy_cpu: float   # the proxy's threads (in this process, idle otherwise)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def remote_run(work: Path, export: Path, latency: float, extra: dict) -> RemoteRun:
    """The export in moto's S3 server behind the fault proxy answering every request
    `latency` seconds late; the tap runs on one core, the server and proxy on any."""
    import fsspec  # noqa: PLC0415

    from testkit.services import start_s3  # noqa: PLC0415 - test servers, as bench/common does
    from testkit.storage_fault_proxy import StorageFaultProxy  # noqa: PLC0415

    service = start_s3()
    try:
        fs = fsspec.filesystem("s3", **service.storage_options)
        fs.mkdir("currents")
        fs.put(str(export) + "/", "currents/export/", recursive=True)
        proxy = StorageFaultProxy(service.endpoint, {"slow": 1.0},
                                  slow_seconds=latency).start()
        try:
            options = {**service.storage_options, "endpoint_url": proxy.url}
            config = {"storage_url": "s3://currents/export", "storage_options": options,
                      "lookback_hours": 24, "start_date": "2025-04-01T00:00:00Z", **extra}
            server_before, own_before = _process_cpu(service.process.pid), _own_cpu()
            seconds, peak, output, tap_cpu = run(work, "tap_braze_currents.tap", config,
                                                 "remote")
            server_cpu = _process_cpu(service.process.pid) - server_before
            _, state_bytes, total = state_share(output)
            return RemoteRun(seconds, peak, proxy.requests, state_bytes / total, tap_cpu,
                             server_cpu, _own_cpu() - own_before)
        finally:
            proxy.stop()
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, nargs="+", default=[3, 6, 12, 24])
    parser.add_argument("--baseline-hours", type=int, nargs="*", default=[12],
                        help="export sizes the plain SDK tap also reads")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--lookback-hours", type=int, default=24)
    parser.add_argument("--extra-config", default="{}", help="JSON merged into the tap's config")
    parser.add_argument("--remote", type=int, nargs="*", default=[],
                        help="export sizes also read from moto S3 behind a latency proxy")
    parser.add_argument("--latency", type=float, default=0.030,
                        help="seconds the proxy holds back every answer")
    args = parser.parse_args()
    work = OUT_DIR / "tap_small_files"
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export"
    header = (f"{'hours':>5} {'files':>7} {'events':>8} {'tap s':>7} {'CPU s':>6} {'files/s':>8} "
              f"{'records/s':>10} {'peak MB':>8} {'STATEs':>7} {'STATE share':>12} "
              f"{'plain SDK s':>12} {'speed-up':>9}")
    print(f"{len(exported_types())} event types, {FILES_PER_HOUR} files/type/hour, "
          f"{EVENTS_PER_FILE} events/file, deflate, lookback_hours {args.lookback_hours}")
    print(header)
    per_file = []
    for hours in args.hours:
        files, events = make_export(export, hours)
        config = {"storage_url": str(export), "lookback_hours": args.lookback_hours,
                  "start_date": "2025-04-01T00:00:00Z", **json.loads(args.extra_config)}
        seconds, peak, output, cpu = run(work, "tap_braze_currents.tap", config, "tap")
        lines, state_bytes, total = state_share(output)
        baseline = ""
        if not args.no_baseline and hours in args.baseline_hours:
            plain, _, _, _ = run(work, "bench.baseline_sdk_tap", {"folder": str(export)}, "plain")
            baseline = f"{plain:>12.1f} {plain / seconds:>8.1f}x"
        per_file.append((hours, files, cpu))
        print(f"{hours:>5} {files:>7,} {events:>8,} {seconds:>7.1f} {cpu:>6.1f} "
              f"{files / seconds:>8,.0f} "
              f"{events / seconds:>10,.0f} {peak:>8.0f} {lines:>7,} "
              f"{state_bytes / total:>11.3%} {baseline}", flush=True)
        if hours in args.remote:
            remote = remote_run(work, export, args.latency, json.loads(args.extra_config))
            print(f"      same export in moto S3, every request {args.latency * 1000:.0f} ms "
                  f"late: {remote.seconds:.1f} s ({files / remote.seconds:,.0f} files/s, "
                  f"{remote.requests:,} requests, peak {remote.peak_mb:.0f} MB, STATE share "
                  f"{remote.state_share:.3%}), {remote.seconds / seconds:.2f}x the local time",
                  flush=True)
            per_request = 1000 / remote.requests
            print(f"      CPU s: tap {remote.tap_cpu:.1f} (local {cpu:.1f}), moto "
                  f"{remote.server_cpu:.1f}, proxy {remote.proxy_cpu:.1f}; per request: tap "
                  f"{(remote.tap_cpu - cpu) * per_request:.2f} ms more than local, moto "
                  f"{remote.server_cpu * per_request:.2f} ms, proxy "
                  f"{remote.proxy_cpu * per_request:.2f} ms", flush=True)
    # Marginal cost in CPU time (wall time on a shared machine wanders): what the files
    # between two sizes cost; start-up (~1 s) drops out.
    for (h1, f1, s1), (h2, f2, s2) in itertools.pairwise(per_file):
        print(f"{h1} h -> {h2} h: {(s2 - s1) / (f2 - f1) * 1e6:,.0f} CPU µs per added file")
    shutil.rmtree(export, ignore_errors=True)
    for leftover in work.glob("*.out"):
        leftover.unlink()


if __name__ == "__main__":
    main()
