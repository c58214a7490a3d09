"""A dry run's requests: each body it would send to its own numbered file, nothing sent.

Both targets' dry-run clients write through `RequestBodyFiles`: the endpoint once to
`endpoint.txt`, then every body to `<name><number>.json`. The name carries the run's stamp
(plugin_support.run_stamp), so runs sharing a folder keep their own files.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from plugin_support.retry import Counters


class RequestBodyFiles:
    """Writes request bodies to `folder`/`name`000001.json, ...; thread-safe."""

    def __init__(self, folder: str | Path, endpoint: str, name: str, counters: Counters):
        """Create `folder` and write the `endpoint` the bodies would go to in endpoint.txt.

        `name` starts each body's file name; every body written counts as a request.
        """
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._name = name
        self._counters = counters
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        (self.folder / "endpoint.txt").write_text(endpoint + "\n")

    def write(self, body: bytes) -> Path:
        """Write one body to the next numbered file; its path."""
        with self._lock:
            number = next(self._numbers)
        path = self.folder / f"{self._name}{number:06d}.json"
        path.write_bytes(body)
        self._counters.add(requests=1)
        return path
