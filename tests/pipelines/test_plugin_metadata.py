"""What the plugins say about themselves: --version, --about, the tap's catalog (replication)."""

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


# every command the distribution installs that a user runs as a plugin or a service
COMMANDS = [("tap_braze_currents.tap", "tap-braze-currents"),
            ("target_mixpanel.target", "target-mixpanel"),
            ("tap_mixpanel_cohorts.tap", "tap-mixpanel-cohorts"),
            ("target_braze.target", "target-braze"),
            ("mixpanel_cohort_receiver.app", "mixpanel-cohort-receiver")]
SINGER_PLUGINS = [command for command in COMMANDS if command[1] != "mixpanel-cohort-receiver"]


def package_version() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text()
    distribution = re.search(r'^name = "([^"]+)"', pyproject, re.MULTILINE)[1]  # [project]
    return metadata.version(distribution)


def says(module: str, *flags: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, *flags], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def test_every_plugin_and_the_receiver_is_covered() -> None:
    scripts = re.search(r"\[project.scripts\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(),
                        re.DOTALL)[1]
    installed = {line.split(" = ")[0] for line in scripts.splitlines()}
    assert {name for _, name in COMMANDS} == installed - {"braze-currents-demo-export"}


@pytest.mark.parametrize(("module", "name"), COMMANDS, ids=[name for _, name in COMMANDS])
def test_version_is_the_package_version(module: str, name: str) -> None:
    out = says(module, "--version")
    assert re.match(rf"{re.escape(name)} v{re.escape(package_version())}(,|$)", out), out


@pytest.mark.parametrize(("module", "name"), COMMANDS, ids=[name for _, name in COMMANDS])
def test_about_names_the_plugin_its_version_and_its_settings(module: str, name: str) -> None:
    about = json.loads(says(module, "--about", "--format=json"))
    assert about["name"] == name
    assert about["version"] == package_version()
    settings = about["settings"]["properties"]
    assert settings, "no settings described"
    for setting, schema in settings.items():
        assert schema.get("description"), f"{name}: {setting} has no description"


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
