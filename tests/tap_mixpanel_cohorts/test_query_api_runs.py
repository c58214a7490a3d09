"""tap-mixpanel-cohorts against the Mixpanel Query API-compatible server, run as its own process.

Outcomes: the records emitted, the adds and removes across runs (checked by applying them to a
Braze-like view), the state, what a killed run leaves, the errors a user sees, the query limits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from plugin_support.retry import RetryPolicy
from tap_mixpanel_cohorts.query_budget import QueryBudget
from tap_mixpanel_cohorts.query_client import Credentials, QueryClient
from tap_mixpanel_cohorts.settings import Settings
from tap_mixpanel_cohorts.tap import TapMixpanelCohorts
from testkit.mixpanel_query_server import Member, MixpanelQueryServer, QueryState
from testkit.services import Service, free_port
from tests.conftest import TapRun, parse_messages, write_json

CHANGES = "cohort_membership_changes"
FAST_RETRIES = {"retry_first_delay_seconds": 0.05, "max_retry_seconds": 10}


@pytest.fixture
def server() -> Iterator[MixpanelQueryServer]:
    running = MixpanelQueryServer().start()
    yield running
    running.stop()


def tap_config(server: MixpanelQueryServer, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    state = server.state
    return {"api_url": server.url, "project_id": state.project_id,
            "service_account_username": state.service_account[0],
            "service_account_secret": state.service_account[1],
            "snapshot_url": str(tmp_path / "snapshots"), **FAST_RETRIES, **overrides}


def tap_command(config: Path, state: Path | None = None, catalog: Path | None = None,
                *extra: str) -> list[str]:
    command = [sys.executable, "-m", "tap_mixpanel_cohorts.tap", "--config", str(config),
               *extra]
    if state is not None:
        command += ["--state", str(state)]
    if catalog is not None:
        command += ["--catalog", str(catalog)]
    return command


class Runner:
    """Runs the tap as its own process; keeps the files it needs apart per run."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.count = 0

    def files(self, config: dict, state: dict | None,
              streams: list[str] | None) -> tuple[Path, Path | None, Path | None]:
        self.count += 1
        n = self.count
        config_path = write_json(self.tmp_path / f"config-{n}.json", config)
        state_path = write_json(self.tmp_path / f"state-{n}.json", state) if state else None
        catalog_path = None
        if streams is not None:
            catalog_path = write_json(self.tmp_path / f"catalog-{n}.json",
                                      selecting(config_path, streams))
        return config_path, state_path, catalog_path

    def __call__(self, config: dict, state: dict | None = None,
                 streams: list[str] | None = None) -> TapRun:
        done = subprocess.run(tap_command(*self.files(config, state, streams)),
                              capture_output=True, text=True, timeout=120, check=False)
        messages = parse_messages(done.stdout) if done.returncode == 0 else []
        return TapRun(done.returncode, messages, done.stdout, done.stderr)


def selecting(config_path: Path, streams: list[str]) -> dict:
    """The tap's discovered catalog with only `streams` selected."""
    found = subprocess.run(tap_command(config_path, None, None, "--discover"),
                           capture_output=True, text=True, check=True)
    catalog = json.loads(found.stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


@pytest.fixture
def run(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def complete_messages(stdout: str) -> list[dict[str, Any]]:
    """The messages of whole lines (a killed process may leave half a line)."""
    lines = stdout.split("\n")[:-1]  # the part after the last newline is not a whole line
    return [json.loads(line) for line in lines if line.strip()]


def records(run: TapRun, stream: str) -> list[dict[str, Any]]:
    return [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == stream]


def changes(run: TapRun) -> set[tuple[int, str, str, str]]:
    """(cohort_id, cohort_name, user_id, action) of every change; each exactly once."""
    found = [(r["cohort_id"], r["cohort_name"], r["user_id"], r["action"])
             for r in records(run, CHANGES)]
    assert len(found) == len(set(found)), "a change was emitted twice in one run"
    return set(found)


def apply(braze: dict[str, set[str]], messages: list[dict[str, Any]]) -> None:
    """What target-braze does with the changes: a set of user ids per cohort name."""
    for message in messages:
        if message["type"] == "RECORD" and message["stream"] == CHANGES:
            record = message["record"]
            members = braze.setdefault(record["cohort_name"], set())
            if record["action"] == "add":
                members.add(record["user_id"])
            else:
                members.discard(record["user_id"])


def mixpanel_view(state: QueryState) -> dict[str, set[str]]:
    return {c.name: {str(m.distinct_id) for m in c.members} for c in state.cohorts.values()}


def without_empty(view: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: ids for name, ids in view.items() if ids}


def saved_cohorts(state: dict | None) -> dict[str, dict[str, Any]]:
    assert state is not None
    return state["bookmarks"][CHANGES]["cohorts"]


def no_secret_in(run: TapRun, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in run.stdout
        assert secret not in run.stderr


# -- runs and diffs ------------------------------------------------------------------------


def test_first_run_emits_cohorts_members_and_an_add_per_member(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", [f"u{i}" for i in range(2500)])
    server.state.add_cohort(9, "Churn risk", ["a", "b"])
    first = run(tap_config(server, tmp_path))
    assert first.returncode == 0, first.stderr
    assert {(r["id"], r["name"], r["count"]) for r in records(first, "cohorts")} == \
        {(7, "Power users", 2500), (9, "Churn risk", 2)}
    members = records(first, "cohort_members")
    assert len(members) == 2502
    assert {(m["cohort_id"], m["user_id"], m["distinct_id"]) for m in members} == \
        {(7, f"u{i}", f"u{i}") for i in range(2500)} | {(9, "a", "a"), (9, "b", "b")}
    assert changes(first) == {(7, "Power users", f"u{i}", "add") for i in range(2500)} | \
        {(9, "Churn risk", "a", "add"), (9, "Churn risk", "b", "add")}
    # the state names one existing snapshot per cohort, and holds nothing per member
    saved = saved_cohorts(first.last_state)
    assert set(saved) == {"7", "9"}
    for entry in saved.values():
        assert list((tmp_path / "snapshots" / entry["snapshot"]).glob("part-*.parquet"))
    assert len(json.dumps(first.last_state)) < 1000
    # /engage was paged with what Mixpanel documents, within what the tap needs
    engage = [q["form"] for q in server.state.log if q["path"] == "/api/query/engage"]
    assert [(q["filter_by_cohort"], q["page"], "session_id" in q) for q in engage] == \
        [('{"id": 7}', "0", False), ('{"id": 7}', "1", True), ('{"id": 7}', "2", True),
         ('{"id": 9}', "0", False)]
    assert all(q["include_all_users"] == "true" for q in engage)  # profile-less members too
    # one cohorts list and one /engage query per page, planned up front
    assert server.state.queries == 5
    assert "Plan: 5 queries (1 cohorts list + 4 /engage pages for 2 cohorts" in first.stderr
    no_secret_in(first, server.state.service_account[1])


def test_later_runs_emit_exactly_who_left_and_who_joined(server, tmp_path, run) -> None:
    cohort = server.state.add_cohort(7, "Power users", [f"u{i}" for i in range(1500)])
    braze: dict[str, set[str]] = {}
    first = run(tap_config(server, tmp_path), streams=[CHANGES])
    apply(braze, first.messages)
    cohort.members = [Member(f"u{i}") for i in range(200, 1700)]  # 200 left, 200 joined
    second = run(tap_config(server, tmp_path), first.last_state, streams=[CHANGES])
    assert second.returncode == 0, second.stderr
    assert changes(second) == \
        {(7, "Power users", f"u{i}", "remove") for i in range(200)} | \
        {(7, "Power users", f"u{i}", "add") for i in range(1500, 1700)}
    apply(braze, second.messages)
    assert braze == mixpanel_view(server.state)
    unchanged = run(tap_config(server, tmp_path), second.last_state, streams=[CHANGES])
    assert unchanged.returncode == 0, unchanged.stderr
    assert changes(unchanged) == set()
    assert '"adds": 0, "removes": 0' in unchanged.stderr


def test_a_run_whose_state_was_not_saved_is_diffed_again(server, tmp_path, run) -> None:
    """The target failed after the tap ended: Meltano kept the old state; nothing is lost."""
    cohort = server.state.add_cohort(7, "Power users", ["a", "b"])
    first = run(tap_config(server, tmp_path))
    cohort.members = [Member("b"), Member("c")]
    undelivered = run(tap_config(server, tmp_path), first.last_state)
    again = run(tap_config(server, tmp_path), first.last_state)
    assert changes(again) == changes(undelivered) == \
        {(7, "Power users", "a", "remove"), (7, "Power users", "c", "add")}


def test_a_renamed_cohort_moves_every_member_to_the_new_name(server, tmp_path, run) -> None:
    cohort = server.state.add_cohort(7, "Power users", ["a", "b", "c"])
    first = run(tap_config(server, tmp_path))
    cohort.name = "Super users"
    cohort.members = [Member("a"), Member("b"), Member("d")]
    second = run(tap_config(server, tmp_path), first.last_state)
    assert changes(second) == \
        {(7, "Power users", u, "remove") for u in "abc"} | \
        {(7, "Super users", u, "add") for u in "abd"}
    braze: dict[str, set[str]] = {}
    apply(braze, first.messages)
    apply(braze, second.messages)
    assert without_empty(braze) == {"Super users": {"a", "b", "d"}}
    assert saved_cohorts(second.last_state)["7"]["name"] == "Super users"


def test_a_deleted_or_unselected_cohort_removes_every_member(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a", "b"])
    server.state.add_cohort(8, "Trial", ["c"])
    server.state.add_cohort(9, "Churn risk", ["d", "e"])
    first = run(tap_config(server, tmp_path))
    del server.state.cohorts[9]                                    # deleted in Mixpanel
    second = run(tap_config(server, tmp_path, cohort_ids=[7]), first.last_state)  # 8 dropped
    assert second.returncode == 0, second.stderr
    assert changes(second) == {(8, "Trial", "c", "remove"), (9, "Churn risk", "d", "remove"),
                               (9, "Churn risk", "e", "remove")}
    assert set(saved_cohorts(second.last_state)) == {"7"}
    third = run(tap_config(server, tmp_path, cohort_ids=[7]), second.last_state)
    assert changes(third) == set()


def test_id_property_other_than_distinct_id(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", [
        Member("d1", {"$braze_external_id": "ext-1", "$email": "one@example.com"}),
        Member("d2", {"$braze_external_id": "ext-2"}),
        Member("d3", {"$email": "three@example.com"}),             # no Braze id: skipped
        Member("d4", None),                                        # no profile at all
    ])
    first = run(tap_config(server, tmp_path, id_property="$braze_external_id"))
    assert first.returncode == 0, first.stderr
    assert changes(first) == {(7, "Power users", "ext-1", "add"),
                              (7, "Power users", "ext-2", "add")}
    assert {(m["user_id"], m["distinct_id"]) for m in records(first, "cohort_members")} == \
        {("ext-1", "d1"), ("ext-2", "d2")}
    assert '"members_without_id": 2' in first.stderr   # d3, and d4 (asked for: no profile)
    engage = next(q["form"] for q in server.state.log if q["path"] == "/api/query/engage")
    assert json.loads(engage["output_properties"]) == ["$braze_external_id"]


def test_a_member_listed_twice_is_emitted_once(server, tmp_path, run) -> None:
    """Two profiles with one Braze id, on different pages: one member, one add."""
    profiles = [Member(f"d{i}", {"$braze_external_id": f"e{i}"}) for i in range(1500)]
    profiles.append(Member("d-other", {"$braze_external_id": "e3"}))
    server.state.add_cohort(7, "Power users", profiles)
    first = run(tap_config(server, tmp_path, id_property="$braze_external_id"))
    assert first.returncode == 0, first.stderr
    assert changes(first) == {(7, "Power users", f"e{i}", "add") for i in range(1500)}
    members = [(m["user_id"], m["distinct_id"]) for m in records(first, "cohort_members")]
    assert sorted(members) == sorted((f"e{i}", f"d{i}") for i in range(1500))


def test_an_id_property_no_member_has_fails_naming_it(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a", "b"])
    failed = run(tap_config(server, tmp_path, id_property="$braze_id"))
    assert failed.returncode != 0
    assert "id_property '$braze_id'" in failed.stderr
    states = [m["value"] for m in complete_messages(failed.stdout) if m["type"] == "STATE"]
    assert all("7" not in s.get("bookmarks", {}).get(CHANGES, {}).get("cohorts", {})
               for s in states)


# -- a run killed mid-way ------------------------------------------------------------------


def _killed_run(server: MixpanelQueryServer, runner: Runner, config: dict,
                state: dict | None, hang_at_query: int, stop: signal.Signals) -> TapRun:
    """Start the tap, stop it with `stop` while query number `hang_at_query` hangs."""
    server.state.hanging.clear()
    server.state.release.clear()
    server.state.hang_at_query = server.state.queries + hang_at_query
    process = subprocess.Popen(tap_command(*runner.files(config, state, [CHANGES])),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.state.hanging.wait(30), "the tap never reached the hanging query"
    time.sleep(0.3)  # what came before the hang is written
    process.send_signal(stop)
    out, err = process.communicate(timeout=30)
    server.state.release.set()
    server.state.hang_at_query = None
    return TapRun(process.returncode, complete_messages(out), out, err)


def _before_last_state(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a target confirmed: the messages up to the last STATE (the rest may be lost)."""
    states = [i for i, m in enumerate(messages) if m["type"] == "STATE"]
    return messages[:states[-1] + 1] if states else []


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("tail_delivered", [False, True])
def test_a_killed_run_rerun_from_its_last_state_loses_no_change(
        server, tmp_path, run, stop, tail_delivered) -> None:
    a = server.state.add_cohort(1, "A", [f"a{i}" for i in range(1200)])
    b = server.state.add_cohort(2, "B", [f"b{i}" for i in range(1200)])
    c = server.state.add_cohort(3, "C", [f"c{i}" for i in range(10)])
    braze: dict[str, set[str]] = {}
    first = run(tap_config(server, tmp_path), streams=[CHANGES])
    apply(braze, first.messages)
    for cohort, prefix in ((a, "a"), (b, "b"), (c, "c")):
        cohort.members = [Member(f"{prefix}{i}") for i in range(100, 1300)]
    # queries: list, A page 0, A page 1, B page 0 hangs: A's changes are out, B's are not
    killed = _killed_run(server, run, tap_config(server, tmp_path), first.last_state,
                         hang_at_query=4, stop=stop)
    if stop == signal.SIGTERM:
        assert killed.returncode == 0, killed.stderr
    delivered = killed.messages if tail_delivered else _before_last_state(killed.messages)
    apply(braze, delivered)
    last_saved = [m["value"] for m in delivered if m["type"] == "STATE"][-1]
    assert set(saved_cohorts(last_saved)) == {"1", "2", "3"}
    assert saved_cohorts(last_saved)["2"] == saved_cohorts(first.last_state)["2"]
    rerun = run(tap_config(server, tmp_path), last_saved, streams=[CHANGES])
    assert rerun.returncode == 0, rerun.stderr
    apply(braze, rerun.messages)
    assert braze == mixpanel_view(server.state)
    assert {u for (cid, _, u, _) in changes(rerun) if cid == 2} == \
        {f"b{i}" for i in range(100)} | {f"b{i}" for i in range(1200, 1300)}


# -- snapshots -----------------------------------------------------------------------------


def test_snapshots_no_saved_state_names_are_deleted_after_the_grace_period(
        server, tmp_path, run) -> None:
    cohort = server.state.add_cohort(7, "Power users", ["a"])
    config = tap_config(server, tmp_path, snapshot_grace_hours=0)
    names = []
    state = None
    for members in (["a"], ["a", "b"], ["b"]):
        cohort.members = [Member(m) for m in members]
        done = run(config, state)
        assert done.returncode == 0, done.stderr
        state = done.last_state
        names.append(saved_cohorts(state)["7"]["snapshot"])
    on_disk = {str(p.parent.relative_to(tmp_path / "snapshots"))
               for p in (tmp_path / "snapshots").rglob("*.parquet")}
    # the third run started from the second's state: the first's snapshot is gone
    assert on_disk == {names[1], names[2]}


@pytest.mark.services
def test_snapshots_in_s3(server, tmp_path, run, s3_server: Service) -> None:
    options = s3_server.storage_options
    s3 = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="eu-west-1",
                      aws_access_key_id=options["key"], aws_secret_access_key=options["secret"])
    s3.create_bucket(Bucket="cohort-snapshots",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    cohort = server.state.add_cohort(7, "Power users", ["a", "b"])
    config = tap_config(server, tmp_path, snapshot_url="s3://cohort-snapshots/prod",
                        snapshot_options=options)
    first = run(config)
    assert first.returncode == 0, first.stderr
    cohort.members = [Member("b"), Member("c")]
    second = run(config, first.last_state)
    assert second.returncode == 0, second.stderr
    assert changes(second) == {(7, "Power users", "a", "remove"),
                               (7, "Power users", "c", "add")}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="cohort-snapshots")["Contents"]}
    assert f"prod/{saved_cohorts(second.last_state)['7']['snapshot']}/part-00000.parquet" in keys
    no_secret_in(second, options["secret"])


# -- errors a user sees --------------------------------------------------------------------


def test_wrong_credentials_stop_at_once_naming_the_settings(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a"])
    wrong = "wrong-secret-9f8e7d6c"
    failed = run(tap_config(server, tmp_path, service_account_secret=wrong))
    assert failed.returncode != 0
    assert "service_account_username" in failed.stderr
    assert "service_account_secret" in failed.stderr
    assert server.state.statuses[401] == 1  # no retry
    no_secret_in(failed, wrong)
    other_project = run(tap_config(server, tmp_path, project_id="999"))
    assert other_project.returncode != 0
    assert "project_id" in other_project.stderr


def test_an_unknown_cohort_id_is_named(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a"])
    failed = run(tap_config(server, tmp_path, cohort_ids=[7, 12345]))
    assert failed.returncode != 0
    assert "cohort_ids lists 12345" in failed.stderr
    assert server.state.queries == 1  # only the list: nothing was paged


def test_an_unreachable_api_url_is_named(tmp_path, run) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    failed = run({"api_url": url, "project_id": 1, "service_account_username": "sa",
                  "service_account_secret": "unreachable-secret-1234",
                  "snapshot_url": str(tmp_path / "s"), "max_retry_seconds": 0.3,
                  "retry_first_delay_seconds": 0.05})
    assert failed.returncode != 0
    assert f"api_url {url!r}" in failed.stderr
    no_secret_in(failed, "unreachable-secret-1234")


def test_an_unusable_snapshot_url_is_named(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a"])
    (tmp_path / "a-file").write_text("not a folder")
    failed = run(tap_config(server, tmp_path, snapshot_url=str(tmp_path / "a-file" / "snap")))
    assert failed.returncode != 0
    assert "snapshot_url" in failed.stderr
    secret = "opt-secret-5b4a3c2d1e"
    bad_options = run(tap_config(server, tmp_path, snapshot_url="s3://nowhere/x",
                                 snapshot_options={"secret": secret, "nonsense_option": 1}))
    assert bad_options.returncode != 0
    assert "snapshot_" in bad_options.stderr
    no_secret_in(bad_options, secret)


def test_a_project_id_that_is_not_a_number_is_named(server, tmp_path, run) -> None:
    failed = run(tap_config(server, tmp_path, project_id="my-project"))
    assert failed.returncode != 0
    assert "project_id" in failed.stderr
    no_secret_in(failed, server.state.service_account[1])


# -- limits, faults, regions ---------------------------------------------------------------


def test_each_cohort_is_paged_once_within_the_query_limits(server, tmp_path, run) -> None:
    """Members and changes both selected: 11 queries, on a server allowing exactly 11."""
    server.state.max_concurrent, server.state.max_per_window = 1, 11
    for n in range(1, 6):
        server.state.add_cohort(n, f"Cohort {n}", [f"u{n}-{i}" for i in range(1500)])
    done = run(tap_config(server, tmp_path, max_concurrent_queries=1, max_queries_per_hour=11))
    assert done.returncode == 0, done.stderr
    assert "Plan: 11 queries" in done.stderr
    assert server.state.limit_rejections == 0
    assert server.state.max_in_flight == 1
    assert server.state.queries == 11
    assert len(records(done, "cohort_members")) == len(records(done, CHANGES)) == 7500


def test_a_run_right_after_another_spends_only_what_is_left_of_the_hour(
        server, tmp_path, run) -> None:
    """Budget 6 an hour; the first run spends 5: the next one waits after its 1st query."""
    server.state.add_cohort(7, "Power users", [f"u{i}" for i in range(3500)])
    config = tap_config(server, tmp_path, max_queries_per_hour=6)
    first = run(config)
    assert first.returncode == 0, first.stderr
    assert server.state.queries == 5
    process = subprocess.Popen(tap_command(*run.files(config, first.last_state, None)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        waiting = ""
        for line in process.stderr:  # type: ignore[union-attr]
            if "Query budget: waiting" in line:
                waiting = line
                break
        assert "Query budget: waiting" in waiting  # about an hour, not a 429
        assert server.state.queries == 6
        assert server.state.limit_rejections == 0
    finally:
        process.kill()
        process.wait()


def test_the_budget_keeps_concurrent_queries_and_queries_per_window_in_bounds(server) -> None:
    """Eight threads share one budget of 3 queries a second, 2 at once: never a 429."""
    state = server.state
    state.max_per_window, state.window_seconds, state.max_concurrent = 3, 1.0, 2
    state.answer_delay = 0.1
    budget = QueryBudget(max_per_window=3, max_concurrent=2, window_seconds=1.0)
    client = QueryClient(server.url, Credentials(*state.service_account, state.project_id),
                         budget, RetryPolicy(first_delay=5, budget_seconds=0))  # no retries
    errors: list[Exception] = []

    def query() -> None:
        try:
            client.post("/api/query/cohorts/list", {})
        except Exception as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=query) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert state.limit_rejections == 0
    assert state.queries == 8
    assert state.max_in_flight == 2
    assert time.monotonic() - started >= 2.0  # 8 queries at 3 a second


def test_429_waits_for_retry_after_and_5xx_and_drops_are_retried(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", [f"u{i}" for i in range(2500)])
    server.state.retry_after = "1"
    server.state.script = [None, "429", "500", "drop", "503"]  # type: ignore[list-item]
    done = run(tap_config(server, tmp_path))
    assert done.returncode == 0, done.stderr
    assert changes(done) == {(7, "Power users", f"u{i}", "add") for i in range(2500)}
    times = [q["at"] for q in server.state.log]
    assert times[2] - times[1] >= 1.0  # the 429's Retry-After was waited out
    assert '"retries": 4' in done.stderr


def test_region_picks_the_host_and_api_url_overrides_it(server, tmp_path, run) -> None:
    base = {"project_id": "1", "service_account_username": "sa", "service_account_secret": "s"}
    hosts = {region: Settings.from_config({**base, "region": region}).base_url
             for region in ("US", "EU", "IN")}
    assert hosts == {"US": "https://mixpanel.com", "EU": "https://eu.mixpanel.com",
                     "IN": "https://in.mixpanel.com"}
    server.state.add_cohort(7, "Power users", ["a"])
    server.state.workspace_id = "55"
    done = run(tap_config(server, tmp_path, region="EU", workspace_id=55))
    assert done.returncode == 0, done.stderr
    assert changes(done) == {(7, "Power users", "a", "add")}


# -- through Meltano, with a third-party target ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"


def test_meltano_run_saves_the_state_the_next_run_diffs_against(server, tmp_path) -> None:
    """`meltano run tap-mixpanel-cohorts target-jsonl` twice: Meltano keeps what it confirmed."""
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    cohort = server.state.add_cohort(7, "Power users", ["a", "b"])
    (tmp_path / "jsonl").mkdir()
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "TAP_MIXPANEL_COHORTS_API_URL": server.url,
           "TAP_MIXPANEL_COHORTS_PROJECT_ID": server.state.project_id,
           "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_USERNAME": server.state.service_account[0],
           "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_SECRET": server.state.service_account[1],
           "TAP_MIXPANEL_COHORTS_SNAPSHOT_URL": str(tmp_path / "snapshots"),
           "TAP_MIXPANEL_COHORTS_RETRY_FIRST_DELAY_SECONDS": "0.05",
           "TARGET_JSONL_DESTINATION_PATH": str(tmp_path / "jsonl")}

    def meltano_run() -> list[tuple[str, str]]:
        done = subprocess.run([str(MELTANO), "run", "tap-mixpanel-cohorts", "target-jsonl"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.state.service_account[1] not in done.stderr + done.stdout
        lines = (tmp_path / "jsonl" / "user_cohorts.jsonl").read_text().splitlines()
        return [(r["user_id"], r["cohort_names"]) for r in map(json.loads, lines)]

    power = ["Power users"]
    assert meltano_run() == [("a", power), ("b", power)]
    cohort.members = [Member("b"), Member("c")]       # only the users whose set changed:
    assert meltano_run() == [("a", power), ("b", power), ("a", []), ("c", power)]


# -- the Singer SDK's standard tap tests ---------------------------------------------------

_STANDARD_SERVER = MixpanelQueryServer().start()
_STANDARD_SERVER.state.add_cohort(1, "Power users", [f"u{i}" for i in range(30)])
_STANDARD_SERVER.state.add_cohort(2, "Trial", ["t1", "t2"])
_STANDARD_SERVER.state.max_per_window = 10_000
_STANDARD_CREDENTIALS = _STANDARD_SERVER.state.service_account

TestTapMixpanelCohortsStandard = get_tap_test_class(
    tap_class=TapMixpanelCohorts,
    config={"api_url": _STANDARD_SERVER.url, "project_id": _STANDARD_SERVER.state.project_id,
            "service_account_username": _STANDARD_CREDENTIALS[0],
            "service_account_secret": _STANDARD_CREDENTIALS[1],
            "snapshot_url": tempfile.mkdtemp(prefix="cohort-snapshots-")},
    suite_config=SuiteConfig(max_records_limit=20),
)


# -- what Mixpanel documents beyond the happy path (issue 24) -------------------------------

USER_SETS = "user_cohorts"


def test_an_integer_distinct_id_is_read_as_a_string(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", [Member(1234, None), Member("u-2", {})])
    first = run(tap_config(server, tmp_path))
    assert first.returncode == 0, first.stderr
    assert {(r["user_id"], tuple(r["cohort_names"])) for r in records(first, USER_SETS)} == \
        {("1234", ("Power users",)), ("u-2", ("Power users",))}


def test_402_says_the_plan_does_not_allow_api_calls(server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", ["a"])
    server.state.script = ["402"]
    failed = run(tap_config(server, tmp_path))
    assert failed.returncode != 0
    assert "plan does not allow" in failed.stderr
    assert "project_id" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_an_engage_session_refused_mid_cohort_pages_that_cohort_again(
        server, tmp_path, run) -> None:
    server.state.add_cohort(7, "Power users", [f"u{i}" for i in range(2500)])
    server.state.add_cohort(9, "Churn risk", ["a", "b"])
    server.state.script = ["", "", "expire_session"]  # cohorts list, page 0, then page 1 fails
    first = run(tap_config(server, tmp_path))
    assert first.returncode == 0, first.stderr
    sets = {r["user_id"]: r["cohort_names"] for r in records(first, USER_SETS)}
    assert sets == {**{f"u{i}": ["Power users"] for i in range(2500)},
                    "a": ["Churn risk"], "b": ["Churn risk"]}
    assert '"session_restarts": 1' in first.stderr
    pages = [json.loads(q["form"]["filter_by_cohort"])["id"] for q in server.state.log
             if q["path"] == "/api/query/engage"]
    assert pages == [7, 7, 7, 7, 7, 9]            # 2 pages, then the cohort's 3 again
    saved = first.last_state["bookmarks"][USER_SETS]["cohorts"]
    assert len(list((tmp_path / "snapshots" / saved["7"]["snapshot"]).glob("*.parquet"))) == 1


def test_a_member_count_far_from_the_cohorts_list_count_is_warned(server, tmp_path, run) -> None:
    class CountedHigh(list):
        def __len__(self) -> int:   # cohorts/list counts 100 more than /engage gives
            return super().__len__() + 100

    server.state.add_cohort(7, "Power users", [])
    server.state.cohorts[7].members = CountedHigh(Member(f"u{i}") for i in range(50))
    first = run(tap_config(server, tmp_path))
    assert first.returncode == 0, first.stderr
    assert "cohorts/list counts 150" in first.stderr
    assert '"count_differs_by_cohort": {"7": {"listed": 150, "read": 50}}' in first.stderr
