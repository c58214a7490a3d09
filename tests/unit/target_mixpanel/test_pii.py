"""PiiPolicy: email addresses and phone numbers kept, hashed or dropped, at any depth."""

from __future__ import annotations

import hashlib

from target_mixpanel.pii import PiiPolicy

RECORD = {"email_address": "ann@example.com", "phone": "+14155550100", "name": "Ann",
          "properties": {"note": "write to bob@example.org or +44 20 7946 0958 today",
                         "contacts": ["cat@example.net", "plain"], "n": 3}}


def sha(value: str, salt: str = "") -> str:
    return hashlib.sha256((salt + value).encode()).hexdigest()


def test_keep_changes_nothing() -> None:
    policy = PiiPolicy("keep")
    assert not policy.active
    assert policy.apply(RECORD) == RECORD


def test_hash_uses_the_salt_everywhere() -> None:
    out = PiiPolicy("hash", salt="s").apply(RECORD)
    assert out["email_address"] == sha("ann@example.com", "s")
    assert out["phone"] == sha("+14155550100", "s")
    assert out["name"] == "Ann"
    note = out["properties"]["note"]
    assert "bob@example.org" not in note
    assert sha("bob@example.org", "s") in note
    assert "+44 20 7946 0958" not in note
    assert out["properties"]["contacts"] == [sha("cat@example.net", "s"), "plain"]
    assert out["properties"]["n"] == 3


def test_the_same_value_hashes_the_same_with_one_salt_only() -> None:
    assert PiiPolicy("hash", "a").apply(RECORD) == PiiPolicy("hash", "a").apply(RECORD)
    assert PiiPolicy("hash", "a").apply(RECORD) != PiiPolicy("hash", "b").apply(RECORD)


def test_drop_removes_fields_values_and_list_items() -> None:
    out = PiiPolicy("drop").apply(RECORD)
    assert "email_address" not in out
    assert "phone" not in out
    assert out["properties"]["note"] == "write to [removed] or [removed] today"
    assert out["properties"]["contacts"] == ["plain"]


def test_the_input_record_is_unchanged() -> None:
    before = repr(RECORD)
    PiiPolicy("drop").apply(RECORD)
    PiiPolicy("hash").apply(RECORD)
    assert repr(RECORD) == before


def test_text_that_only_looks_close_is_kept() -> None:
    record = {"a": "50% @ noon", "b": "+1 2", "c": "user@localhost"}
    assert PiiPolicy("drop").apply(record) == record
