"""What Braze documents about /users/track: limits, rate-limit headers, answers we recognise.

Sources: Braze docs `_docs/_api/endpoints/user_data/post_user_track.md`, `_includes/rate_limits.md`,
`_docs/_api/errors.md`, `_docs/_api/objects_filters/user_attributes_object.md`.
"""

from __future__ import annotations

import re

USERS_TRACK_PATH = "/users/track"
MAX_OBJECTS_PER_REQUEST = 75          # attributes objects per request (50 on the newer MAU plan)
DEFAULT_ARRAY_LIMIT = 25              # values an array custom attribute holds (raisable to 100)

# Answer headers carrying the account's rate limit (epoch seconds for the reset).
RATE_LIMIT_HEADER = "X-RateLimit-Limit"
RATE_REMAINING_HEADER = "X-RateLimit-Remaining"
RATE_RESET_HEADER = "X-RateLimit-Reset"

AUTH_STATUSES = frozenset({401, 403})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Per-object errors of a success answer, by a pattern of Braze's message: (dead-letter reason,
# what the user can do, whether the object's array removes are sent again alone). The first
# match wins; the last row catches the rest. An array over its limit refuses the whole object;
# its removes alone cannot exceed the limit, so they still reach Braze.
OBJECT_ERRORS: list[tuple[re.Pattern[str], str, str, bool]] = [
    (re.compile(r"array.*(exceed|maximum|too many|limit)", re.IGNORECASE),
     "array attribute limit",
     "the user is in more synced cohorts than Braze's array limit (25 by default, up to 100 "
     "in the dashboard); set attribute_mode: boolean (one attribute per cohort) or raise "
     "the limit", True),
    (re.compile(r".*", re.DOTALL), "refused by Braze", "see Braze's message", False),
]

# Braze's error answers may echo the key that was sent ('The API key "..." is invalid').
ECHOED_KEY = re.compile(r"(api[ _-]?key\W{0,3})([A-Za-z0-9_\-]{8,})", re.IGNORECASE)


def classify_object_error(message: str) -> tuple[str, str, bool]:
    """(reason, hint, resend the removes) for Braze's message about one object."""
    for pattern, reason, hint, resend_removes in OBJECT_ERRORS:
        if pattern.search(message):
            return reason, hint, resend_removes
    return "refused by Braze", "see Braze's message", False  # pragma: no cover
