"""Both taps stopped while blocked on a full pipe, as in a container (`PYTHONUNBUFFERED=1`).

There `sys.stdout.buffer` is the raw file: a write into a full pipe that a signal interrupts
returns a short count. Outcomes checked: every line printed parses, nothing follows the last
STATE, and a rerun from that STATE brings every record exactly once (the Currents tap) or
ends with Braze's view equal to Mixpanel's (the cohort tap, whose cohort cut short is sent
again whole).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

from plugin_support.clean_exit import unread_bytes
from tap_braze_currents.demo_export import write_demo_export
from testkit.mixpanel_query_server import MixpanelQueryServer
from tests.conftest import SAMPLE_TYPES, tap_command, write_json
from tests.tap_mixpanel_cohorts.test_query_api_runs import (
    CHANGES,
    Runner,
    apply,
    mixpanel_view,
    records,
    saved_cohorts,
    tap_config,
)
from tests.tap_mixpanel_cohorts.test_query_api_runs import tap_command as cohort_tap_command

UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}


def wait_until_pipe_is_full(pipe: IO[bytes], process: subprocess.Popen) -> None:
    """Until the writer is blocked: the pipe holds data and has stopped filling."""
    fd = pipe.fileno()
    last, steady = -1, 0
    deadline = time.monotonic() + 120
    while steady < 10:
        assert process.poll() is None, "the tap ended before its output filled the pipe"
        assert time.monotonic() < deadline, "the pipe never filled"
        now = unread_bytes(fd)
        steady = steady + 1 if now == last and now > 0 else 0
        last = now
        time.sleep(0.05)


def stopped_while_blocked(command: list[str], stderr_path: Path) -> tuple[int, list[dict]]:
    """Start `command`, let it fill its stdout pipe, SIGTERM it, then read all it printed."""
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                   env=UNBUFFERED)
    assert process.stdout is not None
    wait_until_pipe_is_full(process.stdout, process)
    process.send_signal(signal.SIGTERM)
    out = process.stdout.read()
    returncode = process.wait(timeout=60)
    lines = out.decode().split("\n")
    assert lines[-1] == "", "the output ends in the middle of a line"
    messages = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"line {number} does not parse: {line[:80]!r}...") from exc
    return returncode, messages


def test_currents_tap_stopped_on_a_full_pipe_writes_whole_lines_and_loses_nothing(
        tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=SAMPLE_TYPES[:2], hours=2,
                               events_per_file=20_000, integrations=1)
    config = {"storage_url": str(tmp_path / "export"), "state_interval_seconds": 0}
    returncode, messages = stopped_while_blocked(
        tap_command(write_json(tmp_path / "config.json", config)), tmp_path / "stderr.log")
    assert returncode == 0, (tmp_path / "stderr.log").read_text()[-2000:]
    assert messages[-1]["type"] == "STATE"  # nothing past the last state
    first_ids = [m["record"]["id"] for m in messages if m["type"] == "RECORD"]
    expected = {i for ids in export.ids.values() for i in ids}
    assert 0 < len(first_ids) < len(expected)  # it stopped early
    rerun = run_tap(config, messages[-1]["value"])
    assert rerun.returncode == 0, rerun.stderr
    got = Counter(first_ids) + Counter(rerun.ids)
    assert set(got) == expected
    assert sum(got.values()) == len(expected)  # every record once: none lost, none twice


def test_cohort_tap_stopped_on_a_full_pipe_writes_whole_lines_and_loses_nothing(
        tmp_path: Path) -> None:
    server = MixpanelQueryServer().start()
    try:
        state = server.state
        # long ids: messages above the pipe's atomic size, so a write can be cut short
        state.add_cohort(1, "A", [f"a{i}-" + "x" * 5000 for i in range(3000)])
        state.add_cohort(2, "B", [f"b{i}" for i in range(3000)])
        runner = Runner(tmp_path)
        files = runner.files(tap_config(server, tmp_path), None, [CHANGES])
        returncode, messages = stopped_while_blocked(cohort_tap_command(*files),
                                                     tmp_path / "stderr.log")
        assert returncode == 0, (tmp_path / "stderr.log").read_text()[-2000:]
        states = [i for i, m in enumerate(messages) if m["type"] == "STATE"]
        delivered = messages[:states[-1] + 1]  # what a target confirms
        braze: dict[str, set[str]] = {}
        apply(braze, delivered)
        rerun = runner(tap_config(server, tmp_path), delivered[-1]["value"], [CHANGES])
        assert rerun.returncode == 0, rerun.stderr
        apply(braze, rerun.messages)
        assert braze == mixpanel_view(state)
        # a cohort the stop's STATE names is not sent again; one cut short is, whole
        synced = {int(i) for i in saved_cohorts(delivered[-1]["value"])}
        assert not [r for r in records(rerun, CHANGES) if r["cohort_id"] in synced]
    finally:
        server.stop()


def test_a_second_signal_while_a_message_is_written_stops_at_once(tmp_path: Path) -> None:
    server = MixpanelQueryServer().start()
    try:
        server.state.add_cohort(1, "A", [f"a{i}-" + "x" * 5000 for i in range(3000)])
        files = Runner(tmp_path).files(tap_config(server, tmp_path), None, [CHANGES])
        with (tmp_path / "stderr.log").open("w") as stderr:
            process = subprocess.Popen(cohort_tap_command(*files), stdout=subprocess.PIPE,
                                       stderr=stderr, env=UNBUFFERED)
        assert process.stdout is not None
        wait_until_pipe_is_full(process.stdout, process)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        drained = threading.Thread(target=process.stdout.read)
        drained.start()
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        drained.join()
    finally:
        server.stop()
