"""Regenerate the plugin definitions in meltano.yml from the plugins' own settings schemas.

    python tools/generate_meltano.py          # rewrite the settings of both plugins
    python tools/generate_meltano.py --check  # exit 1 if meltano.yml is out of date

Each setting appears once in the code (the plugin's config_jsonschema); meltano.yml's settings
(name, kind, description, sensitive) are derived from it, never written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tap_braze_currents.tap import TapBrazeCurrents  # noqa: E402
from target_mixpanel.event_mapping import braze_event_names, stream_of  # noqa: E402
from target_mixpanel.target import TargetMixpanel  # noqa: E402

KINDS = {"string": "string", "integer": "integer", "number": "decimal", "boolean": "boolean",
         "object": "object", "array": "array"}


def _kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "options"
    types = schema.get("type", "string")
    main = next(t for t in ([types] if isinstance(types, str) else types) if t != "null")
    if main == "string" and schema.get("format") == "date-time":
        return "date_iso8601"
    return KINDS[main]


def settings_of(plugin: type) -> list[dict[str, Any]]:
    """Meltano setting definitions from a Singer SDK plugin's config_jsonschema."""
    result = []
    for name, schema in plugin.config_jsonschema["properties"].items():
        setting: dict[str, Any] = {"name": name, "kind": _kind(schema)}
        if schema.get("description"):
            setting["description"] = schema["description"]
        if "enum" in schema:
            setting["options"] = [{"label": str(v), "value": v} for v in schema["enum"]]
        if schema.get("secret"):
            setting["sensitive"] = True
        result.append(setting)
    return result


def default_selection() -> list[str]:
    """The streams Braze's own Mixpanel export sends (in_braze_mixpanel_export in the table)."""
    return sorted(f"{stream_of(event_type)}.*"
                  for event_type, entry in braze_event_names().items()
                  if entry["in_braze_mixpanel_export"])


def render(project: dict[str, Any]) -> str:
    for extractor in project["plugins"]["extractors"]:
        if extractor["name"] == "tap-braze-currents":
            extractor["settings"] = settings_of(TapBrazeCurrents)
            extractor["select"] = default_selection()
    for loader in project["plugins"]["loaders"]:
        if loader["name"] == "target-mixpanel":
            loader["settings"] = settings_of(TargetMixpanel)
    header = ("# Generated in part: the plugins' `settings` and the default `select` come from "
              "tools/generate_meltano.py.\n")
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
