"""orchestrate/airflow/dags/meltano_runner.py: a stopped `meltano run` leaves nothing to resend.

The runner is what the project's Airflow tasks run (tests/pipelines/test_airflow_dags.py runs it
under Airflow's scheduler, in prod's BATCH mode); here it runs `meltano run` in RECORD mode (dev)
and gets the SIGTERM the task's on_kill sends while the tap is still reading (from S3 behind a
proxy that holds every answer back).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec

from tap_braze_currents.demo_export import write_demo_export
from testkit.mixpanel_server import MixpanelServer
from testkit.services import Service
from testkit.storage_fault_proxy import StorageFaultProxy
from tests.pipelines.test_meltano_pipeline import MELTANO, TYPES, meltano_env

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "orchestrate" / "airflow" / "dags" / "meltano_runner.py"


def test_a_stopped_run_stops_the_tap_first_and_leaves_nothing_to_resend(
        mixpanel: MixpanelServer, s3_server: Service, tmp_path: Path) -> None:
    url = "s3://runner-stop/export"
    fs, _ = fsspec.core.url_to_fs(url, **s3_server.storage_options)
    if not fs.exists("runner-stop"):
        fs.mkdir("runner-stop")
    export = write_demo_export(url, storage_options=s3_server.storage_options,
                               event_types=TYPES[:3], hours=4, events_per_file=100)
    identified = sum(len(export.ids[t]) - export.without_external_id[t] for t in TYPES[:3])
    # every storage answer held back: the tap is still reading when the stop comes
    proxy = StorageFaultProxy(s3_server.endpoint, {"slow": 1.0}, slow_seconds=0.3).start()
    env = {**meltano_env(tmp_path, mixpanel), "TAP_BRAZE_CURRENTS_STORAGE_URL": url,
           "TAP_BRAZE_CURRENTS_STORAGE_OPTIONS": json.dumps(
               {**s3_server.storage_options, "endpoint_url": proxy.url}),
           "TAP_BRAZE_CURRENTS_PREFETCH_FILES": "1"}
    command = [sys.executable, str(RUNNER), "--grace-seconds", "120",
               "--lock", str(tmp_path / "run.lock"), "--",
               str(MELTANO), "run", "tap-braze-currents", "target-mixpanel"]
    try:
        runner = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not mixpanel.state.raw_events:
            assert runner.poll() is None, runner.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the pipeline never reached the server"
            time.sleep(0.1)
        runner.send_signal(signal.SIGTERM)  # what the Airflow task's on_kill does
        output = runner.communicate(timeout=180)[0].decode(errors="replace")
        proxy.rates = {}
        # the tap was stopped (it ends after the file it reads, with a STATE); the target,
        # never signalled, delivered up to that STATE, and Meltano, never signalled, saved it
        assert "meltano_runner: SIGTERM to" in output, output[-3000:]
        signalled = output.split("meltano_runner: SIGTERM to", 1)[1].splitlines()[0]
        assert "tap-braze-currents" in signalled
        assert "meltano_runner: meltano exited with 0 after the stop" in output, output[-3000:]
        assert "target-mixpanel (pid" not in output
        assert mixpanel.state.raw_events < identified  # the stop ended the run early
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=300, check=False)
    finally:
        proxy.stop()
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert len(mixpanel.state.unique_events) == identified       # nothing lost
    assert mixpanel.state.raw_events == identified               # nothing sent twice
