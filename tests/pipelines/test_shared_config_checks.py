"""What all four plugins get from plugin_support (issue 23): a config file that is not JSON is
named, an unknown setting is warned about with the closest known one, secrets are masked in
every log line and uncaught error, an unwritable dead_letter_path fails at start, and a STATE
value that is not an object is refused by both targets."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_braze_currents.tap import TapBrazeCurrents
from tap_mixpanel_cohorts.tap import TapMixpanelCohorts
from target_braze.target import TargetBraze
from target_mixpanel.target import TargetMixpanel

MARKER = "MRKsharedsecretZ8q3W"
# each plugin: its module, a valid config with MARKER as a secret, and its secret setting
PLUGINS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "tap-braze-currents": (TapBrazeCurrents, "tap_braze_currents.tap",
                           {"storage_url": "/nonexistent", "storage_options": {"key": MARKER}}),
    "tap-mixpanel-cohorts": (TapMixpanelCohorts, "tap_mixpanel_cohorts.tap",
                             {"project_id": "12345", "service_account_username": "sa.user",
                              "service_account_secret": MARKER}),
    "target-mixpanel": (TargetMixpanel, "target_mixpanel.target", {"project_token": MARKER}),
    "target-braze": (TargetBraze, "target_braze.target",
                     {"rest_endpoint": "https://rest.iad-01.braze.com", "api_key": MARKER}),
}
TARGETS = ["target-mixpanel", "target-braze"]
# a typo'd setting of each plugin, and the known setting it is close to
TYPOS = {"tap-braze-currents": ("storage_optons", "storage_options"),
         "tap-mixpanel-cohorts": ("cohort_id", "cohort_ids"),
         "target-mixpanel": ("batchsize", "batch_size"),
         "target-braze": ("request_timeout_second", "request_timeout_seconds")}


def run_module(module: str, args: list[str], cwd: Path, stdin: str = "",
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_a_config_file_that_is_not_json_is_named(plugin: str, tmp_path: Path) -> None:
    _, module, _ = PLUGINS[plugin]
    config = tmp_path / "broken-config.json"
    config.write_text("{'single': 'quotes'}")
    done = run_module(module, ["--config", str(config)], tmp_path)
    assert done.returncode != 0
    assert str(config) in done.stderr
    assert "is not JSON" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_an_unknown_setting_is_named_with_the_closest_known(
        plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    cls, _, config = PLUGINS[plugin]
    typo, known = TYPOS[plugin]
    with caplog.at_level(logging.WARNING):
        cls(config={**config, typo: 5})
    warnings = [r.getMessage() for r in caplog.records if typo in r.getMessage()]
    assert warnings, caplog.text
    assert f"did you mean {known}?" in warnings[0]
    assert not [r for r in caplog.records if "Unknown setting" in r.getMessage()
                and typo not in r.getMessage()]  # no known setting is called unknown


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_log_lines_and_uncaught_errors_are_masked(plugin: str, tmp_path: Path) -> None:
    """Once the config is valid, whatever the plugin logs or dies with has no secret in it."""
    cls, module, config = PLUGINS[plugin]
    script = textwrap.dedent(f"""
        import logging, sys
        from singer_sdk._logging import _setup_console_logging
        from {module} import {cls.__name__} as Plugin
        _setup_console_logging()
        Plugin(config={config!r})
        logging.getLogger("anything").warning("echoed: %s", {MARKER!r})
        try:
            raise ValueError("inner " + {MARKER!r})
        except ValueError:
            logging.getLogger("anything").exception("failed")
        raise RuntimeError("at exit: " + {MARKER!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "echoed: ***" in done.stderr, done.stderr
    assert "RuntimeError: at exit: ***" in done.stderr, done.stderr
    assert MARKER not in done.stderr + done.stdout


@pytest.mark.parametrize("plugin", TARGETS)
def test_an_unwritable_dead_letter_path_fails_at_start(plugin: str, tmp_path: Path) -> None:
    cls, _, config = PLUGINS[plugin]
    (tmp_path / "a-file").write_text("")
    for path in (tmp_path / "a-file" / "dead.jsonl", tmp_path):
        with pytest.raises(ConfigValidationError) as refused:
            cls(config={**config, "dead_letter_path": str(path)})
        assert any("dead_letter_path" in error for error in refused.value.errors)
    assert not (tmp_path / "dead.jsonl").exists()


@pytest.mark.parametrize("plugin", TARGETS)
@pytest.mark.parametrize("value", ["x", [1], 7])
def test_a_state_value_that_is_not_an_object_is_refused(plugin: str, value: Any,
                                                        tmp_path: Path) -> None:
    _, module, config = PLUGINS[plugin]
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({**config, "dry_run": True,
                                       "dry_run_path": str(tmp_path / "dry"),
                                       "dead_letter_path": str(tmp_path / "dl.jsonl")}))
    lines = [json.dumps({"type": "STATE", "value": {"n": 1}}),
             json.dumps({"type": "STATE", "value": value}),
             json.dumps({"type": "STATE", "value": {"n": 2}})]
    done = run_module(module, ["--config", str(config_path)], tmp_path, "\n".join(lines) + "\n")
    assert done.returncode != 0
    assert "STATE message whose value is not a JSON object" in done.stderr
    assert json.dumps(value) in done.stderr  # the line is named
    assert [json.loads(x) for x in done.stdout.splitlines()] in ([], [{"n": 1}])
