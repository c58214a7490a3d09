"""The Singer SDK's standard target tests' sample streams, to check what a target did with them."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

SAMPLES = resources.files("singer_sdk.testing") / "target_test_streams"
# the SDK's tests that expect the target to refuse the input: nothing is sent
REFUSED = frozenset({"invalid_schema", "record_before_schema", "record_missing_key_property"})


def sample_name(test_name: str) -> str:
    """The sample stream a standard test (`test_target_<sample>`) feeds the target."""
    return test_name.removeprefix("test_target_")


def sample_records(test_name: str) -> list[dict[str, Any]]:
    """The records of the sample a standard test feeds the target (none for some tests)."""
    sample = SAMPLES / f"{sample_name(test_name)}.singer"
    if not sample.is_file():
        return []
    messages = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def line_count(path: Path) -> int:
    """Lines in a file (a dead-letter file), 0 when it does not exist."""
    return len(path.read_text().splitlines()) if path.exists() else 0
