"""The SDK sink of target-mixpanel: it holds each stream's schema; records bypass it.

Records go straight from the reader to the delivery pipeline (target_mixpanel.delivery), which
batches across streams; the SDK's per-stream sinks would split batches and hold STATE until a
drain. The sink stays so that the SDK's schema handling (and its checks) work unchanged.
"""

from __future__ import annotations

from singer_sdk.sinks import BatchSink


class MixpanelSink(BatchSink):
    """Schema holder for one stream."""

    def process_batch(self, context: dict) -> None:
        """Nothing to do: records never reach the sink."""
