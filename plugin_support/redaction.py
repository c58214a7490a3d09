"""One redaction for every plugin: secrets out of log lines, errors and dead letters.

A secret reaches text in more forms than its own: URL-encoded in a query string, JSON-escaped
in an echoed body, base64 inside a `Basic` header (`user:secret`), as the password of a
`scheme://user:secret@host` URL, or as an `access_token=`/`sig=` query parameter a library puts
in its error message. `redact` replaces each of them with `***`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values ("true", a port) would mask ordinary words

# Authorization headers, whatever the credential (a Basic one is base64 of user:secret)
_AUTH_HEADER = re.compile(r"\b(Basic|Bearer|Token)(\s+|%20)[A-Za-z0-9+/=._~%-]{4,}", re.I)
# The password of a URL's user info: s3://key:secret@bucket, postgresql://user:pass@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.I)
# Query parameters that carry credentials (gcsfs's tokeninfo?access_token=, Azure's sig=, ...)
_SECRET_PARAMETER = re.compile(
    r"\b(access_token|refresh_token|id_token|token|sig|signature|secret|password|api_key|"
    r"apikey|key|client_secret|x-amz-signature|x-amz-security-token)=([^&\s\"']+)", re.I)


def secret_forms(secret: str) -> set[str]:
    """The ways `secret` may be printed: itself, URL-encoded, JSON-escaped, base64."""
    if len(secret) < MIN_SECRET_LENGTH:
        return set()
    encoded = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
             json.dumps(secret)[1:-1].replace("/", "\\/"), repr(secret)[1:-1]}
    # base64 of the secret at each of the three alignments it can have inside longer text
    # (a Basic header is base64 of user:secret): the characters its own bits decide alone
    forms.add(base64.b64encode(encoded).decode())
    for offset in range(3):
        chunk = base64.b64encode(b"\0" * offset + encoded).decode()
        first, end = -(-8 * offset // 6), 8 * (offset + len(encoded)) // 6
        if end - first >= 8:
            forms.add(chunk[first:end])
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every form of the given secrets, and credential-shaped text, with ***."""

    def __init__(self, secrets: Iterable[object] = (),
                 credential_patterns: Iterable[re.Pattern[str]] = ()):
        """Mask `secrets` (strings; others are ignored) and text the patterns find.

        `credential_patterns` are a vendor's own shapes of credentials (e.g. a key its answers
        echo): each match is replaced by its first group followed by ***.
        """
        forms: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str):
                forms |= secret_forms(secret)
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: no partial leftovers
        self._patterns = list(credential_patterns)

    def __call__(self, text: str) -> str:
        """`text` with secrets and credential-shaped parts masked."""
        for form in self._forms:
            text = text.replace(form, MASK)
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
        text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}={MASK}", text)
        for pattern in self._patterns:
            text = pattern.sub(lambda m: f"{m.group(1)}{MASK}", text)
        return text


def redact(text: str, secrets: Iterable[object]) -> str:
    """`text` with every form of each secret, and credential-shaped parts, replaced by ***."""
    return Redactor(secrets)(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and its traceback."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message (with its arguments) and exception text."""
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


def redact_logs(redactor: Redactor) -> None:
    """Mask secrets in every log line: a filter on each handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))
