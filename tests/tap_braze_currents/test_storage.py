"""The same export read from real S3, Azure Blob and GCS servers; storage errors users see."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
import pytest

from tap_braze_currents.demo_export import write_demo_export
from tap_braze_currents.event_types import catalog
from tap_braze_currents.storage import CurrentsFile, CurrentsStorage, _version
from testkit.services import Service, self_signed_tls
from testkit.storage_fault_proxy import StorageFaultProxy
from tests.conftest import SAMPLE_TYPES

CLOUDS = [("s3_server", "s3://currents-bucket/exports/currents"),
          ("azure_server", "az://currents-container/exports/currents"),
          ("gcs_server", "gs://currents-bucket/exports/currents")]


def _make_bucket(service: Service, url: str) -> None:
    fs, path = fsspec.core.url_to_fs(url, **service.storage_options)
    bucket = path.split("/")[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)


@pytest.mark.parametrize(("server", "url"), CLOUDS)
def test_every_event_read_exactly_once_from_cloud_storage(server: str, url: str, run_tap,
                                                          request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(server)
    _make_bucket(service, url)
    export = write_demo_export(url, storage_options=service.storage_options,
                               event_types=SAMPLE_TYPES, hours=2, events_per_file=15)
    config = {"storage_url": url, "storage_options": service.storage_options,
              "prefetch_files": 3}
    run = run_tap(config)
    assert run.returncode == 0, run.stderr
    expected = [i for ids in export.ids.values() for i in ids]
    assert Counter(run.ids) == Counter(expected)
    assert all(m["record"]["_sdc_source_file"].split("://")[0] in {"s3", "az", "abfs", "gs", "gcs"}
               for m in run.records)
    again = run_tap(config, run.last_state)
    assert again.returncode == 0, again.stderr
    assert again.records == []


def test_missing_bucket_fails_naming_the_setting(s3_server: Service, run_tap) -> None:
    run = run_tap({"storage_url": "s3://no-such-bucket/currents",
                   "storage_options": s3_server.storage_options})
    assert run.returncode != 0
    assert "storage_url" in run.stderr
    assert "no-such-bucket" in run.stderr
    assert s3_server.storage_options["secret"] not in run.stderr + run.stdout


def test_wrong_credentials_fail_naming_the_setting_without_the_secret(
        azure_server: Service, run_tap) -> None:
    url = "az://currents-container/exports"
    _make_bucket(azure_server, url)
    bad = azure_server.storage_options["connection_string"].replace(
        "AccountKey=Eby8", "AccountKey=Wrong")
    run = run_tap({"storage_url": url, "storage_options": {"connection_string": bad}})
    assert run.returncode != 0
    assert "storage_options" in run.stderr or "storage_url" in run.stderr
    assert "AccountKey=Wrong" not in run.stderr
    assert bad not in run.stderr


def test_unreachable_endpoint_fails_naming_the_setting(run_tap) -> None:
    secret = "unreachable-secret-value-123"
    run = run_tap({"storage_url": "s3://bucket/currents",
                   "storage_options": {"key": "k", "secret": secret,
                                       "endpoint_url": "http://127.0.0.1:9",
                                       "config_kwargs": {"connect_timeout": 1,
                                                         "retries": {"max_attempts": 1}}}})
    assert run.returncode != 0
    assert "storage_url" in run.stderr
    assert secret not in run.stderr + run.stdout


def test_unknown_scheme_is_named(run_tap) -> None:
    run = run_tap({"storage_url": "ftpx://somewhere/currents"})
    assert run.returncode != 0
    assert "storage_url" in run.stderr
    assert "ftpx" in run.stderr
    assert "s3://" in run.stderr


def test_settings_of_the_wrong_type_are_named_without_secret_values(run_tap) -> None:
    run = run_tap({"storage_url": "s3://bucket/currents", "lookback_hours": "many",
                   "storage_options": "key=AKIAWRONGTYPESECRET"})
    assert run.returncode != 0
    assert "config['lookback_hours']" in run.stderr
    assert "config['storage_options']" in run.stderr
    assert "AKIAWRONGTYPESECRET" not in run.stderr + run.stdout


def test_discovery_works_offline_from_the_catalog(tmp_path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "storage_url": "s3://bucket/currents",
        "storage_options": {"endpoint_url": "http://127.0.0.1:9", "key": "k",
                            "secret": "offline-secret-value",
                            "config_kwargs": {"connect_timeout": 1,
                                              "retries": {"max_attempts": 1}}}}))
    done = subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config",
                           str(config), "--discover"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    streams = {s["tap_stream_id"] for s in json.loads(done.stdout)["streams"]}
    assert len(streams) == 102
    assert "users_messages_email_send" in streams
    assert "Discovery without storage listing" in done.stderr
    assert "offline-secret-value" not in done.stderr + done.stdout


def test_tls_certificates_of_storage_are_checked_unless_turned_off(
        s3_server: Service, run_tap, tmp_path) -> None:
    url = "s3://tls-bucket/currents"
    _make_bucket(s3_server, url)
    export = write_demo_export(url, storage_options=s3_server.storage_options,
                               event_types=["users.behaviors.CustomEvent"], hours=1,
                               events_per_file=5)
    context = self_signed_tls(tmp_path)
    proxy = StorageFaultProxy(s3_server.endpoint, tls=context).start()
    try:
        options = {**s3_server.storage_options, "endpoint_url": proxy.url,
                   "config_kwargs": {"retries": {"max_attempts": 1}}}
        checked = run_tap({"storage_url": url, "storage_options": options})
        assert checked.returncode != 0
        assert "storage_url" in checked.stderr
        assert "TLS certificate was not accepted" in checked.stderr
        assert s3_server.storage_options["secret"] not in checked.stderr
        options["client_kwargs"] = {**options["client_kwargs"], "verify": False}
        unchecked = run_tap({"storage_url": url, "storage_options": options})
        assert unchecked.returncode == 0, unchecked.stderr
        assert "storage_options.client_kwargs.verify is false" in unchecked.stderr
        assert Counter(unchecked.ids) == Counter(i for ids in export.ids.values() for i in ids)
    finally:
        proxy.stop()


def test_s3_faults_cost_nothing(s3_server: Service, run_tap) -> None:
    """503 SlowDown, dropped connections, transfers cut midway and slow answers: retried."""
    url = "s3://flaky-bucket/currents"
    _make_bucket(s3_server, url)
    export = write_demo_export(url, storage_options=s3_server.storage_options,
                               event_types=["users.behaviors.CustomEvent",
                                            "users.behaviors.Purchase"], hours=3,
                               events_per_file=40)
    proxy = StorageFaultProxy(s3_server.endpoint, {"slowdown": 0.15, "drop": 0.15, "cut": 0.15,
                                                   "slow": 0.1}, seed=5, slow_seconds=0.2)
    proxy.start()
    try:
        run = run_tap({"storage_url": url,
                       "storage_options": {**s3_server.storage_options,
                                           "endpoint_url": proxy.url}})
    finally:
        proxy.stop()
    assert run.returncode == 0, run.stderr
    assert set(proxy.faults) == {"slowdown", "drop", "cut", "slow"}  # every fault happened
    assert Counter(run.ids) == Counter(i for ids in export.ids.values() for i in ids)


# Only when the tap never has that many requests out at once (the test fails then): how long
# the proxy holds them before it answers anyway. Below s3fs's read timeout (15 s), after which
# the tap would send a request again; it issues what it overlaps within milliseconds.
GIVE_UP_SECONDS = 10
# How long after the second stream's hour listing is answered the first stream's is: time for
# the tap's listing thread to parse a one-hour answer (milliseconds) on a loaded machine.
LISTING_MARGIN_SECONDS = 1.0


def _event_type_of(path: str) -> str | None:
    """The event type whose hour folder a request lists, or whose file it fetches."""
    found = re.search(r"event_type(?:%3D|=)([^/%&]+)(?:%2F|/)date", path)
    return found[1] if found else None


def _kind_of_request(path: str) -> str:
    """"listing" (of an hour folder), "object" (an Avro file) or "other" (the listings of the
    export's root and event types, which the tap needs answered before it knows the hours)."""
    if "list-type=" in path:
        return "listing" if "date%3D" in path or "date=" in path else "other"
    return "object" if path.split("?", maxsplit=1)[0].endswith(".avro") else "other"


class _InFlightProxy(StorageFaultProxy):
    """The fault proxy holding back the answers to hour listings and Avro file fetches until
    `hold` of a kind are in flight at once (then it answers every one of that kind), and
    counting the most it held, by kind. No round-trip time, no timing: only how many requests
    the tap has out before it needs an answer (a request sent again counts once).
    """

    def __init__(self, upstream: str, hold: dict[str, int],
                 listed_after: tuple[str, str] | None = None, **kwargs) -> None:
        super().__init__(upstream, **kwargs)
        self._hold = hold
        # (first, second): first's hour listing answered LISTING_MARGIN_SECONDS after second's
        self._listed_after = listed_after
        self._listings_answered: set[str] = set()
        self._changed = threading.Condition()
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._released: set[str] = set()
        self.most_in_flight: Counter[str] = Counter()
        self.gave_up: set[str] = set()  # kinds never `hold` in flight at once

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        kind = _kind_of_request(path)
        event_type = _event_type_of(path)
        if kind == "object" and self._listed_after and event_type in self._listed_after:
            kind = "object of the pair"
        with self._changed:
            # by path: a request the client sent again after its read timeout counts once
            self._in_flight[kind, path] += 1
            paths = {p for (k, p), n in self._in_flight.items() if k == kind and n}
            self.most_in_flight[kind] = max(self.most_in_flight[kind], len(paths))
            self._changed.notify_all()
            if kind in self._hold and kind not in self._released:
                if not self._changed.wait_for(
                        lambda: kind in self._released
                        or self.most_in_flight[kind] >= self._hold[kind],
                        timeout=GIVE_UP_SECONDS):
                    self.gave_up.add(kind)
                self._released.add(kind)
                self._changed.notify_all()
        if kind == "listing" and self._listed_after and event_type == self._listed_after[0]:
            with self._changed:
                if not self._changed.wait_for(
                        lambda: self._listed_after[1] in self._listings_answered,
                        timeout=GIVE_UP_SECONDS):
                    self.gave_up.add("listing order")
            threading.Event().wait(LISTING_MARGIN_SECONDS)
        try:
            return super().forward(method, path, headers, body)
        finally:
            with self._changed:
                self._in_flight[kind, path] -= 1
                if kind == "listing" and event_type:
                    self._listings_answered.add(event_type)
                self._changed.notify_all()


def _read_through_in_flight_proxy(s3_server: Service, run_tap, url: str, hold: dict[str, int],
                                  listed_after: tuple[str, str] | None = None,
                                  **export: Any) -> Counter[str]:
    """A run from a demo export behind the holding proxy; every event must come out once.

    Returns the most requests the proxy held at once, by kind.
    """
    _make_bucket(s3_server, url)
    written = write_demo_export(url, storage_options=s3_server.storage_options,
                                integrations=1, **export)
    proxy = _InFlightProxy(s3_server.endpoint, hold, listed_after)
    proxy.start()
    try:
        run = run_tap({"storage_url": url, "start_date": "2025-04-01T00:00:00Z",
                       "storage_options": {**s3_server.storage_options,
                                           "endpoint_url": proxy.url}})
    finally:
        proxy.stop()
    assert run.returncode == 0, run.stderr
    assert Counter(run.ids) == Counter(i for ids in written.ids.values() for i in ids)
    assert not proxy.gave_up, f"never {hold} in flight at once: {proxy.most_in_flight}"
    return proxy.most_in_flight


def test_remote_listings_and_small_file_fetches_overlap(s3_server: Service, run_tap) -> None:
    """Round trips overlap: the hours of a run are listed at once and small files fetched many
    at a time (not `prefetch_files: 4` at most, as before, nor botocore's pool of 10
    connections), and every event arrives once."""
    hold = {"listing": 12, "object": 24}  # prefetch_files: 32
    most = _read_through_in_flight_proxy(s3_server, run_tap, "s3://overlap-bucket/currents",
                                         hold, event_types=SAMPLE_TYPES[:2], hours=8,
                                         files_per_hour=10, events_per_file=3)
    assert most["listing"] >= hold["listing"], most
    assert most["object"] >= hold["object"], most


def test_each_stream_starts_reading_the_next_streams_files(s3_server: Service, run_tap) -> None:
    """An hourly run holds a few files a stream: the next stream's are read while this one's
    are, so a stream does not begin with a round trip of its own; every event once.

    Of two streams synced one after the other, the proxy answers the first one's hour listing
    only after the second one's (listed in the background) was answered, with a margin for
    the tap to take it in, and holds the two streams' file fetches until their 12 files are in
    flight at once: without the read ahead, only the first stream's 6 ever are."""
    types = SAMPLE_TYPES[:6]
    in_sync_order = list(catalog())  # the tap syncs its streams in catalog order
    pair = next((a, b) for a, b in itertools.pairwise(in_sync_order)
                if a in types and b in types)
    most = _read_through_in_flight_proxy(s3_server, run_tap, "s3://read-ahead-bucket/currents",
                                         {"object of the pair": 12}, listed_after=pair,
                                         event_types=types, hours=1, files_per_hour=6,
                                         events_per_file=2)
    assert most["object of the pair"] >= 12, most  # two streams' 6 files


def test_a_pool_size_in_storage_options_is_kept(s3_server: Service) -> None:
    """The tap grows botocore's pool to what it keeps in flight, unless the user sized it."""
    options = {**s3_server.storage_options, "config_kwargs": {"max_pool_connections": 7}}
    mine = CurrentsStorage("s3://any-bucket/currents", options, connections=96)
    grown = CurrentsStorage("s3://any-bucket/currents", s3_server.storage_options, connections=96)
    assert mine.fs.config_kwargs["max_pool_connections"] == 7
    assert grown.fs.config_kwargs["max_pool_connections"] == 96
    assert "config_kwargs" not in s3_server.storage_options  # the caller's options untouched


def test_local_listing_gives_what_fsspec_gives(tmp_path) -> None:
    """The local listing (os.scandir) names the same files, sizes and versions as fsspec's find:
    states written by earlier versions keep their files read."""
    write_demo_export(str(tmp_path), event_types=SAMPLE_TYPES[:2], hours=2, events_per_file=2)
    storage = CurrentsStorage(str(tmp_path))
    fs = fsspec.filesystem("file")
    for event_type in SAMPLE_TYPES[:2]:
        expected = []
        for type_folder in storage.event_type_folders[event_type]:
            for hour_folder in fs.ls(type_folder):
                (Path(hour_folder) / "notes.txt").write_text("not avro")
                hour = hour_folder.rsplit("date=", 1)[1]
                expected += [CurrentsFile(hour=hour, path=path, event_type=event_type,
                                          size=int(info["size"]), version=_version(info))
                             for path, info in fs.find(hour_folder, detail=True).items()
                             if path.endswith(".avro")]
        listed = storage.files(event_type, None, None)
        assert listed == sorted(expected)
        assert len(listed) == 2 * 2  # integrations x hours
