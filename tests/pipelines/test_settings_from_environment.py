"""Every setting of every plugin given through its Meltano environment variable.

For each plugin in meltano.yml, every setting meltano.yml declares gets a valid value (made
from its kind and the plugin's own schema: range, options, items) through
`<PLUGIN>_<SETTING>`, all at once. `meltano config print` must show each value (masked if
sensitive; Meltano makes a Decimal of a `kind: decimal` value it then cannot print, and refuses
"2" for options [1, 2]), `--about` (the receiver: `--help`) must list the setting, and the plugin
must take the config Meltano hands it and read each value back. A setting added to a plugin
is covered without touching this test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
RECEIVER = "mixpanel-cohort-receiver"
# plugin -> (module run with --about, the class that reads its config)
PLUGINS = {
    "tap-braze-currents": ("tap_braze_currents.tap", "TapBrazeCurrents"),
    "target-mixpanel": ("target_mixpanel.target", "TargetMixpanel"),
    "tap-mixpanel-cohorts": ("tap_mixpanel_cohorts.tap", "TapMixpanelCohorts"),
    "target-braze": ("target_braze.target", "TargetBraze"),
    RECEIVER: ("mixpanel_cohort_receiver.app", "ReceiverSettings"),
}
URL = "http://127.0.0.1:9"
MASK = "*****"  # how `meltano config print` shows a sensitive setting's value
# Settings whose strings have a form a kind cannot say: URLs, folders, files, a BATCH config.
FORMED: dict[str, Callable[[Path], Any]] = {
    "api_url": lambda tmp: URL,
    "rest_endpoint": lambda tmp: URL,
    "storage_url": lambda tmp: str(tmp / "export"),
    "snapshot_url": lambda tmp: str(tmp / "snapshots"),
    "spool_url": lambda tmp: str(tmp / "spool"),
    "dead_letter_path": lambda tmp: str(tmp / "dead-letters.jsonl"),
    "dry_run_path": lambda tmp: str(tmp / "dry-run"),
    "batch_config": lambda tmp: {"encoding": {"format": "jsonl", "compression": "none"},
                                 "storage": {"root": (tmp / "batches").as_uri()},
                                 "batch_size": 100},
}


def meltano_plugins() -> dict[str, dict[str, Any]]:
    """meltano.yml's own plugins (not the inherited ones), by name."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return {p["name"]: p for kind in project["plugins"].values() for p in kind
            if p["name"] in PLUGINS}


def env_name(plugin: str, setting: str) -> str:
    return f"{plugin}_{setting}".upper().replace("-", "_")


def _within(prop: dict[str, Any], wanted: float, integer: bool) -> float:
    """`wanted`, moved inside the range the schema gives."""
    high = prop.get("maximum")
    if high is not None and wanted > high:
        wanted = high
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    if low is not None and (wanted < low or (wanted == low and "exclusiveMinimum" in prop)):
        wanted = low + 1 if integer else low + min(1, ((high or low + 2) - low) / 2)
    return int(wanted) if integer else wanted


class Values:
    """A valid value per setting, from its kind (meltano.yml) and its schema (the plugin)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.days = 0

    def of(self, setting: dict[str, Any], prop: dict[str, Any]) -> Any:
        name, kind = setting["name"], setting["kind"]
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        if name in FORMED:
            return FORMED[name](self.tmp_path)
        if kind == "options":  # the last: not the default, mostly
            return setting["options"][-1]["value"]
        if kind == "boolean":
            return not prop.get("default", False)
        if kind == "integer":
            return _within(prop, 2, integer=True)
        if kind == "date_iso8601":  # in the order declared (start_date before end_date)
            self.days += 1
            return f"2025-01-{self.days:02d}T00:00:00Z"
        if kind == "array":
            items = prop.get("items") or {"type": "string"}
            return [self.item(name, items, index) for index in range(prop.get("minItems", 1))]
        if kind == "object":
            return {"key": f"{name}-value"}
        if kind == "decimal" or (kind == "string" and "number" in types):  # 2.5 as a string
            return str(_within(prop, 2.5, integer=False))
        if kind == "string" and "integer" in types:  # an id as a number or numeric string
            return "12345"
        assert kind == "string", f"{name}: no value made for kind {kind}"
        return f"{name}-value"

    def item(self, name: str, items: dict[str, Any], index: int) -> Any:
        types = items.get("type", "string")
        types = [types] if isinstance(types, str) else types
        if "number" in types:
            return _within(items, 0.5 + index, integer=False)
        if "integer" in types:
            return _within(items, 1 + index, integer=True)
        return f"{name}-value-{index}"


def in_environment(value: Any) -> str:
    """How a value is written in an environment variable: arrays and objects as JSON."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def same(given: Any, got: Any) -> bool:
    """Whether a value read back is the one given (a numeric string read as a number, ...)."""
    if isinstance(given, str) and given.endswith("Z") and isinstance(got, str):
        def parsed(v: str) -> dt.datetime:
            return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        return parsed(given) == parsed(got)
    if isinstance(given, str) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return float(given) == got
    return bool(given == got)


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


# Reads the config Meltano printed as the plugin would (--config): SDK plugins validate it and
# read their typed settings; the receiver reads MIXPANEL_COHORT_RECEIVER_* as `meltano invoke`
# passes them. Prints {setting: value read} (dates in ISO 8601).
READ_BACK = """
import dataclasses, json, sys
from {module} import {cls} as Plugin
config = json.load(open(sys.argv[1]))
if Plugin.__name__ == "ReceiverSettings":
    settings = Plugin.from_sources([], {{
        "MIXPANEL_COHORT_RECEIVER_" + name.upper(): value if isinstance(value, str)
        else json.dumps(value) for name, value in config.items()}})
else:
    settings = getattr(Plugin(config=config, validate_config=True), "settings", None)
read = {{}}
if dataclasses.is_dataclass(settings):
    read = {{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}}
print(json.dumps(read, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else list(v)))
"""


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_every_setting_passes_through_its_environment_variable(plugin: str,
                                                                tmp_path: Path) -> None:
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    for folder in ("export", "snapshots", "spool", "dry-run", "batches"):
        (tmp_path / folder).mkdir()
    module, cls = PLUGINS[plugin]
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    declared = meltano_plugins()[plugin]["settings"]
    assert declared, f"meltano.yml declares no settings of {plugin}"

    # what the plugin says about itself: --about (the receiver: --help) lists every setting
    if plugin == RECEIVER:
        from mixpanel_cohort_receiver.settings import ReceiverSettings  # noqa: PLC0415
        schema = ReceiverSettings.schema()["properties"]
        helped = run([sys.executable, "-m", module, "--help"], env)
        assert helped.returncode == 0, helped.stderr
        listed = {s["name"] for s in declared if f"--{s['name'].replace('_', '-')}"
                  in helped.stdout}
    else:
        about = run([sys.executable, "-m", module, "--about", "--format", "json"], env)
        assert about.returncode == 0, about.stderr[-3000:]
        schema = json.loads(about.stdout)["settings"]["properties"]
        listed = set(schema) | {"batch_config"}  # the SDK adds batch_config when a tap starts
    assert {s["name"] for s in declared} <= listed

    values = Values(tmp_path)
    given = {s["name"]: values.of(s, schema.get(s["name"], {})) for s in declared}
    env.update({env_name(plugin, name): in_environment(value) for name, value in given.items()})

    printed = run([str(MELTANO), "config", "print", plugin], env)
    assert printed.returncode == 0, printed.stderr[-3000:]
    config = json.loads(printed.stdout)
    secret = {s["name"] for s in declared if s.get("sensitive")}
    shown = {name: MASK if name in secret else value for name, value in given.items()}
    wrong = {name: (value, config.get(name)) for name, value in shown.items()
             if not same(value, config.get(name))}
    assert not wrong, f"meltano config print {plugin} shows other values: {wrong}"
    config.update({name: given[name] for name in secret})  # what `meltano invoke` hands over

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    read = run([sys.executable, "-c", READ_BACK.format(module=module.replace(
        ".app", ".settings"), cls=cls), str(config_path)], env)
    assert read.returncode == 0, read.stderr[-3000:]
    typed = json.loads(read.stdout.splitlines()[-1])
    wrong = {name: (given[name], typed[name]) for name in set(given) & set(typed)
             if not same(given[name], typed[name])}
    assert not wrong, f"{plugin} read other values than Meltano gave it: {wrong}"
