"""Queries to Mixpanel's Query API: service-account auth, the budget, retries, clear errors.

401/403 stop at once naming the service-account settings; 429, 5xx and a dropped connection
are retried (plugin_support.retry) as Retry-After asks, else with exponential backoff, within
`max_retry_seconds`; a 429's wait pauses every query. No error text carries a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from plugin_support.redaction import Redactor
from plugin_support.retry import (
    Counters,
    RetriesExhausted,
    Retry,
    RetryPolicy,
    RetrySchedule,
)
from tap_mixpanel_cohorts.mixpanel_query_api import AUTH_STATUSES, PLAN_STATUS, RETRY_STATUSES
from tap_mixpanel_cohorts.query_budget import QueryBudget

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout,
                  requests.exceptions.ChunkedEncodingError)


class QuerySettingError(Exception):
    """The Query API refused or could not be reached; the message names the setting to fix."""


class QueryRefusedError(QuerySettingError):
    """An answer no retry helps (e.g. 400); `status` and redacted `text` for the caller."""

    def __init__(self, message: str, status: int, text: str):
        super().__init__(message)
        self.status, self.text = status, text


@dataclass(frozen=True)
class Credentials:
    """A service account of the project."""

    username: str
    secret: str
    project_id: str
    workspace_id: str | None = None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error") or body)[:200] if isinstance(body, dict) else str(body)[:200]


class QueryClient:
    """POSTs to `{base_url}{path}` with project_id (and workspace_id) on every request."""

    def __init__(self, base_url: str, credentials: Credentials, budget: QueryBudget,
                 retry: RetryPolicy, timeout: float = 120.0):
        """A client with its own connection pool; nothing is sent yet."""
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._budget = budget
        self._retry = retry
        self._timeout = timeout
        self._session = requests.Session()
        self._session.auth = (credentials.username, credentials.secret)
        self._params = {"project_id": credentials.project_id}
        if credentials.workspace_id:
            self._params["workspace_id"] = credentials.workspace_id
        self._clean = Redactor([credentials.secret, credentials.username])
        self.counters = Counters()

    @property
    def retries(self) -> int:
        """Retries made so far, by every query."""
        return self.counters.retries

    def post(self, path: str, form: Mapping[str, str]) -> bytes:
        """The body of a 200 answer to one query; raises QuerySettingError when it cannot."""
        url = self.base_url + path
        # a 429 pauses every query (the budget), not only this one
        schedule = RetrySchedule(self._retry, path, self.counters, hold=self._budget.pause,
                                 log_level=logging.WARNING)
        try:
            return schedule.run(lambda: self._attempt(url, path, form))
        except RetriesExhausted as exc:
            msg = (f"Mixpanel's Query API at api_url {self.base_url!r} still failing after "
                   f"max_retry_seconds ({exc.budget_seconds:g} s); last: {exc.problem}. Check "
                   "api_url/region, or try again later.")
            raise QuerySettingError(msg) from None

    def _attempt(self, url: str, path: str, form: Mapping[str, str]) -> bytes | Retry:
        """One query: the body of its 200 answer, or why (and after how long) to ask again."""
        try:
            with self._budget.query():
                # bytes, not a dict: headers and body then leave in one write (a body sent
                # after the headers waits for a delayed ACK, 40 ms a query)
                response = self._session.post(url, params=self._params,
                                              data=urlencode(form).encode(),
                                              headers=FORM_HEADERS, timeout=self._timeout)
        except requests.exceptions.InvalidURL as exc:
            msg = f"api_url {self.base_url!r} is not a valid URL ({self._clean(str(exc))})"
            raise QuerySettingError(msg) from None
        except NETWORK_ERRORS as exc:
            return Retry(self._clean(f"{type(exc).__name__}: {exc}"))
        status = response.status_code
        if status == 200:
            return response.content
        if status in AUTH_STATUSES:
            msg = (f"Mixpanel at {self.base_url} refused the service account ({status}: "
                   f"{self._clean(_error_text(response))}). Check service_account_username, "
                   "service_account_secret and project_id (and workspace_id, region/api_url: "
                   "a project's service account works only on its region's host).")
            raise QuerySettingError(msg)
        if status in RETRY_STATUSES:
            return Retry.answered(status, response.headers, status == 429,
                                  self._clean(_error_text(response)))
        text = self._clean(_error_text(response))
        if status == PLAN_STATUS:
            msg = (f"Mixpanel answered 402 to {path}: project {self._credentials.project_id}'s "
                   f"plan does not allow Query API calls ({text}). Check the plan, or "
                   "project_id.")
            raise QuerySettingError(msg)
        msg = f"Mixpanel's Query API answered {status} to {path}: {text}"
        raise QueryRefusedError(msg, status, text)
