"""Checkpoints: when the tap prints STATE (at most every interval; records first)."""

from __future__ import annotations

import json

import pytest

from tap_braze_currents.checkpoints import BYTES_PER_STATE_BYTE, Checkpoints


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def states(captured: bytes) -> list[dict]:
    return [json.loads(line)["value"] for line in captured.splitlines()]


def test_a_state_at_most_every_interval_and_only_when_changed(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    clock = Clock()
    state = {"bookmarks": {"a": {"newest_hour": "2025-04-01-00"}, "b": {}}}
    checkpoints = Checkpoints(state, interval_seconds=5, clock=clock)
    assert not checkpoints.due()  # nothing changed
    checkpoints.changed()
    clock.now = 4.9
    assert not checkpoints.due()
    clock.now = 5.0
    assert checkpoints.due()
    checkpoints.write()
    assert not checkpoints.due()  # written: nothing pending
    checkpoints.write()  # unchanged: nothing printed
    checkpoints.changed()
    clock.now = 6.0
    assert not checkpoints.due()  # 1 s after the last STATE
    checkpoints.write()  # asked at once (end of a stream): printed
    # one line per STATE, without the empty bookmark of b
    assert states(capsysbinary.readouterr().out) == [
        {"bookmarks": {"a": {"newest_hour": "2025-04-01-00"}}}] * 2


def test_interval_states_wait_for_records_a_hundred_times_their_size(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    clock = Clock()
    checkpoints = Checkpoints({"bookmarks": {"a": {"read": {"h": "x" * 100}}}}, 1, clock)
    checkpoints.changed()
    checkpoints.write()
    size = len(capsysbinary.readouterr().out)
    checkpoints.changed()
    clock.now = 10.0
    checkpoints.printed(BYTES_PER_STATE_BYTE * size - 1)
    assert not checkpoints.due()  # records came slowly: the STATE would be too large a share
    checkpoints.printed(1)
    assert checkpoints.due()
