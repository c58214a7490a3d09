"""Regenerate the data tables the packages ship from ../shared, where they are refreshed from.

    python tools/generate_tables.py          # write the tables (needs ../shared)
    python tools/generate_tables.py --check  # exit 1 if a table differs from ../shared

The tables the packages ship are the project's own data: the plugins install, run and test from a
clone of this repository alone. ../shared, when it sits beside the clone, is only where they are
refreshed from; without it, --check says so and passes, and writing fails with that message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def event_catalog() -> dict:
    """Every Currents event type (current and retired) with its Avro fields."""
    current = json.loads((SHARED / "currents" / "event-catalog.json").read_text())
    retired = json.loads((SHARED / "currents" / "event-catalog-retired.json").read_text())
    table = {name: {"retired": False, "fields": fields} for name, fields in current.items()}
    table.update({name: {"retired": True, "fields": fields} for name, fields in retired.items()})
    return dict(sorted(table.items()))


def mixpanel_event_names() -> dict:
    """Braze's own Mixpanel name for every Currents event type."""
    return json.loads((SHARED / "mixpanel" / "braze-event-names.json").read_text())


TABLES = {
    ROOT / "tap_braze_currents" / "event_catalog.json": event_catalog,
    ROOT / "target_mixpanel" / "braze_event_names.json": mixpanel_event_names,
}


def render(build) -> str:
    return json.dumps(build(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a table is out of date")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} is not there: the shipped tables are kept as they are"
              + (" (nothing to compare with)" if args.check else ""))
        return 0 if args.check else 1
    stale = []
    for path, build in TABLES.items():
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"out of date: {path.relative_to(ROOT)} (run python tools/generate_tables.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
