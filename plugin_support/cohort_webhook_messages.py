"""Mixpanel's cohort webhook messages and the answers it expects, as its docs describe them.

Source: Mixpanel docs, `docs/cohort-sync/webhooks.mdx` ("Webhook Format", "Expected Response
Format", "Sync", "Failed Syncs"). A POST's JSON body has an `action` (`members`: the whole
cohort, replacing what the receiver has; `add_members` / `remove_members`: who entered or left
since the last successful sync) and `parameters` (project, cohort id and name, the session id of
one export sent over several messages, `page_info` with `total_pages` and `page_count` counted
from 1, and `members`, each with at least `mixpanel_distinct_id`). Mixpanel retries 429 and 5xx
(5 times over 60 s), and pauses the sync on 400, 401, 403 and 404, showing `error.message`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# What each answer makes Mixpanel do (the docs' "Failed Syncs")
STORED = 200          # success: the next message, or the next sync's diff
MALFORMED = 400       # pauses the sync and shows error.message in Mixpanel's UI
UNAUTHORIZED = 401    # pauses the sync: the connection's Basic auth is wrong
NOT_STORED = 503      # retried 5 times over 60 s, then at the next sync (30 minutes)


class PageInfo(msgspec.Struct):
    """Which message of an export this is: `page_count` of `total_pages`, counted from 1."""

    total_pages: int
    page_count: int


class Member(msgspec.Struct):
    """One user; Mixpanel also sends email, names, phone and the chosen properties."""

    mixpanel_distinct_id: str | int


class Parameters(msgspec.Struct):
    """The message's parameters (only what the receiver checks is declared)."""

    mixpanel_cohort_id: str | int
    mixpanel_project_id: str | int | None = None
    mixpanel_cohort_name: str | None = None
    mixpanel_session_id: str | None = None
    page_info: PageInfo | None = None
    members: list[Member] = msgspec.field(default_factory=list)


class WebhookMessage(msgspec.Struct):
    """One POST body of Mixpanel's cohort webhook sync."""

    action: Literal["members", "add_members", "remove_members"]
    parameters: Parameters


class MessageError(ValueError):
    """The body is not a cohort webhook message; the text says what is wrong."""


_DECODER = msgspec.json.Decoder(WebhookMessage)


def read_message(body: bytes) -> WebhookMessage:
    """The message in `body`, checked; MessageError says what is wrong with it."""
    try:
        message = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise MessageError(f"not a Mixpanel cohort webhook message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MessageError(f"the body is not JSON: {exc}") from None
    page = message.parameters.page_info
    if page is not None and not 1 <= page.page_count <= page.total_pages:
        raise MessageError(f"page_info: page_count {page.page_count} is not between 1 and "
                           f"total_pages {page.total_pages}")
    if message.action == "members" and page is not None \
            and not message.parameters.mixpanel_session_id:
        raise MessageError("a paged members message needs parameters.mixpanel_session_id")
    return message


def answer(action: str | None, code: int, error: str | None = None) -> dict[str, Any]:
    """The JSON answer Mixpanel expects: the action, success or failure, and why."""
    body: dict[str, Any] = {"action": action, "status": "success" if code == STORED
                            else "failure"}
    if error is not None:
        body["error"] = {"message": error, "code": code}
    return body
