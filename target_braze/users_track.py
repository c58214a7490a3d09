"""Braze's /users/track over HTTP: one request of attributes objects, every object accounted for.

429: wait for X-RateLimit-Reset (or a Retry-After, if Braze sends one) and send again; 202
("queued"), any 5xx and network errors: backoff with jitter within max_retry_seconds; 401/403:
stop, naming api_key and rest_endpoint;
400: split the request, a single object refused is dead-lettered (a 400 is never resent as is);
per-object `errors` of a success answer fail those objects with Braze's message. Answer text is
redacted before it reaches a log, an error or a dead letter.

`UsersTrackClient.send` is blocking and thread-safe (urllib3's pool: half the CPU per request
of requests' session, which matters at hundreds of requests a second).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
import urllib3

from plugin_support.dry_run import RequestBodyFiles
from plugin_support.redaction import Redactor
from plugin_support.retry import (
    AuthError,
    Counters,
    RetriesExhausted,
    Retry,
    RetrySchedule,
    TlsError,
)
from plugin_support.run_stamp import run_stamp
from target_braze.braze_rules import (
    AUTH_STATUSES,
    BULK_HEADER,
    ECHOED_KEY,
    RATE_LIMIT_HEADER,
    RATE_REMAINING_HEADER,
    RATE_RESET_HEADER,
    classify_object_error,
    is_retryable,
)
from target_braze.rate_headers import HeaderPace
from target_braze.settings import BrazeSettings

_encode = msgspec.json.Encoder(decimal_format="number").encode


class UnexpectedAnswerError(Exception):
    """Braze answered a status that no retry or split can help (e.g. 404); the run stops."""


@dataclass
class ObjectFailure:
    """One object of a request that Braze did not apply, by its index in the request."""

    index: int
    reason: str
    message: str


def request_body(objects: list[dict[str, Any]]) -> bytes:
    """The /users/track body for attributes objects."""
    return _encode({"attributes": objects})


def _header_number(response: urllib3.BaseHTTPResponse, name: str) -> float | None:
    value = response.headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class UsersTrackClient:
    """POSTs attributes objects to `{rest_endpoint}/users/track`."""

    def __init__(self, settings: BrazeSettings, counters: Counters,
                 pace: HeaderPace | None):
        """A client; `pace` (adaptive sending) spaces every attempt."""
        self.url = settings.users_track_url
        self._redact = Redactor([settings.api_key], [ECHOED_KEY])  # Braze may echo a key
        self._retry = settings.retry
        self.counters = counters
        self._pace = pace
        self._http = urllib3.PoolManager(maxsize=settings.max_concurrency, retries=False,
                                         timeout=urllib3.Timeout(total=settings.request_timeout_seconds))
        self._headers = {"Authorization": f"Bearer {settings.api_key}",
                         "Content-Type": "application/json"}
        self._bulk_headers = {**self._headers, BULK_HEADER: "true"}

    def send(self, objects: list[dict[str, Any]], bulk: bool = False) -> list[ObjectFailure]:
        """Deliver one request's objects; returns those not applied. Raises on fatal answers.

        `bulk`: part of a first sync or full resync (sent with `X-Braze-Bulk: true`).
        """
        failures: list[ObjectFailure] = []
        self._send(objects, 0, failures, self._bulk_headers if bulk else self._headers)
        return failures

    def _send(self, objects: list[dict[str, Any]], offset: int,
              failures: list[ObjectFailure], headers: dict[str, str]) -> None:
        response = self._post_with_retries(request_body(objects), headers)
        status = response.status
        if status in (200, 201):
            failures.extend(self._object_errors(response, len(objects), offset))
            return
        if status == 400:
            if len(objects) == 1:
                failures.append(ObjectFailure(offset, "refused by Braze (400)",
                                              self._text(response)))
                return
            self.counters.add(splits=1)   # never resent as is: halves find the bad object
            half = len(objects) // 2
            self._send(objects[:half], offset, failures, headers)
            self._send(objects[half:], offset + half, failures, headers)
            return
        msg = (f"Braze answered {status} to {self.url} ({self._text(response)}); check "
               "rest_endpoint")
        raise UnexpectedAnswerError(msg)

    def _object_errors(self, response: urllib3.BaseHTTPResponse, count: int,
                       offset: int) -> list[ObjectFailure]:
        try:
            body = msgspec.json.decode(response.data)
        except msgspec.DecodeError:
            return []
        found = []
        for error in (body.get("errors") or []) if isinstance(body, dict) else []:
            if not isinstance(error, dict):
                continue
            index = error.get("index")
            if error.get("input_array", "attributes") != "attributes" or \
                    not isinstance(index, int) or not 0 <= index < count:
                continue
            message = self._redact(str(error.get("type") or error.get("message") or ""))
            reason, hint = classify_object_error(message)
            found.append(ObjectFailure(offset + index, reason, f"{message} ({hint})"))
        return found

    def _post_with_retries(self, body: bytes,
                           request_headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        return RetrySchedule(self._retry, "Braze", self.counters).run(
            lambda: self._attempt(body, request_headers))

    def _attempt(self, body: bytes,
                 request_headers: dict[str, str]) -> urllib3.BaseHTTPResponse | Retry:
        """One POST: the answer to take, or why (and after how long) to send it again."""
        if self._pace is not None:
            self._pace.acquire()
        headers: tuple[Any, Any, Any] = (None, None, None)
        try:
            response = self._http.request("POST", self.url, body=body, headers=request_headers)
        except urllib3.exceptions.SSLError as exc:
            msg = (f"The TLS certificate of {self.url} could not be verified "
                   f"({type(exc).__name__}); check rest_endpoint")
            raise TlsError(msg) from None
        except urllib3.exceptions.HTTPError as exc:
            self.counters.add(network_errors=1)
            return Retry(f"network error: {type(exc).__name__}")
        else:
            headers = (_header_number(response, RATE_LIMIT_HEADER),
                       _header_number(response, RATE_REMAINING_HEADER),
                       _header_number(response, RATE_RESET_HEADER))
            status = response.status
            if status in AUTH_STATUSES:
                msg = (f"Braze refused the key ({status}: {self._text(response)}). Check "
                       "api_key (a REST API key with the users.track permission) and "
                       "rest_endpoint (a key of another instance gets 401).")
                raise AuthError(msg)
            if not is_retryable(status):
                return response
            throttled = self.counters.count_retryable(status)
            retry = Retry.answered(status, response.headers, throttled)
            if throttled and headers[2] is not None:  # the pace holds until the reset
                hold = self._hold_for(headers[2])
                if retry.delay is None:  # a Retry-After, if Braze sends one, comes first
                    retry = Retry(retry.problem, hold, throttled)
            return retry
        finally:
            if self._pace is not None:
                limit, remaining, reset = headers
                self._pace.release(None if limit is None else int(limit),
                                   None if remaining is None else int(remaining), reset)

    def _hold_for(self, reset: float) -> float:
        """Seconds until the window resets (every sender holds when pacing)."""
        if self._pace is not None:
            return max(0.0, self._pace.throttled(reset))
        return max(0.02, reset - time.time())

    def _text(self, response: urllib3.BaseHTTPResponse) -> str:
        return self._redact(response.data[:300].decode("utf-8", "replace").strip())


class DryRunClient:
    """Sends nothing: writes each request body it would send, numbered, to a folder."""

    def __init__(self, settings: BrazeSettings, counters: Counters):
        """Bodies go to `dry_run_path`/request-<run>-000001.json, ... (exactly what is POSTed).

        <run> (plugin_support.run_stamp) keeps runs sharing the folder from overwriting files.
        """
        self.counters = counters
        self._files = RequestBodyFiles(settings.dry_run_path, settings.users_track_url,
                                       f"request-{run_stamp()}-", counters)

    def send(self, objects: list[dict[str, Any]], bulk: bool = False) -> list[ObjectFailure]:
        """Write the body; every object counts as would-be applied."""
        self._files.write(request_body(objects))
        return []


__all__ = ["AuthError", "DryRunClient", "ObjectFailure", "RetriesExhausted",
           "UnexpectedAnswerError", "UsersTrackClient"]
