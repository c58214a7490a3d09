"""A name part unique to one run, for files that runs sharing a folder must not overwrite.

Both targets' dry-run writers put it in every body's file name: parallel jobs (the fan-out
groups) and later runs into one dry-run folder each keep their own files.
"""

from __future__ import annotations

import os
import time


def run_stamp() -> str:
    """The start of this process's run: UTC time to the second and the process id.

    E.g. `20250401T120000Z-4242`; names with it sort by time.
    """
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
