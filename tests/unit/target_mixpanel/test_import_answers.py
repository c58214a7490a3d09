"""Reading Mixpanel's answers: the three shapes of failed_records, and workers' summaries."""

from __future__ import annotations

import pytest

from target_mixpanel.import_client import _failed_records
from target_mixpanel.worker_pool import merge_summaries

IDS = ["id-0", "id-1", "id-2"]


@pytest.mark.parametrize("item", [
    {"index": 1, "field": "properties.time", "message": "too old"},
    {"insert_id": "id-1", "field": "properties.time", "message": "too old"},
    {"$insert_id": "id-1", "field": "properties.time", "message": "too old"},
])
def test_failed_records_by_index_or_insert_id(item: dict) -> None:
    [failure] = _failed_records({"failed_records": [item]}, IDS)
    assert (failure.index, failure.field, failure.message) == (1, "properties.time", "too old")


def test_failed_records_as_bare_insert_ids() -> None:
    failures = _failed_records({"failed_records": ["id-2", "id-0"]}, IDS)
    assert [f.index for f in failures] == [2, 0]


def test_failed_records_that_name_no_event_of_the_batch_are_ignored() -> None:
    body = {"failed_records": [{"index": 9}, {"index": -1}, "id-9", {"insert_id": "nope"}]}
    assert _failed_records(body, IDS) == []
    assert _failed_records(None, IDS) == []
    assert _failed_records({"failed_records": None}, IDS) == []


def test_summaries_add_counts_and_counters() -> None:
    merged = merge_summaries([
        {"imported": 3, "dead_lettered": 1, "skipped": {"rule a": 2}, "seconds": 1.5,
         "dead_letter_path": None},
        {"imported": 4, "dead_lettered": 0, "skipped": {"rule a": 1, "rule b": 5},
         "seconds": 0.5, "dead_letter_path": "/x"},
    ])
    assert merged == {"imported": 7, "dead_lettered": 1, "seconds": 2.0,
                      "skipped": {"rule b": 5, "rule a": 3}, "dead_letter_path": "/x"}


def test_summaries_of_no_workers_are_empty() -> None:
    assert merge_summaries([]) == {}
    assert merge_summaries([{"imported": 0}]) == {"imported": 0}


def test_an_event_named_twice_fails_once() -> None:
    body = {"failed_records": [{"index": 1, "message": "a"}, "id-1", {"insert_id": "id-1"}]}
    assert [(f.index, f.message) for f in _failed_records(body, IDS)] == [(1, "a")]
    assert _failed_records(["not", "an", "object"], IDS) == []
    assert _failed_records({"failed_records": "id-1"}, IDS) == []
    assert _failed_records({"failed_records": [7, None, [1], {"index": True},
                                                {"insert_id": ["id-1"]}]}, IDS) == []
