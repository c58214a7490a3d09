"""Mixpanel's Import API over HTTP.

Gzip, retries with Mixpanel's backoff recipe, 413 splitting, strict-mode partial success,
and a hard stop on bad credentials. Every event of a batch comes back imported or failed: a
400 that does not say what became of some events (no `failed_records`, or fewer than it
failed) fails those it did not name, with its answer. Text copied from Mixpanel's answers
goes through the redaction (an answer may quote the credentials back).

`ImportClient.send` is blocking and thread-safe; the delivery pipeline calls it from several
threads at once (gzip and sockets release the GIL).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import requests
import requests.adapters
from isal import igzip  # ISA-L gzip: 4x zlib's speed at level 1, same format

from plugin_support.dry_run import RequestBodyFiles
from plugin_support.redaction import Redactor
from plugin_support.retry import (
    AuthError,
    Counters,
    RetriesExhausted,
    Retry,
    RetryPolicy,
    RetrySchedule,
    TlsError,
)
from target_mixpanel.pacing import AdaptivePace

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# With adaptive sending and a pace set, a batch answered 429 goes again as soon as the pace
# gives it a slot, this many times; then the retry delays apply (Mixpanel asks for backoff).
PACED_RETRIES = 3
# The dead-letter reason of an event a 400 left unexplained: Mixpanel may or may not have
# imported it (resending it is safe: Mixpanel deduplicates on $insert_id)
UNNAMED_BY_400 = "400 from Mixpanel not naming this event: imported or not is unknown"


@dataclass
class Failure:
    """One event of a batch that Mixpanel did not import, by its index in the batch."""

    index: int
    reason: str
    field: str | None = None
    message: str | None = None


@dataclass
class BatchResult:
    """What became of one batch."""

    imported: int = 0
    failures: list[Failure] = field(default_factory=list)


def json_array(events: Sequence[bytes]) -> bytes:
    """Encoded events as one JSON array body."""
    return b"[" + b",".join(events) + b"]"


def _failed_records(body: Any, insert_ids: Sequence[str]) -> list[Failure]:
    """Failures of a strict-mode 400, whichever of the three shapes Mixpanel used (one each)."""
    position = {insert_id: i for i, insert_id in enumerate(insert_ids)}
    failures: dict[int, Failure] = {}
    records = body.get("failed_records") if isinstance(body, dict) else None
    for named in records if isinstance(records, list) else []:
        # a bare $insert_id, or an object
        item = {"insert_id": named, "message": "rejected by Mixpanel"} \
            if isinstance(named, str) else named
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        if index is None:
            key = item.get("insert_id") or item.get("$insert_id")
            index = position.get(key) if isinstance(key, str) else None
        if isinstance(index, int) and not isinstance(index, bool) \
                and 0 <= index < len(insert_ids):
            fld, message = item.get("field"), item.get("message")
            failures.setdefault(index, Failure(
                index, "rejected by Mixpanel (400)", None if fld is None else str(fld),
                None if message is None else str(message)))
    return list(failures.values())


class ImportClient:
    """POSTs batches of encoded events to `{api_url}/import`."""

    def __init__(self, api_url: str, auth: tuple[str, str], params: dict[str, str], *,
                 gzip_level: int | None, timeout: float, retry: RetryPolicy, verify: bool,
                 counters: Counters, describe_auth: str, pace: AdaptivePace | None = None,
                 redact: Callable[[str], str] | None = None):
        """A client; `pace` (adaptive sending) gates every attempt.

        `gzip_level` None sends plain JSON; `describe_auth` names the auth settings in use;
        `redact` masks the secrets in text copied from Mixpanel's answers.
        """
        self._redact = redact or Redactor()
        self._pace = pace
        self.url = api_url.rstrip("/") + "/import"
        self._auth = auth
        self._params = params
        self._gzip_level = gzip_level
        self._timeout = timeout
        self._retry = retry
        self._verify = verify
        self.counters = counters
        self._describe_auth = describe_auth
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.auth = self._auth
            self._local.session = session
        return session

    def _body(self, events: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
        body = json_array(events)
        headers = {"Content-Type": "application/json"}
        if self._gzip_level is not None:
            body = igzip.compress(body, compresslevel=self._gzip_level)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def batch_events(self, configured: int) -> int:
        """The most events the next batch should hold (fewer while adaptive sending paces)."""
        return configured if self._pace is None else self._pace.batch_events(configured)

    def send(self, events: Sequence[bytes], insert_ids: Sequence[str]) -> BatchResult:
        """Deliver one batch; failures name events by index. Raises AuthError, RetriesExhausted."""
        result = BatchResult()
        self._send(events, insert_ids, 0, result)
        return result

    def _send(self, events: Sequence[bytes], insert_ids: Sequence[str], offset: int,
              result: BatchResult) -> None:
        response = self._post_with_retries(events)
        status = response.status_code
        if status == 200:
            result.imported += len(events)
            return
        if status == 400:
            failures = self._failures_of_400(response, insert_ids)
            for failure in failures:
                failure.index += offset
            result.imported += len(events) - len(failures)
            result.failures.extend(failures)
            return
        if status == 413:
            if len(events) == 1:
                result.failures.append(Failure(offset, "event too large (413)", None,
                                               self._redact(_text(response))))
                return
            self.counters.add(splits=1)
            half = len(events) // 2
            self._send(events[:half], insert_ids[:half], offset, result)
            self._send(events[half:], insert_ids[half:], offset + half, result)
            return
        message = self._redact(_text(response))
        msg = f"Mixpanel answered {status} to a batch of {len(events)} events: {message}"
        raise RetriesExhausted(msg)

    def _failures_of_400(self, response: requests.Response,
                         insert_ids: Sequence[str]) -> list[Failure]:
        """Every event a 400 did not import, by index (a 400 is never resent as is).

        Unless the answer accounts for every event (its imported count plus the events it
        names), the events it did not name fail too, with its error: nothing is left
        neither imported nor failed.
        """
        body = _json_or_none(response)
        failures = _failed_records(body, insert_ids)
        for failure in failures:
            failure.message = None if failure.message is None else self._redact(failure.message)
        unnamed = len(insert_ids) - len(failures)
        imported = result_count(body)
        if imported == unnamed:
            return failures
        answer = self._redact(_error_text(body, response))
        logger.warning("Mixpanel answered 400 to a batch of %d events, counting %d imported "
                       "and naming %d failed; the %d it did not name are dead-lettered "
                       "(resending them is safe: Mixpanel deduplicates on $insert_id): %s",
                       len(insert_ids), imported, len(failures), unnamed, answer)
        named = {failure.index for failure in failures}
        return [*failures, *(Failure(index, UNNAMED_BY_400, None, answer)
                             for index in range(len(insert_ids)) if index not in named)]

    def _post_with_retries(self, events: Sequence[bytes]) -> requests.Response:
        body, headers = self._body(events)
        paced_retries = 0

        def attempt() -> requests.Response | Retry:
            nonlocal paced_retries
            outcome = self._attempt(body, headers, len(events))
            if (isinstance(outcome, Retry) and outcome.delay is None and outcome.throttled
                    and self._pace is not None and self._pace.rate is not None
                    and paced_retries < PACED_RETRIES):
                paced_retries += 1  # the pace, cut by the 429, gives the retry its slot
                return Retry(outcome.problem, 0.0, throttled=True)
            return outcome

        return RetrySchedule(self._retry, "Mixpanel", self.counters).run(attempt)

    def _attempt(self, body: bytes, headers: dict[str, str],
                 events: int) -> requests.Response | Retry:
        """One POST: the answer to take, or why (and after how long) to send it again."""
        started = self._pace.acquire(events) if self._pace is not None else 0.0
        throttled = False
        try:
            # verify per request: a session's verify=False loses to REQUESTS_CA_BUNDLE
            response = self._session().post(self.url, params=self._params, data=body,
                                            headers=headers, timeout=self._timeout,
                                            verify=self._verify)
        except requests.exceptions.SSLError as exc:
            msg = (f"The TLS certificate of {self.url} could not be verified ({exc}). Fix "
                   "the certificate or the api_url/region setting; verify_tls: false "
                   "turns the check off (not advised).")
            raise TlsError(msg) from None
        except requests.RequestException as exc:
            self.counters.add(network_errors=1)
            return Retry(f"network error: {type(exc).__name__}")
        else:
            status = response.status_code
            if status in (401, 403):
                msg = (f"Mixpanel refused the credentials ({status}: "
                       f"{self._redact(_text(response))}). Check {self._describe_auth}.")
                raise AuthError(msg)
            if status not in RETRYABLE_STATUSES:
                return response
            throttled = self.counters.count_retryable(status)
            return Retry.answered(status, response.headers, throttled)
        finally:
            if self._pace is not None:
                self._pace.release(started, events=events, throttled=throttled)


def result_count(body: Any) -> int:
    """num_records_imported of a response body, 0 when absent (or not a count)."""
    count = body.get("num_records_imported") if isinstance(body, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _error_text(body: Any, response: requests.Response) -> str:
    """The `error` of an answer's JSON body, else the start of its text."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:300] if error else _text(response)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return None


def _text(response: requests.Response) -> str:
    return response.text[:300].strip()


class DryRunClient:
    """Sends nothing: writes each request body it would send to a folder, numbered."""

    def __init__(self, folder: str, api_url: str, counters: Counters, prefix: str = ""):
        """Bodies go to `folder`/batch-<prefix>000001.json, ... (uncompressed JSON arrays).

        The prefix names the run and the worker, so runs sharing the folder keep their files.
        """
        self.url = api_url.rstrip("/") + "/import"
        self.counters = counters
        self._files = RequestBodyFiles(folder, self.url, f"batch-{prefix}", counters)

    def batch_events(self, configured: int) -> int:
        """The configured batch size: a dry run is not paced."""
        return configured

    def send(self, events: Sequence[bytes], insert_ids: Sequence[str]) -> BatchResult:
        """Write the body; count every event as would-be imported."""
        self._files.write(json_array(events))
        return BatchResult(imported=len(events))
