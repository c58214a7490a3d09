"""mixpanel-cohort-receiver run as its own process, fed by a sync that behaves as Mixpanel's.

Outcomes: what the spool holds (each message once, whole, stored before success), the answers
Mixpanel acts on (401 pauses, 400 says what is wrong, 503 is retried), and what its log shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from plugin_support.webhook_spool import WebhookSpool
from testkit.mixpanel_webhook_sender import CohortWebhookSync
from testkit.receiver_process import PASSWORD, USER, wait_until_serving
from testkit.receiver_process import ReceiverProcess as RunningReceiver
from testkit.services import free_port


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningReceiver]:
    running = RunningReceiver(tmp_path / "spool", tmp_path / "receiver.log")
    yield running
    running.stop()


def spooled(spool: Path, cohort: int) -> list[dict]:
    return [json.loads(m) for _, m in WebhookSpool(str(spool)).messages(str(cohort))]


def sync_for(receiver: RunningReceiver, members: set[str], **kwargs) -> CohortWebhookSync:
    return CohortWebhookSync(receiver.url + "/mixpanel", 42, "Power users", auth=(USER, PASSWORD),
                             retry_scale=0.002, members=set(members), **kwargs)


def test_a_full_sync_then_diffs_are_stored_in_arrival_order(receiver, tmp_path) -> None:
    sync = sync_for(receiver, {f"u{i}" for i in range(2500)})
    first = sync.sync(now=0)
    assert (first.kind, first.ok, first.messages) == ("full", True, 3)
    sync.members -= {"u1", "u2"}
    sync.members |= {"new1"}
    second = sync.sync(now=1800)
    assert (second.kind, second.ok, second.messages) == ("diff", True, 2)
    third = sync.sync(now=3600)  # nothing changed: two empty calls
    assert (third.kind, third.ok, third.messages) == ("diff", True, 2)
    messages = spooled(tmp_path / "spool", 42)
    assert [m["action"] for m in messages] == ["members"] * 3 + ["add_members",
                                                                 "remove_members"] * 2
    assert [m["parameters"]["page_info"]["page_count"] for m in messages[:3]] == [1, 2, 3]
    full = {u["mixpanel_distinct_id"] for m in messages[:3] for u in m["parameters"]["members"]}
    assert len(full) == 2500
    assert [u["mixpanel_distinct_id"] for u in messages[3]["parameters"]["members"]] == ["new1"]
    assert {u["mixpanel_distinct_id"] for u in messages[4]["parameters"]["members"]} == \
        {"u1", "u2"}
    assert receiver.health()["stored"] == 7


def test_the_same_message_delivered_twice_is_stored_once(receiver, tmp_path) -> None:
    sync = sync_for(receiver, {"a", "b"})
    body = next(iter(sync.bodies("members", ["a", "b"])))
    for _ in range(2):  # a retry after an answer lost on the way back
        answer = requests.post(receiver.url, data=body, auth=(USER, PASSWORD), timeout=5)
        assert answer.json() == {"action": "members", "status": "success"}
    assert len(spooled(tmp_path / "spool", 42)) == 1
    assert receiver.health()["duplicates"] == 1


def test_wrong_credentials_pause_the_sync_with_a_message(receiver, tmp_path) -> None:
    sync = sync_for(receiver, {"a"})
    sync.auth = (USER, "not-the-password")
    result = sync.sync(now=0)
    assert not result.ok
    assert result.attempts == 1  # 401 is not retried: Mixpanel pauses the sync
    assert "user name and password" in sync.paused
    assert sync.sync(now=1800).kind == "paused"
    assert spooled(tmp_path / "spool", 42) == []
    no_auth = requests.post(receiver.url, data=b"{}", timeout=5)
    assert no_auth.status_code == 401


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b'{"action": "members"}', "parameters"),
    (b'{"action": "merge", "parameters": {"mixpanel_cohort_id": "1"}}', "action"),
    (b'{"action": "members", "parameters": {"mixpanel_cohort_id": "1", '
     b'"mixpanel_session_id": "s", "page_info": {"total_pages": 2, "page_count": 3}}}',
     "page_count 3"),
    (b'{"action": "members", "parameters": {"mixpanel_cohort_id": "../x"}}', "cohort id"),
    (b'{"action": "add_members", "parameters": {"mixpanel_cohort_id": "1", '
     b'"members": [{"email": "x@example.com"}]}}', "mixpanel_distinct_id"),
])
def test_a_malformed_body_is_answered_400_saying_what_is_wrong(receiver, tmp_path, body,
                                                               says) -> None:
    answer = requests.post(receiver.url, data=body, auth=(USER, PASSWORD), timeout=5)
    assert answer.status_code == 400
    assert answer.json()["status"] == "failure"
    assert says in answer.json()["error"]["message"]
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").rglob("*.json"))


def test_a_body_over_the_limit_is_refused_naming_the_setting(tmp_path) -> None:
    receiver = RunningReceiver(tmp_path / "spool", tmp_path / "log", "--max-body-megabytes",
                               "0.05")
    try:
        sync = sync_for(receiver, {f"user-{i:06d}" for i in range(1000)})
        result = sync.sync(now=0)
        assert not result.ok
        assert "max_body_megabytes" in sync.paused
    finally:
        receiver.stop()


def test_a_full_disk_answers_503_so_mixpanel_retries_and_nothing_partial_is_left(
        tmp_path) -> None:
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs unshare -rm (a user namespace) to mount a small tmpfs")
    spool = tmp_path / "spool"
    spool.mkdir()
    # the receiver in a mount namespace of its own, its spool a 256 KB tmpfs
    wrap = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=256k tmpfs "{spool}" && '
            'exec "$0" "$@"']
    receiver = RunningReceiver(spool, tmp_path / "log", wrap=wrap)
    try:
        sync = sync_for(receiver, {f"user-{i:06d}" for i in range(5000)})
        result = sync.sync(now=0)
        assert not result.ok
        assert result.attempts > result.messages + 5  # 503: retried 5 times, then given up
        assert "No space left" in (tmp_path / "log").read_text()
        health = receiver.health()
        assert health["failed"] >= 6
        assert health["stored"] == result.messages
        # nothing partial: the stored messages all read back whole, no temporary file left
        listing = subprocess.run(["nsenter", "-t", str(receiver.process.pid), "-m", "-U",
                                  "--preserve-credentials", "find", str(spool), "-type", "f"],
                                 capture_output=True, text=True, check=False)
        if listing.returncode == 0:
            assert not [p for p in listing.stdout.split() if p.endswith(".tmp")]
    finally:
        receiver.stop()


def test_a_receiver_killed_mid_request_kept_every_message_it_answered(tmp_path) -> None:
    spool = tmp_path / "spool"
    receiver = RunningReceiver(spool, tmp_path / "log")
    sync = sync_for(receiver, set())
    answered: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post_until_killed(worker: int) -> None:
        with requests.Session() as session:
            for n in range(10_000):
                if stop.is_set():
                    return
                body = next(iter(sync.bodies("add_members", [f"w{worker}-{n}-{i}"
                                                             for i in range(200)])))
                try:
                    answer = session.post(receiver.url, data=body, auth=(USER, PASSWORD),
                                          timeout=5)
                except requests.RequestException:
                    return
                if answer.status_code == 200:
                    with lock:
                        answered.append(body)

    workers = [threading.Thread(target=post_until_killed, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    while len(answered) < 50:
        time.sleep(0.01)
    receiver.stop(signal.SIGKILL)
    stop.set()
    for worker in workers:
        worker.join()
    stored = {json.dumps(m, sort_keys=True) for m in spooled(spool, 42)}  # every file whole
    for body in answered:
        assert json.dumps(json.loads(body), sort_keys=True) in stored
    # and a restarted receiver serves on, over what the killed one left
    again = RunningReceiver(spool, tmp_path / "log")
    try:
        assert sync_for(again, {"after"}).sync(now=0).ok
    finally:
        again.stop()


def test_the_log_shows_neither_bodies_nor_secrets(receiver, tmp_path) -> None:
    sync = sync_for(receiver, {"member-id-5b1e9d", "member-id-77c2aa"})
    assert sync.sync(now=0).ok
    sync.auth = (USER, "wrong-pass-3c1d0e")
    sync.sync(now=1800)
    assert receiver.stop() == 0  # SIGTERM: a clean stop
    log = (tmp_path / "receiver.log").read_text()
    assert "members page 1/1 of cohort 42 (2 members" in log
    for secret in (PASSWORD, "wrong-pass-3c1d0e", "member-id-5b1e9d", "example.com"):
        assert secret not in log


def test_settings_come_from_the_environment_and_a_missing_spool_is_named(tmp_path) -> None:
    from mixpanel_cohort_receiver.settings import ReceiverSettings, SettingError  # noqa: PLC0415

    env = {"MIXPANEL_COHORT_RECEIVER_PORT": "9001",
           "MIXPANEL_COHORT_RECEIVER_SPOOL_URL": str(tmp_path),
           "MIXPANEL_COHORT_RECEIVER_USERNAME": "u",
           "MIXPANEL_COHORT_RECEIVER_PASSWORD": "env-secret-9d8c7b",
           "MIXPANEL_COHORT_RECEIVER_SPOOL_OPTIONS": '{"anon": true}'}
    settings = ReceiverSettings.from_sources([], env)
    assert (settings.port, settings.spool_url, settings.spool_options) == \
        (9001, str(tmp_path), {"anon": True})
    assert "env-secret-9d8c7b" not in repr(settings)
    assert ReceiverSettings.from_sources(["--port", "9002"], env).port == 9002
    with pytest.raises(SettingError, match="spool_url is required"):
        ReceiverSettings.from_sources([], {})
    with pytest.raises(SettingError, match="port 0 is out of range"):
        ReceiverSettings.from_sources(["--port", "0"], env)
    with pytest.raises(SettingError, match="username and password go together"):
        ReceiverSettings.from_sources([], {**env, "MIXPANEL_COHORT_RECEIVER_PASSWORD": ""})
    done = subprocess.run([sys.executable, "-m", "mixpanel_cohort_receiver.app"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "spool_url is required" in done.stderr


def test_meltano_invoke_starts_the_receiver_with_settings_from_the_environment(
        tmp_path) -> None:
    meltano = Path(__file__).resolve().parents[2] / ".meltano-venv" / "bin" / "meltano"
    if not meltano.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    port = free_port()
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "MIXPANEL_COHORT_RECEIVER_PORT": str(port),
           "MIXPANEL_COHORT_RECEIVER_SPOOL_URL": str(tmp_path / "spool"),
           "MIXPANEL_COHORT_RECEIVER_USERNAME": USER,
           "MIXPANEL_COHORT_RECEIVER_PASSWORD": PASSWORD}
    with (tmp_path / "meltano.log").open("wb") as log:
        process = subprocess.Popen([str(meltano), "invoke", "mixpanel-cohort-receiver"],
                                   cwd=meltano.parent.parent.parent, env=env, stdout=log,
                                   stderr=log, start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, tmp_path / "meltano.log")
        sync = CohortWebhookSync(f"http://127.0.0.1:{port}/", 42, "VIP", auth=(USER, PASSWORD),
                                 members={"a", "b"})
        assert sync.sync(now=0).ok
        assert len(spooled(tmp_path / "spool", 42)) == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert PASSWORD not in (tmp_path / "meltano.log").read_text()
