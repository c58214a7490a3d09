"""Seeded fault trials of the whole pipeline: `python bench/fault_campaign.py --trials 200`.

The campaign itself lives in testkit/fault_campaign.py, which CI's short form
(tests/pipelines/test_fault_campaign.py) runs too; see docs/performance.md for what it does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.fault_campaign import main

if __name__ == "__main__":
    main()
