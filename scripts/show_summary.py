"""Print target-mixpanel's closing summary (the `summary:` log line) for a person."""

import json
import sys

# the line as the target logs it, or as `meltano run` relays it
line = next(x for x in open(sys.argv[1], encoding="utf-8") if " summary: {" in x)
s = json.loads(line.split(" summary: ", 1)[1].strip())
skipped, dead = sum(s["skipped"].values()), sum(s["dead_lettered"].values())
print(f"  received {s['received']:,}, imported {s['imported']:,}, skipped {skipped:,}, "
      f"dead-lettered {dead:,}, requests {s['requests']:,}")
for rule, n in s["skipped"].items():
    print(f"  skipped by rule ({n:,}): {rule}")
print("  top event names:")
for name, n in list(s["imported_by_event"].items())[:8]:
    print(f"    {n:>6,}  {name}")
