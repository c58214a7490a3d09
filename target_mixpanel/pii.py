"""Personal data in records: keep (as Braze's export does), hash (salted SHA-256) or drop.

Applies to fields named in PII_FIELDS and to any string value (at any depth) that looks like
an email address or an E.164 phone number.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

PII_FIELDS = frozenset({
    "email_address", "email", "phone_number", "phone", "to_phone_number", "from_phone_number",
    "inbound_phone_number", "user_phone_number",
})
EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+[1-9][0-9 ().-]{6,18}[0-9]")
_DROP = object()


class PiiPolicy:
    """How email addresses and phone numbers are treated before anything is sent or written."""

    def __init__(self, mode: str, salt: str = ""):
        """Mode is keep, hash or drop."""
        self.mode = mode
        self._salt = salt.encode()

    @property
    def active(self) -> bool:
        """Whether records are changed at all."""
        return self.mode != "keep"

    def _treat(self, value: str) -> Any:
        if self.mode == "drop":
            return _DROP
        return hashlib.sha256(self._salt + value.encode()).hexdigest()

    def _scrub_text(self, text: str) -> Any:
        if "@" not in text and "+" not in text:
            return text
        if EMAIL.fullmatch(text) or PHONE.fullmatch(text):
            return self._treat(text)
        replace = "[removed]" if self.mode == "drop" else None
        for pattern in (EMAIL, PHONE):
            text = pattern.sub(lambda m: replace or self._treat(m.group(0)), text)
        return text

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub_text(value)
        if isinstance(value, dict):
            return self.apply(value)
        if isinstance(value, list):
            scrubbed = [self._scrub(v) for v in value]
            return [v for v in scrubbed if v is not _DROP]
        return value

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with personal data hashed or dropped (a new dict; the input is unchanged)."""
        if not self.active:
            return dict(record)
        result = {}
        for key, value in record.items():
            if key in PII_FIELDS and isinstance(value, str):
                treated = self._treat(value)
            else:
                treated = self._scrub(value)
            if treated is not _DROP:
                result[key] = treated
        return result
