"""mixpanel-cohort-receiver under a 2,000,000-member cohort's first full sync.

    python bench/cohort_receiver.py                  # 2,000 messages of 1,000 members
    python bench/cohort_receiver.py --members 200000 # a quicker look

The receiver runs pinned to one core (taskset), its spool a local folder; Mixpanel's side posts
the `members` pages (testkit/mixpanel_webhook_sender.py builds the bodies) from `--senders`
connections while another process reads the spool over and over, as the tap would. Printed:
the wall time to store everything, each answer's latency (p50/p99/max), the receiver's CPU and
peak RSS; then a paced run at `--rate` messages a second for the RSS floor. Beside it, the
Query API's time for the same cohort at its documented budget (60 queries an hour, 1,000
members a query).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugin_support.webhook_spool import WebhookSpool  # noqa: E402
from testkit.mixpanel_webhook_sender import PAGE_SIZE, CohortWebhookSync  # noqa: E402
from testkit.services import free_port  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_receiver(spool: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "mixpanel_cohort_receiver.app", "--port", str(port),
               "--spool-url", str(spool), "--username", USER, "--password", PASSWORD]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.05)


def spool_reader(spool: Path, cohort: str, stop: threading.Event, reads: list[int]) -> None:
    """Reads the cohort's messages again and again, as a tap run would."""
    while not stop.is_set():
        reads.append(sum(1 for _ in WebhookSpool(str(spool)).messages(cohort)))
        time.sleep(0.5)


def post_all(url: str, bodies: list[bytes], senders: int, rate: float | None,
             latencies: list[float]) -> None:
    pending = iter(bodies)
    lock = threading.Lock()
    start = time.perf_counter()
    sent = [0]

    def send() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    body = next(pending, None)
                    n = sent[0]
                    sent[0] += 1
                if body is None:
                    return
                if rate:
                    wait = start + n / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                began = time.perf_counter()
                answer = session.post(url, data=body, auth=(USER, PASSWORD), timeout=60)
                latencies.append(time.perf_counter() - began)
                assert answer.status_code == 200, answer.text

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


def run(members: int, senders: int, rate: float | None, label: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="receiver-bench-"))
    try:
        sync = CohortWebhookSync("", 7, "Everyone")
        bodies = list(sync.bodies("members", [f"user-{i:08d}" for i in range(members)]))
        process, url = start_receiver(work / "spool")
        stop, reads = threading.Event(), []
        reader = threading.Thread(target=spool_reader, args=(work / "spool", "7", stop, reads))
        reader.start()
        latencies: list[float] = []
        cpu_before = cpu_seconds(process.pid)
        began = time.perf_counter()
        post_all(url, bodies, senders, rate, latencies)
        wall = time.perf_counter() - began
        cpu = cpu_seconds(process.pid) - cpu_before
        stop.set()
        reader.join()
        stored = json.loads(requests.get(f"{url}/health", timeout=5).text).get("stored")
        rss = peak_rss_mb(process.pid)
        process.terminate()
        process.wait()
        print(f"{label}: {len(bodies):,} messages ({members:,} members) stored in {wall:.1f} s "
              f"({len(bodies) / wall:.0f}/s); answers p50 {percentile(latencies, 0.5):.0f} ms, "
              f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies) * 1000:.0f} ms; "
              f"receiver CPU {cpu:.1f} s, peak RSS {rss:.0f} MB; stored {stored}; "
              f"spool read {len(reads)} times meanwhile")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=2_000_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    run(args.members, args.senders, None, "as fast as it answers")
    run(min(args.members, 200 * 30 * PAGE_SIZE), args.senders, args.rate,
        f"paced at {args.rate:.0f} messages/s")
    hours = args.members / PAGE_SIZE / 60
    print(f"Query API source, same cohort: {args.members // PAGE_SIZE:,} Engage queries at 60 "
          f"an hour: {hours:.1f} h of budget (every sync re-reads every member)")


if __name__ == "__main__":
    main()
