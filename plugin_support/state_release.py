"""STATE messages held until everything before them is delivered, then released in order.

A target numbers what it hands on (batches, chunks) in input order. Each STATE is held with
the number of the last piece read before it; once every piece up to that number has its
outcome (delivered, skipped or dead-lettered), the state may be emitted. Of several states
ready at once only the latest is returned: it covers the earlier ones.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class StateGate:
    """Held states, each with the position it waits for."""

    def __init__(self) -> None:
        """No state held."""
        self._held: deque[tuple[int, dict[str, Any]]] = deque()

    def hold(self, position: int, state: dict[str, Any]) -> None:
        """Hold `state` until everything up to `position` has its outcome."""
        self._held.append((position, state))

    def release_through(self, position: int | None) -> dict[str, Any] | None:
        """The latest state waiting for `position` or less (None: every state); else None."""
        ready = None
        while self._held and (position is None or self._held[0][0] <= position):
            ready = self._held.popleft()[1]
        return ready

    def clear(self) -> None:
        """Drop every held state (after a fatal error: none may be emitted)."""
        self._held.clear()

    def __len__(self) -> int:
        """How many states are held."""
        return len(self._held)
