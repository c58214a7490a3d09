"""The whole pipeline through Meltano itself: meltano run tap-braze-currents target-mixpanel."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
import yaml

from tap_braze_currents.demo_export import currents_key, write_avro_file, write_demo_export
from tap_braze_currents.event_types import catalog_avro_schema
from target_mixpanel.event_mapping import braze_event_names
from testkit.mixpanel_server import MixpanelServer

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
EXPORTED = sorted(t for t, v in braze_event_names().items() if v["in_braze_mixpanel_export"])
TYPES = ["users.behaviors.CustomEvent", "users.behaviors.Purchase",
         "users.messages.email.Send", "users.RandomBucketNumberUpdate"]  # the last is not exported


def meltano_env(tmp_path: Path, mixpanel: MixpanelServer) -> dict[str, str]:
    """Settings for a run against a local export and the Mixpanel-compatible server."""
    return {**os.environ,
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_BRAZE_CURRENTS_STORAGE_URL": str(tmp_path / "export"),
            "TARGET_MIXPANEL_DRY_RUN": "false",
            "TARGET_MIXPANEL_API_URL": mixpanel.url,
            "TARGET_MIXPANEL_PROJECT_TOKEN": mixpanel.state.credentials.project_token,
            "TARGET_MIXPANEL_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
            # fractional durations from the environment (Meltano makes Decimals of "decimal"
            # settings and then cannot write them; ours are declared as strings)
            "TARGET_MIXPANEL_RETRY_FIRST_DELAY_SECONDS": "0.05",
            "TARGET_MIXPANEL_RETRY_MAX_DELAY_SECONDS": "0.5"}


def _meltano(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(MELTANO), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture
def meltano_run(tmp_path: Path, mixpanel: MixpanelServer):
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    env = meltano_env(tmp_path, mixpanel)

    def run(**overrides: str) -> subprocess.CompletedProcess:
        return _meltano("run", "tap-braze-currents", "target-mixpanel", env={**env, **overrides})

    return run


# The dev environment relays RECORD messages; prod sets this batch_config (BATCH mode).
BATCH_CONFIG = {"encoding": {"format": "jsonl", "compression": "none"},
                "storage": {"root": ".meltano/run/braze-batches"}, "batch_size": 10000}
MODES = {"record": {}, "batch": {"TAP_BRAZE_CURRENTS_BATCH_CONFIG": json.dumps(BATCH_CONFIG)}}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_meltano_run_delivers_each_exported_event_once_and_resumes(
        meltano_run, mixpanel: MixpanelServer, tmp_path: Path, mode: str) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=TYPES, hours=2,
                               events_per_file=25)
    meltano_run = functools.partial(meltano_run, **MODES[mode])
    first = meltano_run()
    batches_sent = re.findall(r'"metric":"batch_count","value":([1-9]\d*)', first.stderr)
    assert bool(batches_sent) == (mode == "batch")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "in incremental mode" in first.stderr
    assert "in full_table mode" not in first.stderr
    events = mixpanel.state.unique_events
    assert mixpanel.state.raw_events == len(events)
    sent_ids = {e["properties"]["$insert_id"] for e in events}
    exported_ids = {i for t in TYPES if t in EXPORTED for i in export.ids[t]}
    assert sent_ids <= exported_ids  # RandomBucketNumberUpdate is not selected by default
    assert not sent_ids & set(export.ids["users.RandomBucketNumberUpdate"])
    skipped = sum(export.without_external_id[t] for t in TYPES if t in EXPORTED)
    assert len(sent_ids) == len(exported_ids) - skipped
    assert {e["event"] for e in events} >= {"Purchase", "Email Send"}
    # a second run sends nothing new; a late file in an earlier hour is sent by the next one
    second = meltano_run()
    assert second.returncode == 0, second.stderr[-3000:]
    assert mixpanel.state.raw_events == len(events)
    schema = catalog_avro_schema("users.behaviors.Purchase")
    late = {f["name"]: None for f in schema["fields"]}
    late.update(id="late-purchase-1", user_id="u", external_user_id="late-user", time=1743467000,
                product_id="sku-late", price=2.5, currency="EUR", properties="{}")
    key = currents_key("late", "users.behaviors.Purchase", "2025-04-01-00", old_layout=False,
                       partition=0, offset=1)
    write_avro_file(fsspec.filesystem("file"), str(tmp_path / "export" / key), schema, [late])
    third = meltano_run()
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(mixpanel.state.unique_events) == len(events) + 1
    assert "late-purchase-1" in {e["properties"]["$insert_id"]
                                 for e in mixpanel.state.unique_events}


def test_meltano_run_names_a_wrong_secret_and_a_wrong_bucket(meltano_run, tmp_path: Path) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=TYPES[:1], hours=1,
                      events_per_file=5)
    wrong = meltano_run(TARGET_MIXPANEL_PROJECT_TOKEN="not-the-token-7781")
    assert wrong.returncode != 0
    assert "project_token" in wrong.stderr
    assert "not-the-token-7781" not in wrong.stderr
    missing = meltano_run(TAP_BRAZE_CURRENTS_STORAGE_URL=str(tmp_path / "no-such-folder"))
    assert missing.returncode != 0
    assert "storage_url" in missing.stderr


def test_a_fractional_state_interval_from_the_environment_reaches_the_tap(tmp_path: Path) -> None:
    """Meltano made a Decimal of TAP_..._STATE_INTERVAL_SECONDS=2.5 and could not write it."""
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    write_demo_export(str(tmp_path / "export"), event_types=TYPES[:1], hours=1,
                      integrations=1, events_per_file=3)
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "TAP_BRAZE_CURRENTS_STORAGE_URL": str(tmp_path / "export"),
           "TAP_BRAZE_CURRENTS_STATE_INTERVAL_SECONDS": "2.5"}
    printed = _meltano("config", "print", "tap-braze-currents", env=env)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "not JSON serializable" not in printed.stdout + printed.stderr
    config = json.loads(printed.stdout)
    assert float(config["state_interval_seconds"]) == 2.5
    # the tap takes the config Meltano hands it
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    tap = subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config",
                          str(config_path)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert tap.returncode == 0, tap.stderr[-3000:]
    assert tap.stdout.count('"type":"RECORD"') == 3


def test_schedules_fan_out_over_disjoint_groups_covering_the_default_selection() -> None:
    listed = _meltano("schedule", "list", "--format=json",
                      env={**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"})
    assert listed.returncode == 0, listed.stderr
    # what the Airflow DAG generator reads
    schedules = json.loads(listed.stdout)["schedules"]["job"]
    tasks = [s["job"]["tasks"][0].split() for s in schedules]
    # the cohort sync's schedule is the other direction; the rest fan the Currents out
    assert ["tap-mixpanel-cohorts", "target-braze"] in tasks
    currents = [t for t in tasks if t != ["tap-mixpanel-cohorts", "target-braze"]]
    extractors = [extractor for extractor, _ in currents]
    assert len(extractors) >= 2
    assert all(loader == "target-mixpanel" for _, loader in currents)
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    selects = {e["name"]: e["select"] for e in project["plugins"]["extractors"]}
    default = set(selects["tap-braze-currents"])
    assert default == {f"{t.lower().replace('.', '_')}.*" for t in EXPORTED}
    groups = [set(selects[name]) for name in extractors]
    assert sum(len(g) for g in groups) == len(set().union(*groups))  # disjoint
    assert set().union(*groups) == default                              # covering


def test_a_fan_out_job_keeps_its_own_state(meltano_run, mixpanel: MixpanelServer,
                                           tmp_path: Path) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=TYPES, hours=1,
                               events_per_file=10)
    env = meltano_env(tmp_path, mixpanel)
    done = _meltano("run", "braze-to-mixpanel-email", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    sent = {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}
    assert sent
    assert sent <= set(export.ids["users.messages.email.Send"])
    states = _meltano("state", "list", env=env)
    assert "dev:tap-braze-currents--email-to-target-mixpanel" in states.stdout


@pytest.mark.parametrize("mode", sorted(MODES))
def test_target_killed_midway_then_rerun_delivers_everything(
        meltano_run, mixpanel: MixpanelServer, tmp_path: Path, mode: str) -> None:
    export = write_demo_export(str(tmp_path / "export"), event_types=TYPES[:3], hours=2,
                               events_per_file=400)
    expected = {i for t in TYPES[:3] for i in export.ids[t]}
    mixpanel.state.script = ["slow:3"] * 4  # the first requests hang while we kill the target
    env = {**meltano_env(tmp_path, mixpanel), **MODES[mode]}
    process = subprocess.Popen([str(MELTANO), "run", "tap-braze-currents", "target-mixpanel"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not mixpanel.state.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mixpanel.state.requests, "the pipeline never reached the server"
    # this checkout's target only (other checkouts on the machine run the same plugin)
    target = ROOT / ".meltano" / "loaders" / "target-mixpanel" / "venv" / "bin" / "target-mixpanel"
    found = subprocess.run(["pgrep", "-f", str(target)],
                           capture_output=True, text=True, check=False).stdout.split()
    assert found
    killed = 0
    for pid in found:  # its forked workers share its command line and end with it
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    assert killed
    assert process.wait(timeout=120) != 0
    rerun = meltano_run(**MODES[mode])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    identified = {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}
    skipped = sum(export.without_external_id[t] for t in TYPES[:3])
    assert identified <= expected
    assert len(identified) == len(expected) - skipped  # every identified event arrived
    # whatever the killed run had sent and the rerun sent again carried the same four dedup
    # fields: it collapsed at the server into one event per $insert_id
    assert len(mixpanel.state.unique_events) == len(identified)


def test_meltano_run_reads_from_the_s3_compatible_server(
        meltano_run, mixpanel: MixpanelServer, s3_server) -> None:
    url = "s3://meltano-currents/exports"
    fs, _ = fsspec.core.url_to_fs(url, **s3_server.storage_options)
    if not fs.exists("meltano-currents"):
        fs.mkdir("meltano-currents")
    export = write_demo_export(url, storage_options=s3_server.storage_options,
                               event_types=TYPES[:2], hours=1, events_per_file=30)
    done = meltano_run(TAP_BRAZE_CURRENTS_STORAGE_URL=url,
                       TAP_BRAZE_CURRENTS_STORAGE_OPTIONS=json.dumps(s3_server.storage_options))
    assert done.returncode == 0, done.stderr[-3000:]
    sent = {e["properties"]["$insert_id"] for e in mixpanel.state.unique_events}
    identified = sum(len(export.ids[t]) - export.without_external_id[t] for t in TYPES[:2])
    assert len(sent) == identified == mixpanel.state.raw_events
    assert s3_server.storage_options["secret"] not in done.stderr + done.stdout


def test_meltano_lists_the_selection_and_hands_the_tap_an_incremental_catalog(
        mixpanel: MixpanelServer, tmp_path: Path) -> None:
    write_demo_export(str(tmp_path / "export"), event_types=TYPES[:1], hours=1,
                      events_per_file=2)
    env = meltano_env(tmp_path, mixpanel)
    listed = _meltano("select", "tap-braze-currents", "--list", "--all", env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert re.search(r"\[selected\s*\] users_behaviors_purchase\.price", listed.stdout)
    assert re.search(r"\[excluded\s*\] users_randombucketnumberupdate\.", listed.stdout)
    dumped = _meltano("invoke", "--dump=catalog", "tap-braze-currents", env=env)
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    streams = json.loads(dumped.stdout)["streams"]
    assert {s["replication_method"] for s in streams} == {"INCREMENTAL"}
    selected = {s["tap_stream_id"] for s in streams
                if any(m["breadcrumb"] == [] and m["metadata"].get("selected")
                       for m in s["metadata"])}
    assert selected == {t.lower().replace(".", "_") for t in EXPORTED}


# libraries one plugin needs and another must not be made to install (Meltano: a venv each)
NOT_IN_VENV = {
    "loaders/target-mixpanel": ["polars", "fastavro", "s3fs", "gcsfs", "adlfs"],
    "loaders/target-braze": ["polars", "fastavro", "s3fs", "gcsfs", "adlfs", "isal"],
}


@pytest.mark.parametrize("plugin", sorted(NOT_IN_VENV))
def test_each_plugin_s_virtualenv_holds_only_what_it_needs(plugin: str) -> None:
    python = ROOT / ".meltano" / plugin / "venv" / "bin" / "python"
    assert python.exists(), f"{python}: run `meltano install` (scripts/setup-tests does)"
    found = subprocess.run(
        [str(python), "-c", "import importlib.util as u, sys; "
         "print([m for m in sys.argv[1:] if u.find_spec(m)])", *NOT_IN_VENV[plugin]],
        capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
    name = plugin.split("/")[1]
    about = subprocess.run([str(python.parent / name), "--about", "--format=json"],
                           capture_output=True, text=True, check=False)
    assert about.returncode == 0, about.stderr[-2000:]
