"""User profiles for the users whose events were imported (the `profile_properties` setting).

Mixpanel's `/import` creates no user profile, so profile-based cohorts (and Mixpanel's own Braze
export, which matches on `$braze_external_id`) cannot match users known only from imported
events. With `profile_properties` ({profile property: event property}, e.g.
`{"$braze_external_id": "distinct_id"}`), the events of each imported batch give their users'
properties, written with `$set` through `POST {api_url}/engage#profile-batch-update` (a JSON list,
`$token` in each update, at most 2000 updates a request: Mixpanel docs
`reference/profile-batch-update`, `reference/user-profile-limits`) before the batch counts as
delivered, so no STATE passes events whose users' profiles were not written. A user's values
are sent once per process unless they change. Off by default. In a dry run the request
bodies go to `dry_run_path`/engage/ instead (plugin_support.dry_run); either way the run's
summary counts the profiles written as `profiles_updated`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import requests

from plugin_support.dry_run import RequestBodyFiles
from plugin_support.redaction import redact
from plugin_support.retry import AuthError, Counters, RetriesExhausted, Retry, RetrySchedule
from target_mixpanel.import_client import RETRYABLE_STATUSES, BatchResult

if TYPE_CHECKING:
    from plugin_support.retry import RetryPolicy

ENGAGE_PATH = "/engage"                  # profile-batch-update: a JSON list of updates
MAX_UPDATES_PER_REQUEST = 2000           # Mixpanel's limit per request


class EventSender(Protocol):
    """What delivery sends batches of events with (import_client.ImportClient)."""

    def batch_events(self, configured: int) -> int: ...  # noqa: D102

    def send(self, events: Sequence[bytes],  # noqa: D102
             insert_ids: Sequence[str]) -> BatchResult: ...


def profile_updates(events: Sequence[bytes], skip: set[int], properties: Mapping[str, str],
                    token: str) -> dict[str, dict[str, Any]]:
    """distinct_id -> its profile update, from the events not in `skip`.

    A later event's value wins; events without a distinct_id or any of the properties give
    none.
    """
    found: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(events):
        if index in skip:
            continue
        event_properties = (msgspec.json.decode(raw).get("properties") or {})
        distinct_id = event_properties.get("distinct_id")
        if distinct_id in (None, ""):
            continue
        values = {name: event_properties[source] for name, source in properties.items()
                  if event_properties.get(source) is not None}
        if values:
            found.setdefault(str(distinct_id), {}).update(values)
    return {user: {"$token": token, "$distinct_id": user, "$set": values}
            for user, values in found.items()}


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ProfileUpdatingSender:
    """Sends a batch of events, then its users' profile properties; wraps an EventSender."""

    def __init__(self, inner: EventSender, *, api_url: str, token: str,
                 properties: Mapping[str, str], retry: RetryPolicy, counters: Counters,
                 timeout: float, verify: bool, dry_run_folder: Path | None = None,
                 dry_run_name: str = "profiles-"):
        """Nothing is sent yet; `properties`: {profile property: event property}.

        With `dry_run_folder`, each request body is written there (`dry_run_name`000001.json,
        ...) instead of sent.
        """
        self._inner = inner
        self.url = api_url.rstrip("/") + ENGAGE_PATH
        self._token = token
        self._properties = dict(properties)
        self._retry = retry
        self._counters = counters
        self._timeout = timeout
        self._verify = verify
        self._sent: dict[str, dict[str, Any]] = {}  # what each user's profile was given
        self._session = requests.Session()
        self._dry_run = (RequestBodyFiles(dry_run_folder, self.url, dry_run_name, counters)
                         if dry_run_folder is not None else None)
        self.profiles_updated = 0

    def batch_events(self, configured: int) -> int:
        """As the wrapped sender says."""
        return self._inner.batch_events(configured)

    def send(self, events: Sequence[bytes], insert_ids: Sequence[str]) -> BatchResult:
        """Import the batch, then write the profiles of the users whose events were imported.

        Raises RetriesExhausted or AuthError when the profiles cannot be written: the batch
        then does not count as delivered.
        """
        result = self._inner.send(events, insert_ids)
        failed = {failure.index for failure in result.failures}
        updates = [update for user, update in profile_updates(
            events, failed, self._properties, self._token).items()
            if self._sent.get(user) != update["$set"]]
        for chunk in _chunks(updates, MAX_UPDATES_PER_REQUEST):
            self._post(chunk)
            for update in chunk:
                self._sent[update["$distinct_id"]] = update["$set"]
            self.profiles_updated += len(chunk)
        return result

    def _clean(self, text: str) -> str:
        return redact(text, [self._token])

    def _post(self, updates: list[dict[str, Any]]) -> None:
        body = msgspec.json.encode(updates)
        if self._dry_run is not None:
            self._dry_run.write(body)
            return
        response = RetrySchedule(self._retry, "Mixpanel /engage", self._counters).run(
            lambda: self._attempt(body))
        status = response.status_code
        text = self._clean(response.text[:300].strip())
        if status in (401, 403):
            msg = (f"Mixpanel refused the profile updates ({status}: {text}). Check "
                   "project_token (profile_properties writes profiles with it).")
            raise AuthError(msg)
        if status != 200 or _refused(response):
            msg = (f"Mixpanel did not apply {len(updates)} profile updates ({status}: "
                   f"{text}); check profile_properties")
            raise RetriesExhausted(msg)

    def _attempt(self, body: bytes) -> requests.Response | Retry:
        """One POST: the answer to take, or why (and after how long) to send it again."""
        try:
            response = self._session.post(self.url, data=body, timeout=self._timeout,
                                          verify=self._verify, params={"verbose": "1"},
                                          headers={"Content-Type": "application/json"})
        except requests.RequestException as exc:
            self._counters.add(network_errors=1)
            return Retry(f"network error: {type(exc).__name__}")
        status = response.status_code
        if status in RETRYABLE_STATUSES:
            throttled = self._counters.count_retryable(status)
            return Retry.answered(status, response.headers, throttled)
        return response


def _refused(response: requests.Response) -> bool:
    """Mixpanel answers 200 even to updates it could not validate: read the body."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.text.strip() != "1"
    return isinstance(body, dict) and body.get("status") not in (1, "1", "ok", None)
