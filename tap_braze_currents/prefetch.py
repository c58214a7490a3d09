"""Fetch remote files ahead of decoding, within a bound on files and bytes in flight."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def fetch_ahead(items: Iterable[Item], start: Callable[[Item], Future[Result]],
                size_of: Callable[[Item], int], max_items: int = 4,
                max_bytes: int = 64 * 1024 * 1024) -> Iterator[tuple[Item, Future[Result]]]:
    """Yield (item, future of its fetch) in order, with later fetches already running.

    `start(item)` starts a fetch. At most `max_items` fetches run or wait at once, and their
    sizes add up to at most `max_bytes` (one oversized item still goes alone). The caller calls
    `future.result()`, which re-raises the fetch's error for that item.
    """
    pending: deque[tuple[Item, Future[Result], int]] = deque()
    source = iter(items)
    in_flight = 0
    try:
        exhausted = False
        while True:
            while (not exhausted and len(pending) < max_items
                   and (not pending or in_flight < max_bytes)):
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                size = size_of(item)
                pending.append((item, start(item), size))
                in_flight += size
            if not pending:
                return
            item, future, size = pending.popleft()
            in_flight -= size
            yield item, future
    finally:
        for _, future, _ in pending:
            future.cancel()
