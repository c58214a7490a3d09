"""What is known about Mixpanel's Query API (docs: query.openapi.yaml, engage-query, rate-limits).

Kept as data: hosts by region, paths, the page size, the documented limits.
"""

from __future__ import annotations

# Data residency: the Query API host of each region (api_url overrides it).
REGION_HOSTS = {
    "US": "https://mixpanel.com",
    "EU": "https://eu.mixpanel.com",
    "IN": "https://in.mixpanel.com",
}

COHORTS_LIST_PATH = "/api/query/cohorts/list"
ENGAGE_PATH = "/api/query/engage"

# /engage answers at most this many profiles a page; a full page means there may be more.
ENGAGE_PAGE_SIZE = 1000

# Per project: "5 concurrent queries and 60 queries per hour" (429 beyond).
MAX_QUERIES_PER_HOUR = 60
MAX_CONCURRENT_QUERIES = 5

# The property every /engage result carries outside $properties.
DISTINCT_ID = "$distinct_id"

# Statuses worth retrying: rate limited, and the server's own failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that mean the service account settings are wrong: stop at once.
AUTH_STATUSES = frozenset({401, 403})
# 402: the project's plan does not allow the API call.
PLAN_STATUS = 402

# An /engage session_id is valid for a while only; a later page refused for it (a 400 naming
# the session) pages the cohort again from the top, at most this many times.
MAX_SESSION_RESTARTS = 3


def is_session_refusal(status: int, text: str) -> bool:
    """Whether an error answer to a page after the first refuses its session_id."""
    return status == 400 and "session" in text.lower()


# cohorts/list's `count` and the members /engage gave may differ (membership moves between
# the two queries); beyond this share of the count (and COUNT_TOLERANCE_MEMBERS) it is warned.
COUNT_TOLERANCE_SHARE = 0.01
COUNT_TOLERANCE_MEMBERS = 1
