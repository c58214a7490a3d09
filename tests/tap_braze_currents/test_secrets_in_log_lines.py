"""The storage secrets never show in the tap's log lines, its libraries' included.

At LOGLEVEL=DEBUG botocore logs every request it makes with its headers: the Authorization
header (the access key id) and the User-Agent, which carries storage_options'
`config_kwargs.user_agent_extra`. The tap's one redaction (its `extra_secrets`: every string of
storage_options, storage_url's user info) must mask them in those lines too, not only in the
errors the tap words itself. (Without extra_secrets the User-Agent's marker shows.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fsspec

from tap_braze_currents.demo_export import write_demo_export
from testkit.services import Service
from tests.conftest import tap_command, write_json

# an access key of an S3-compatible store (MinIO, R2), not AKIA-shaped
S3_KEY = "minio-MARKERlogKey7731"
S3_SECRET = "MARKERlogSecret7731xyz"
OPTION_SECRET = "MARKERlogOption7731"


def test_library_debug_lines_carry_no_storage_secret(s3_server: Service, tmp_path: Path) -> None:
    options = {"endpoint_url": s3_server.storage_options["endpoint_url"], "key": S3_KEY,
               "secret": S3_SECRET, "client_kwargs": {"region_name": "eu-west-1"}}
    fs = fsspec.filesystem("s3", **options)
    if not fs.exists("log-secrets-bucket"):
        fs.mkdir("log-secrets-bucket")
    url = "s3://log-secrets-bucket/export"
    write_demo_export(url, storage_options=options, event_types=["users.behaviors.Purchase"],
                      hours=1, events_per_file=2)
    config = write_json(tmp_path / "config.json", {
        "storage_url": url, "start_date": "2025-04-01T00:00:00Z",
        "storage_options": {**options, "config_kwargs": {"user_agent_extra": OPTION_SECRET}}})
    env = {**os.environ, "LOGLEVEL": "DEBUG", "TAP_BRAZE_CURRENTS_LOGLEVEL": "DEBUG"}
    done = subprocess.run(tap_command(config), capture_output=True, text=True, timeout=600,
                          check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"type": "RECORD"' in done.stdout or '"type":"RECORD"' in done.stdout
    # the lines that would carry the secrets are there (masked): botocore's requests
    requests = [line for line in done.stderr.splitlines()
                if "botocore" in line and "Credential=" in line and "User-Agent" in line]
    assert requests, "no botocore debug line with a request's headers: the test shows nothing"
    for marker in (S3_KEY, S3_SECRET, OPTION_SECRET):
        assert marker not in done.stderr, next(
            line for line in done.stderr.splitlines() if marker in line)[:300]
        assert marker not in done.stdout
