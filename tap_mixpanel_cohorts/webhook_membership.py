"""A cohort's membership from Mixpanel's webhook messages in the spool, on top of the last one.

Mixpanel's rules (docs `docs/cohort-sync/webhooks.mdx`): a `members` export replaces the
membership, and is whole only once every page of its session (`page_count` 1 to
`total_pages`) has arrived; `add_members` and `remove_members` apply in arrival order. After a
failure mid-sync Mixpanel starts again from the top under a new session, so an incomplete
session followed by a later one is abandoned; an incomplete session with nothing after it is
still arriving: it and what follows wait for the next run.

`settle` is pure: the previous membership and the messages not settled yet in (those after
the state's `position`, less the `settled_above` it names), the new membership, position and
settled messages out. Every message at or before `position` is settled; pages of a waiting
export can arrive between those of an earlier one, so messages settled after the first
unsettled one are named in `settled_above` instead of moving the position past it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import polars as pl

from plugin_support.cohort_webhook_messages import WebhookMessage
from plugin_support.webhook_spool import SpooledMessage

_DECODER = msgspec.json.Decoder(WebhookMessage)


@dataclass
class _Session:
    action: str
    key: str
    first_ns: int
    total_pages: int
    pages: dict[int, list[str]] = field(default_factory=dict)
    spooled: list[SpooledMessage] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return set(self.pages) == set(range(1, self.total_pages + 1))

    def members(self) -> pl.Series:
        ids = [user for number in sorted(self.pages) for user in self.pages[number]]
        return pl.Series("user_id", ids, dtype=pl.String)


@dataclass
class Settlement:
    """What the spool changed: the membership (None: not known yet), how far it is settled."""

    members: pl.Series | None
    position: int
    settled: list[SpooledMessage]
    settled_above: list[str] = field(default_factory=list)  # names settled after `position`
    applied_sessions: int = 0
    abandoned_sessions: int = 0
    waiting_session: str | None = None


def settle(previous: pl.Series | None, spooled: Iterable[tuple[SpooledMessage, bytes]],
           position: int, settled_above: Iterable[str] = ()) -> Settlement:
    """Apply the messages not settled yet to `previous`, in Mixpanel's order."""
    done = set(settled_above)
    after = [(place, body) for place, body in spooled if place.received_ns > position]
    settled_before = [place for place, _ in after if _name(place) in done]
    sessions = _sessions((place, body) for place, body in after if _name(place) not in done)
    members = previous
    result = Settlement(previous, position, [])
    for index, session in enumerate(sessions):
        if not session.complete:
            if index + 1 < len(sessions):  # Mixpanel started again from the top
                result.abandoned_sessions += 1
                result.settled.extend(session.spooled)
                continue
            result.waiting_session = session.key  # still arriving: wait for the next run
            break
        if session.action == "members":
            members = session.members().unique(maintain_order=True)
        elif members is not None:
            changed = session.members()
            if session.action == "add_members":
                members = pl.concat([members, changed]).unique(maintain_order=True)
            else:
                members = members.filter(~members.is_in(changed.implode()))
        # a diff with no membership to apply it to (no full export seen yet) is dropped:
        # Mixpanel's first sync of a cohort is always a full export
        result.applied_sessions += 1
        result.settled.extend(session.spooled)
    result.members = members
    # the position moves up to the first message still unsettled, no further
    settled = {id(place) for place in [*settled_before, *result.settled]}
    unsettled = [place.received_ns for place, _ in after if id(place) not in settled]
    ceiling = min(unsettled) - 1 if unsettled else None
    for place in [*settled_before, *result.settled]:
        if ceiling is None or place.received_ns <= ceiling:
            result.position = max(result.position, place.received_ns)
    result.settled_above = sorted(_name(place) for place in [*settled_before, *result.settled]
                                  if place.received_ns > result.position)
    return result


def _name(place: SpooledMessage) -> str:
    return place.path.rsplit("/", 1)[-1]


def _sessions(spooled: Iterable[tuple[SpooledMessage, bytes]]) -> list[_Session]:
    """Messages grouped into exports (action and session id), ordered by first arrival."""
    sessions: dict[tuple[str, str], _Session] = {}
    for place, body in spooled:
        message = _DECODER.decode(body)
        parameters = message.parameters
        page = parameters.page_info
        # a message without a session or pages is an export of its own
        key = parameters.mixpanel_session_id or f"message {place.path}"
        session = sessions.get((message.action, key))
        if session is None:
            session = sessions[(message.action, key)] = _Session(
                message.action, key, place.received_ns, page.total_pages if page else 1)
        session.pages[page.page_count if page else 1] = [
            str(member.mixpanel_distinct_id) for member in parameters.members]
        session.spooled.append(place)
    return sorted(sessions.values(), key=lambda s: s.first_ns)
