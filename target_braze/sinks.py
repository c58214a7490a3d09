"""The SDK sink of target-braze: it holds each stream's schema; records bypass it.

Records go straight from the reader to the delivery pipeline (target_braze.delivery), which
puts every stream's changes of one user in one object; the SDK's per-stream sinks would split
them and hold STATE until a drain.
"""

from __future__ import annotations

from singer_sdk.sinks import BatchSink


class BrazeSink(BatchSink):
    """Schema holder for one stream."""

    def process_batch(self, context: dict) -> None:
        """Nothing to do: records never reach the sink."""
