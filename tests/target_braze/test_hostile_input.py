"""target-braze fed what a careless or hostile user (or tap) gives it (issue 23), table-driven.

Each case: settings and records (with a STATE after them); the exit code; a message naming the
setting or the record's field; every record accounted for (applied, skipped or dead-lettered);
no STATE past a record not accounted for; the API key nowhere (stdout, stderr, dead letters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from tests.target_braze.test_behaviour import (
    cohort_set,
    config_for,
    lines_of,
    run_braze,  # noqa: F401 - the fixture
)

HOSTILE_KEY = "hostile-braze-key-3c2b1a0f9e8d"
DONE = {"done": True}


@dataclass
class Case:
    """One hostile input and what the user must see."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=lambda: [cohort_set("user-1", "VIP")])
    exit_code: int = 1
    message: str = ""                 # in stderr (exit 1) or the dead letters' messages
    dead_lettered: int = 0


CASES = [
    Case("no objects per request", {"objects_per_request": 0}, message="objects_per_request"),
    Case("more objects per request than Braze takes", {"objects_per_request": 100},
         message="objects_per_request"),
    Case("no concurrency", {"max_concurrency": 0}, message="max_concurrency"),
    Case("an array limit of 0", {"array_limit": 0}, message="array_limit"),
    Case("an array limit past any Braze allows", {"array_limit": 10**9}, message="array_limit"),
    Case("a user alias without its label", {"braze_identifier": "user_alias"},
         message="user_alias_label"),
    Case("an identifier Braze does not take", {"braze_identifier": "phone_number"},
         message="braze_identifier"),
    Case("a key Braze refuses, echoed in its answer", {"api_key": HOSTILE_KEY},
         message="api_key"),
    Case("cohort names that are not a list", records=[
        {**cohort_set("user-1", "VIP"), "cohort_names": "VIP"}, cohort_set("user-2", "VIP")],
         exit_code=0, message="cohort_names must be a list", dead_lettered=1),
    Case("a record without a user", records=[
        {**cohort_set("user-1", "VIP"), "user_id": None}, cohort_set("user-2", "VIP")],
         exit_code=0, message="user_id must name the Braze user", dead_lettered=1),
    Case("two cohort names giving one boolean attribute", {"attribute_mode": "boolean"},
         records=[cohort_set("user-1", "VIP!", synced=["VIP?"]), cohort_set("user-2", "A")],
         exit_code=0, message="give the same boolean attribute", dead_lettered=1),
    Case("more cohorts than the array holds", {"array_limit": 2},
         records=[cohort_set("user-1", "A", "B", "C"), cohort_set("user-2", "A")],
         exit_code=0, message="more than array_limit (2)", dead_lettered=1),
]


@pytest.fixture
def braze() -> Iterator[BrazeServer]:
    server = BrazeServer(state=BrazeState(known_users={"user-1", "user-2"})).start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, braze: BrazeServer, run_braze,  # noqa: F811
                       tmp_path: Path) -> None:
    lines = lines_of(case.records, states={len(case.records): DONE})
    run = run_braze(config_for(braze, tmp_path, **case.settings), lines)
    assert run.returncode == case.exit_code, run.stderr[-2000:]
    messages = run.stderr + "".join(d["message"] for d in run.dead_letters)
    assert case.message in messages, messages[-2000:]
    if case.exit_code == 0:                  # every record accounted for, then the STATE
        summary = run.summary
        assert summary["received"] == len(case.records)
        assert sum(summary["dead_lettered"].values()) == case.dead_lettered
        assert run.states == [DONE]
    else:                                    # nothing accounted for: no STATE
        assert run.states == []
    dead = (tmp_path / "dead-letters.jsonl")
    dead_text = dead.read_text() if dead.exists() else ""
    for marker in (API_KEY, HOSTILE_KEY):
        for where, text in (("stdout", run.stdout), ("stderr", run.stderr),
                            ("dead letters", dead_text)):
            assert marker not in text, f"{marker} in {where}"
