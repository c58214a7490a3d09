"""StateGate: a STATE is released only once everything read before it has its outcome."""

from __future__ import annotations

from plugin_support.state_release import StateGate


def test_a_state_waits_for_its_position_and_not_longer() -> None:
    gate = StateGate()
    gate.hold(3, {"n": 1})
    assert gate.release_through(2) is None
    assert len(gate) == 1
    assert gate.release_through(3) == {"n": 1}
    assert len(gate) == 0
    assert gate.release_through(3) is None


def test_of_several_ready_states_only_the_latest_is_released() -> None:
    gate = StateGate()
    for position, n in ((1, 1), (2, 2), (2, 3), (5, 4)):
        gate.hold(position, {"n": n})
    assert gate.release_through(4) == {"n": 3}
    assert len(gate) == 1               # the one waiting for 5 is still held
    assert gate.release_through(None) == {"n": 4}


def test_a_state_behind_an_unfinished_one_is_not_released_before_it() -> None:
    # positions only grow in input order: the first unfinished one holds back what follows
    gate = StateGate()
    gate.hold(4, {"n": 1})
    gate.hold(6, {"n": 2})
    assert gate.release_through(3) is None
    assert gate.release_through(6) == {"n": 2}


def test_cleared_states_are_never_released() -> None:
    gate = StateGate()
    gate.hold(1, {"n": 1})
    gate.clear()
    assert gate.release_through(None) is None
    assert len(gate) == 0
