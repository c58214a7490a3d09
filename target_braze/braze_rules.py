"""What Braze documents about /users/track: limits, rate-limit headers, answers we recognise.

Sources: Braze docs `_docs/_api/endpoints/user_data/post_user_track.md`, `_includes/rate_limits.md`,
`_docs/_api/errors.md`, `_docs/_api/objects_filters/user_attributes_object.md`.
"""

from __future__ import annotations

import re

USERS_TRACK_PATH = "/users/track"
MAX_OBJECTS_PER_REQUEST = 75          # attributes objects per request (50 on the newer MAU plan)
DEFAULT_ARRAY_LIMIT = 25              # values an array custom attribute holds by default

# Answer headers carrying the account's rate limit (epoch seconds for the reset).
RATE_LIMIT_HEADER = "X-RateLimit-Limit"
RATE_REMAINING_HEADER = "X-RateLimit-Remaining"
RATE_RESET_HEADER = "X-RateLimit-Reset"

AUTH_STATUSES = frozenset({401, 403})
# Sent again after a backoff: 429, every 5xx (retry with exponential backoff, errors.md), and
# 202 "queued" (an older errors page: during maintenance; not an error to stop on; a request
# of whole sets is safe to send again).
QUEUED_STATUS = 202


def is_retryable(status: int) -> bool:
    """Whether an answer's status asks for the request to be sent again later."""
    return status in (429, QUEUED_STATUS) or 500 <= status < 600


# The header Braze asks for on bulk loads (first syncs, backfills, full resyncs).
BULK_HEADER = "X-Braze-Bulk"

# Identifiers an attributes object of /users/track may name a user by (post_user_track.md).
IDENTIFIERS = ["external_id", "user_alias", "email", "braze_id"]

# Values an array custom attribute holds by default ("up to 100" in the dashboard, more
# through Braze); beyond it Braze truncates (the oldest go) and answers no error.
MAX_ARRAY_LIMIT = 10_000

# Per-object errors of a success answer, by a pattern of Braze's message: (dead-letter reason,
# what the user can do). The first match wins; the last row catches the rest. (Braze does not
# refuse an array over its limit, it truncates it: target-braze never sends one.)
OBJECT_ERRORS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r".*", re.DOTALL), "refused by Braze", "see Braze's message"),
]

# Braze's error answers may echo the key that was sent ('The API key "..." is invalid').
ECHOED_KEY = re.compile(r"(api[ _-]?key\W{0,3})([A-Za-z0-9_\-]{8,})", re.IGNORECASE)


def classify_object_error(message: str) -> tuple[str, str]:
    """(reason, hint) for Braze's message about one object."""
    for pattern, reason, hint in OBJECT_ERRORS:
        if pattern.search(message):
            return reason, hint
    return "refused by Braze", "see Braze's message"  # pragma: no cover
