"""What the plugins say about themselves: --version, and the tap's catalog (replication)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tap_braze_currents.demo_export import write_demo_export
from tests.conftest import write_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("module", "name"), [("tap_braze_currents.tap", "tap-braze-currents"),
                                              ("target_mixpanel.target", "target-mixpanel"),
                                              ("target_braze.target", "target-braze")])
def test_version_is_the_package_version(module: str, name: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    distribution = re.search(r'^name = "([^"]+)"', pyproject, re.MULTILINE)[1]  # [project]
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.startswith(f"{name} v{metadata.version(distribution)},"), done.stdout


def test_the_catalog_says_every_stream_is_incremental(tmp_path: Path) -> None:
    write_demo_export(str(tmp_path / "export"),
                      event_types=["users.behaviors.CustomEvent"], hours=1, events_per_file=2)
    config = write_json(tmp_path / "config.json", {"storage_url": str(tmp_path / "export")})
    done = subprocess.run([sys.executable, "-m", "tap_braze_currents.tap", "--config",
                           str(config), "--discover"], capture_output=True, text=True,
                          timeout=120, check=True)
    streams = json.loads(done.stdout)["streams"]
    assert len(streams) > 100
    for stream in streams:
        assert stream["replication_method"] == "INCREMENTAL", stream["tap_stream_id"]
        root = next(m["metadata"] for m in stream["metadata"] if m["breadcrumb"] == [])
        assert root["forced-replication-method"] == "INCREMENTAL"
