"""The one redaction: every form of a secret, and credential-shaped text, masked."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

import pytest

from plugin_support.redaction import RedactingFilter, Redactor, redact

SECRET = "s3cr3t-V4lue/with+chars"


@pytest.mark.parametrize("user", ["u", "us", "use", "loader.abc123.mp-service-account"])
def test_a_basic_header_of_any_user_hides_the_secret(user: str) -> None:
    header = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    # without the word Basic in front: the secret's own base64 runs are masked
    text = redact(f"echoed {header} back", [SECRET])
    assert header not in text
    assert "***" in text
    assert redact(f"Authorization: Basic {header}", []) == "Authorization: Basic ***"


@pytest.mark.parametrize("form", [SECRET, quote(SECRET, safe=""), json.dumps(SECRET)[1:-1],
                                  SECRET.replace("/", "\\/"),
                                  base64.b64encode(SECRET.encode()).decode()])
def test_each_form_of_a_secret_is_masked(form: str) -> None:
    assert redact(f"before {form} after", [SECRET]) == "before *** after"


@pytest.mark.parametrize(("text", "expected"), [
    ("https://oauth2.googleapis.com/tokeninfo?access_token=ya29.abc&x=1",
     "https://oauth2.googleapis.com/tokeninfo?access_token=***&x=1"),
    ("s3://AKIAXXXX:abc%2Fdef@bucket/key", "s3://AKIAXXXX:***@bucket/key"),
    ("https://acct.blob.core.windows.net/c?sv=2021&sig=abc%3D", "https://acct.blob.core.windows.net/c?sv=2021&sig=***"),
    ("Bearer abcdefghijkl rest", "Bearer *** rest"),
    ("nothing secret: 2026-12-06 retry 3", "nothing secret: 2026-12-06 retry 3"),
])
def test_credential_shaped_text_is_masked_without_knowing_the_secret(text: str,
                                                                      expected: str) -> None:
    assert redact(text, []) == expected


def test_short_values_are_not_treated_as_secrets() -> None:
    assert redact("yes is not a secret", ["yes", "", None]) == "yes is not a secret"


def test_the_log_filter_masks_message_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "answer: %s", (SECRET,), None)
    try:
        raise ValueError(f"bad {SECRET}")
    except ValueError:
        import sys  # noqa: PLC0415
        record.exc_info = sys.exc_info()
    assert RedactingFilter(Redactor([SECRET])).filter(record)
    assert SECRET not in record.getMessage()
    assert record.exc_text is not None
    assert SECRET not in record.exc_text
    assert "***" in record.exc_text
