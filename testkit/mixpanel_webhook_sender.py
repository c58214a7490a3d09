"""A Mixpanel cohort webhook sync, as Mixpanel's docs describe it, for tests and benchmarks.

Source: Mixpanel docs, `docs/cohort-sync/webhooks.mdx`:
- "Full Sync": the first sync, and any sync once the snapshot of the last successful sync is
  older than 3 days, sends the whole cohort as `members`, paged under one `mixpanel_session_id`
  (`page_info.page_count` from 1 to `total_pages`).
- "Sync"/"Diffing": every 30 minutes, who entered (`add_members`) and who left
  (`remove_members`) since the last successful snapshot, 1,000 users a call; the calls are made
  even when empty ("Example Webhook Sync Scenario"). The docs do not say whether adds and
  removes share a session: here each has its own (the harder case for a receiver).
- "Failed Syncs": 429 and 5xx are retried 5 times over 60 s with exponential backoff, then the
  sync waits for the next one; 400, 401, 403 and 404 pause the sync and show `error.message`.
  A failed sync leaves the snapshot as it was, so the next one starts again from the top.

Time is the caller's: `sync(now=...)`, and `retry_scale` shrinks the 60 s of retries in tests.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests

PAGE_SIZE = 1_000
SNAPSHOT_LIFE_SECONDS = 3 * 24 * 3600
RETRIES = 5
RETRY_WINDOW_SECONDS = 60.0
PAUSING = {400, 401, 403, 404}
_sessions = itertools.count(1)


@dataclass
class SyncResult:
    """What one sync did."""

    kind: str                   # full | diff | paused
    ok: bool
    messages: int = 0           # POSTs answered success
    attempts: int = 0           # POSTs made, retries included
    error: str = ""


@dataclass
class CohortWebhookSync:
    """One cohort's recurring sync to one webhook URL."""

    url: str
    cohort_id: int
    cohort_name: str
    project_id: int = 1_234_567
    auth: tuple[str, str] | None = None
    retry_scale: float = 1.0
    members: set[str] = field(default_factory=set)       # Mixpanel's membership now
    snapshot: set[str] | None = None                      # as of the last successful sync
    snapshot_at: float = 0.0
    paused: str = ""                                      # the error that paused the sync
    session: requests.Session = field(default_factory=requests.Session)

    def sync(self, now: float | None = None) -> SyncResult:
        """One scheduled sync: full or diff; the snapshot moves only if every call succeeded."""
        now = time.time() if now is None else now
        if self.paused:
            return SyncResult("paused", False, error=self.paused)
        full = self.snapshot is None or now - self.snapshot_at > SNAPSHOT_LIFE_SECONDS
        current = set(self.members)
        if full:
            calls = [("members", sorted(current))]
        else:
            assert self.snapshot is not None
            calls = [("add_members", sorted(current - self.snapshot)),
                     ("remove_members", sorted(self.snapshot - current))]
        result = SyncResult("full" if full else "diff", True)
        for action, users in calls:
            if not self._send(action, users, result):
                result.ok = False
                return result
        self.snapshot, self.snapshot_at = current, now
        return result

    def bodies(self, action: str, users: list[str]) -> Iterable[bytes]:
        """The POST bodies of one export: pages of 1,000 under one session id."""
        session_id = f"session-{self.cohort_id}-{next(_sessions)}"
        pages = [users[i:i + PAGE_SIZE] for i in range(0, len(users), PAGE_SIZE)] or [[]]
        for number, page in enumerate(pages, start=1):
            yield json.dumps({"action": action, "parameters": {
                "mixpanel_project_id": str(self.project_id),
                "mixpanel_cohort_id": str(self.cohort_id),
                "mixpanel_cohort_name": self.cohort_name,
                "mixpanel_cohort_description": "",
                "mixpanel_session_id": session_id,
                "page_info": {"total_pages": len(pages), "page_count": number},
                "members": [{"email": f"{user}@example.com", "mixpanel_distinct_id": user,
                             "first_name": "", "last_name": "", "phone_number": ""}
                            for user in page]}}).encode()

    def _send(self, action: str, users: list[str], result: SyncResult) -> bool:
        for body in self.bodies(action, users):
            if not self._post(body, result):
                return False
            result.messages += 1
        return True

    def _post(self, body: bytes, result: SyncResult) -> bool:
        """One call with Mixpanel's retries; False when the sync fails (or is paused)."""
        delay = RETRY_WINDOW_SECONDS / (2 ** RETRIES - 1) * self.retry_scale
        for attempt in range(RETRIES + 1):
            result.attempts += 1
            try:
                answer = self.session.post(self.url, data=body, auth=self.auth, timeout=30,
                                           headers={"Content-Type": "application/json"})
            except requests.RequestException as exc:
                status, message = 503, f"{type(exc).__name__}"  # no answer: retried as a 5xx
            else:
                status, message = answer.status_code, _error_message(answer)
                if status == 200 and _succeeded(answer):
                    return True
            if status in PAUSING:
                self.paused = result.error = message or f"HTTP {status}"
                return False
            if attempt < RETRIES and (status == 429 or status >= 500):
                time.sleep(delay * 2 ** attempt)
                continue
            result.error = message or f"HTTP {status}"
            return False
        return False


def _succeeded(answer: requests.Response) -> bool:
    try:
        return answer.json().get("status") == "success"
    except ValueError:
        return False


def _error_message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error", {}).get("message", ""))
    except (ValueError, AttributeError):
        return ""
