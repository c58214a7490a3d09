"""Regenerate the plugin definitions in meltano.yml from the plugins' own settings schemas.

    python tools/generate_meltano.py          # rewrite the settings of every plugin
    python tools/generate_meltano.py --check  # exit 1 if meltano.yml is out of date

Each setting appears once in the code (the plugin's config_jsonschema); meltano.yml's settings
(name, kind, description, sensitive) are derived from it, never written by hand.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from singer_sdk import Tap  # noqa: E402
from singer_sdk.helpers.capabilities import PluginCapabilities  # noqa: E402

from mixpanel_cohort_receiver.settings import ReceiverSettings  # noqa: E402
from tap_braze_currents.tap import TapBrazeCurrents  # noqa: E402
from tap_mixpanel_cohorts.tap import TapMixpanelCohorts  # noqa: E402
from target_braze.target import TargetBraze  # noqa: E402
from target_mixpanel.event_mapping import braze_event_names, stream_of  # noqa: E402
from target_mixpanel.target import TargetMixpanel  # noqa: E402

# Fan-out: the default selection split into disjoint groups by event-type prefix (first match
# wins; the last catches the rest), one inherited extractor, job and schedule per group, each
# with a state id of its own, so Airflow can run them on different workers.
FAN_OUT_GROUPS = [
    ("email", "users.messages.email."),
    ("messaging", "users.messages."),
    ("behaviors", "users.behaviors."),
    ("journeys", ""),
]

# The cohort sync: `meltano run` once by hand is the one-time sync; the schedule is the dynamic
# sync (every two hours, as the seed asks). `dev` has no Mixpanel project to read cohorts from:
# the project's Airflow DAGs (orchestrate/airflow/dags) leave the schedule out there.
COHORT_JOB = {"name": "mixpanel-cohorts-to-braze", "tasks": ["tap-mixpanel-cohorts target-braze"]}
COHORT_SCHEDULE = {"name": "mixpanel-cohorts-to-braze-every-2-hours",
                   "interval": "0 */2 * * *", "job": "mixpanel-cohorts-to-braze",
                   "annotations": {"airflow": {"skip_environments": ["dev"]}}}
TARGET_BRAZE = {"name": "target-braze", "namespace": "target_braze",
                "pip_url": "-e .[target-braze]",
                "executable": "target-braze", "capabilities": ["about", "stream-maps"]}

KINDS = {"string": "string", "integer": "integer", "boolean": "boolean", "object": "object",
         "array": "array"}


class UnpassableSettingError(ValueError):
    """A setting Meltano cannot pass on from the environment (`kind: decimal`, number options)."""


def _kind(schema: dict[str, Any], name: str = "") -> str:
    if "enum" in schema:
        if not all(isinstance(value, str) for value in schema["enum"]):
            # Meltano compares a value set through the environment (a string) with each option
            msg = (f"setting {name!r} has options that are not strings: Meltano refuses "
                   "TAP_X_SETTING=2 as \"not a valid choice\" of [1, 2]. Declare a number with "
                   "a minimum and maximum instead")
            raise UnpassableSettingError(msg)
        return "options"
    types = schema.get("type", "string")
    types = [types] if isinstance(types, str) else types
    if {"number", "integer"} & set(types) and "string" in types:  # a number or numeric string
        return "string"
    if "number" in types:
        # Meltano (4.4) makes a Decimal of a `kind: decimal` value set through the environment
        # (TAP_X_SETTING=2.5) and then fails writing the config ("Object of type Decimal is not
        # JSON serializable"), in `meltano config print` and `meltano run` alike.
        msg = (f"setting {name!r} is a plain number: Meltano cannot pass a decimal set through "
               "the environment. Declare it as a number or numeric string (type "
               "[\"number\", \"string\"] with a pattern), as meltano.yml then says kind: string")
        raise UnpassableSettingError(msg)
    main = next(t for t in types if t != "null")
    if main == "string" and schema.get("format") == "date-time":
        return "date_iso8601"
    return KINDS[main]


BATCH_CONFIG_DESCRIPTION = (
    "BATCH mode: write records to JSON Lines batch files and announce them with BATCH "
    "messages instead of one RECORD message per event, e.g. {\"encoding\": {\"format\": "
    "\"jsonl\", \"compression\": \"none\"}, \"storage\": {\"root\": "
    "\"file:///var/tmp/braze-batches\"}, \"batch_size\": 10000}. Unset: RECORD messages.")


def settings_of(plugin: type) -> list[dict[str, Any]]:
    """Meltano setting definitions from a Singer SDK plugin's config_jsonschema.

    A tap with the SDK's batch capability also gets `batch_config` (the SDK adds it to the
    schema only when a tap starts).
    """
    properties = dict(plugin.config_jsonschema["properties"])
    if PluginCapabilities.BATCH in plugin.capabilities and issubclass(plugin, Tap):
        properties["batch_config"] = {"type": ["object"],
                                      "description": BATCH_CONFIG_DESCRIPTION}
    result = []
    for name, schema in properties.items():
        setting: dict[str, Any] = {"name": name, "kind": _kind(schema, name)}
        if schema.get("description"):
            setting["description"] = schema["description"]
        if "enum" in schema:
            setting["options"] = [{"label": str(v), "value": v} for v in schema["enum"]]
        if schema.get("secret"):
            setting["sensitive"] = True
        result.append(setting)
    return result


def exported_types() -> list[str]:
    """The event types Braze's own Mixpanel export sends (in_braze_mixpanel_export)."""
    return sorted(t for t, entry in braze_event_names().items()
                  if entry["in_braze_mixpanel_export"])


def default_selection() -> list[str]:
    """Meltano select patterns of the exported types."""
    return [f"{stream_of(event_type)}.*" for event_type in exported_types()]


def fan_out() -> dict[str, list[str]]:
    """Group name -> select patterns; the groups are disjoint and cover the default selection."""
    groups: dict[str, list[str]] = {name: [] for name, _ in FAN_OUT_GROUPS}
    for event_type in exported_types():
        name = next(n for n, prefix in FAN_OUT_GROUPS if event_type.startswith(prefix))
        groups[name].append(f"{stream_of(event_type)}.*")
    return groups


def apply_fan_out(project: dict[str, Any]) -> None:
    """Inherited extractors, jobs and hourly schedules, one per fan-out group."""
    extractors = [e for e in project["plugins"]["extractors"] if "inherit_from" not in e]
    jobs = [j for j in project.get("jobs", []) if not j["name"].startswith("braze-to-mixpanel-")]
    schedules = [s for s in project.get("schedules", [])
                 if not s["name"].startswith("braze-to-mixpanel-")]
    for name, select in fan_out().items():
        extractor = f"tap-braze-currents--{name}"
        extractors.append({"name": extractor, "inherit_from": "tap-braze-currents",
                           "select": select})
        jobs.append({"name": f"braze-to-mixpanel-{name}",
                     "tasks": [f"{extractor} target-mixpanel"]})
        schedules.append({"name": f"braze-to-mixpanel-{name}-hourly", "interval": "@hourly",
                          "job": f"braze-to-mixpanel-{name}"})
    project["plugins"]["extractors"] = extractors
    project["jobs"] = jobs
    project["schedules"] = schedules
    for environment in project.get("environments", []):
        _hand_down_object_settings(environment, [f"tap-braze-currents--{n}" for n in fan_out()])


def _hand_down_object_settings(environment: dict[str, Any], children: list[str]) -> None:
    """Repeat tap-braze-currents' object-valued settings (batch_config) of an environment for
    each fan-out extractor: Meltano (4.4.1) hands an inherited plugin only the top-level keys of
    such a setting (prod's fan-out groups got batch_config {"batch_size": 10000} and failed)."""
    extractors = environment.get("config", {}).get("plugins", {}).get("extractors", [])
    kept = [e for e in extractors if e["name"] not in children]
    parent = next((e for e in kept if e["name"] == "tap-braze-currents"), {})
    objects = {k: v for k, v in parent.get("config", {}).items() if isinstance(v, dict)}
    if objects:
        kept += [{"name": child, "config": copy.deepcopy(objects)} for child in children]
    if extractors:
        environment["config"]["plugins"]["extractors"] = kept


# Mixpanel cohorts into Braze: target-braze applies each user's whole set of cohorts.
COHORTS_TAP = {
    "name": "tap-mixpanel-cohorts", "namespace": "tap_mixpanel_cohorts",
    "pip_url": "-e .[tap-mixpanel-cohorts]", "executable": "tap-mixpanel-cohorts",
    "capabilities": ["catalog", "discover", "state", "about", "stream-maps",
                     "schema-flattening"],
}
COHORTS_SELECT = ["user_cohorts.*"]


def ensure_cohorts_tap(project: dict[str, Any]) -> None:
    """tap-mixpanel-cohorts among the extractors (added once, then kept where it is)."""
    extractors = project["plugins"]["extractors"]
    found = next((e for e in extractors if e["name"] == COHORTS_TAP["name"]), None)
    if found is None:
        extractors.insert(1, dict(COHORTS_TAP))
    else:
        found.update(COHORTS_TAP)


def apply_cohort_sync(project: dict[str, Any]) -> None:
    """The target-braze loader, and the cohort sync's job and schedule."""
    loaders = project["plugins"]["loaders"]
    if not any(loader["name"] == TARGET_BRAZE["name"] for loader in loaders):
        loaders.append(dict(TARGET_BRAZE))
    for key, entry in (("jobs", COHORT_JOB), ("schedules", COHORT_SCHEDULE)):
        project[key] = [e for e in project[key] if e["name"] != entry["name"]] + [dict(entry)]


RECEIVER = {"name": "mixpanel-cohort-receiver", "namespace": "mixpanel_cohort_receiver",
            "pip_url": "-e .[mixpanel-cohort-receiver]",
            "executable": "mixpanel-cohort-receiver"}


def apply_receiver_utility(project: dict[str, Any]) -> None:
    """The webhook receiver as a utility: `meltano invoke mixpanel-cohort-receiver`.

    Meltano passes a utility's settings as MIXPANEL_COHORT_RECEIVER_<NAME> variables, which
    the receiver reads.
    """
    schema = ReceiverSettings.schema()
    utility = {**RECEIVER, "settings": [
        {"name": name, "kind": _kind(prop), "description": prop["description"],
         **({"sensitive": True} if prop.get("secret") else {})}
        for name, prop in schema["properties"].items()]}
    utilities = [u for u in project["plugins"].get("utilities", [])
                 if u["name"] != RECEIVER["name"]]
    project["plugins"]["utilities"] = [*utilities, utility]


PINNED_PLUGINS = ROOT / "scripts" / "third-party-plugins.txt"
def pinned_requirement(executable: str) -> str:
    """The pip requirement scripts/setup-tests installs for a third-party plugin."""
    for line in PINNED_PLUGINS.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and fields[0] == executable:
            return fields[1]
    msg = f"{executable} is not pinned in {PINNED_PLUGINS}"
    raise LookupError(msg)


def apply_third_party_loaders(project: dict[str, Any]) -> None:
    """target-jsonl after our own loaders, for `meltano run` with another project's plugin.

    Its pip requirement is the one the tests pin (tests/pipelines/test_third_party_plugins.py).
    """
    jsonl = {
        "name": "target-jsonl",
        "namespace": "target_jsonl",
        "pip_url": pinned_requirement("target-jsonl"),
        "executable": "target-jsonl",
        "settings": [
            {"name": "destination_path", "kind": "string",
             "description": "Folder the <stream>.jsonl files are written to."},
            {"name": "do_timestamp_file", "kind": "boolean",
             "description": "Add a timestamp to each file name."},
        ],
        "config": {"destination_path": "output/jsonl", "do_timestamp_file": False},
    }
    loaders = [p for p in project["plugins"]["loaders"] if p["name"] != jsonl["name"]]
    project["plugins"]["loaders"] = [*loaders, jsonl]


def render(project: dict[str, Any]) -> str:
    ensure_cohorts_tap(project)
    for extractor in project["plugins"]["extractors"]:
        if extractor["name"] == "tap-braze-currents":
            extractor["settings"] = settings_of(TapBrazeCurrents)
            extractor["select"] = default_selection()
        if extractor["name"] == COHORTS_TAP["name"]:
            extractor["settings"] = settings_of(TapMixpanelCohorts)
            extractor["select"] = COHORTS_SELECT
    apply_fan_out(project)
    apply_cohort_sync(project)
    for loader in project["plugins"]["loaders"]:
        if loader["name"] == "target-mixpanel":
            loader["settings"] = settings_of(TargetMixpanel)
        elif loader["name"] == "target-braze":
            loader["settings"] = settings_of(TargetBraze)
    apply_third_party_loaders(project)
    apply_receiver_utility(project)
    header = ("# Generated in part by tools/generate_meltano.py: the plugins' `settings`, the "
              "default `select`,\n# the fan-out extractors, jobs and schedules, the "
              "third-party loader target-jsonl\n# and the mixpanel-cohort-receiver utility.\n")
    return header + yaml.safe_dump(project, sort_keys=False, allow_unicode=True, width=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "meltano.yml"
    text = render(yaml.safe_load(path.read_text()))
    if args.check:
        if path.read_text() != text:
            print("out of date: meltano.yml (run python tools/generate_meltano.py)")
            return 1
        return 0
    path.write_text(text)
    print("wrote meltano.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
