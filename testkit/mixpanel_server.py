"""A Mixpanel-compatible Import API server for tests and benchmarks, on loopback.

It enforces what ../shared/docs/mixpanel-import.md documents: the three auth modes (service
account + project_id, project token, API secret), gzip, JSON array and NDJSON bodies, the
count and byte limits (413), strict validation with partial success (400 + failed_records),
and deduplication on (event, time, distinct_id, $insert_id). Faults can be scripted or drawn
at random: 429, 5xx, connections dropped before or after the batch is stored, slow answers,
and 400s that do not name every event they failed (`400_no_failed_records`: the answer to a
body it cannot read; `400_some_failed_records`: a strict 400 naming only the first failed
event; `400_not_json`: a proxy's HTML 400 page). Mixpanel's 400 page (docs.mixpanel.com/
troubleshooting/errors/400-bad-request) shows the body: `code`, `error`, `status`,
`num_records_imported`, and with strict=1 `failed_records`. With `echo_credentials`, error
answers quote the request's Authorization header and credentials back (a hostile or debugging
proxy), for redaction tests.

The rules here are written independently of target_mixpanel's, so the tests can catch a
wrong rule in the target.

    python -m testkit.mixpanel_server --port 8999 --fast   # benchmarks: answer 200 at once
    python -m testkit.mixpanel_server --fast --rate-limit 30000   # a project's intake: 429 above

With a rate limit, a token bucket of `rate_limit` events/s (holding `burst_seconds` of them)
answers 429 to a request whose events it cannot cover, as Mixpanel does above its intake.
GET /stats returns the counts as JSON (for benchmarks running the server as a process).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import random
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec

from testkit.loopback_server import JsonReplies, LoopbackServer

REFUSED_IDS = {"00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none",
               "null", "n/a", "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false",
               "[]", "{}"}
INSERT_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,36}$")


@dataclass
class Credentials:
    project_id: str = "4242"
    service_account: tuple[str, str] = ("sa.loader", "sa-secret-3f9d2a7c41")
    project_token: str = "token-8b1e6c0d93aa"
    api_secret: str = "apisecret-77d2e91b05"

    def secrets(self) -> list[str]:
        return [self.service_account[1], self.project_token, self.api_secret]


@dataclass
class MixpanelState:
    """What the server stored and saw; tests read and steer it."""

    credentials: Credentials = field(default_factory=Credentials)
    max_events: int = 2000
    max_bytes: int = 10 * 1024 * 1024
    failed_records_shape: str = "index"        # index | insert_id | $insert_id | string
    fast: bool = False                         # accept and count only (benchmarks)
    script: list[str] = field(default_factory=list)  # faults for the next requests, in order
    fault_rates: dict[str, float] = field(default_factory=dict)  # fault -> probability
    seed: int = 1
    retry_after: str | None = None             # Retry-After header sent with 429s
    throttled_until: float = 0.0               # every request before this time.time() gets 429
    rate_limit: float | None = None            # events/s the token bucket lets through
    burst_seconds: float = 1.0                 # the bucket holds this many seconds of events
    insert_ids: set[str] | None = None         # fast mode: keep $insert_ids (duplicates count)
    fast_duplicates: int = 0                   # fast mode with insert_ids: events seen before
    refused_distinct_ids: set[str] = field(default_factory=set)  # extra strict-mode refusals
    unavailable_for: set[str] = field(default_factory=set)  # 503 for requests with these ids
    echo_credentials: bool = False             # error answers quote the credentials back
    events: dict[tuple, dict] = field(default_factory=dict)  # unique, by the 4 dedup fields
    raw_events: int = 0                        # events stored, duplicates included
    arrivals: Counter = field(default_factory=Counter)  # $insert_id -> times stored
    # $insert_id -> times it was stored and then its connection dropped (a resend is due)
    stored_then_dropped: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._tokens = (self.rate_limit or 0) * self.burst_seconds
        self._filled_at = time.monotonic()

    def take_tokens(self, events: int) -> bool:
        """Whether the token bucket covers `events` now (they are taken if so)."""
        assert self.rate_limit is not None
        with self.lock:
            now = time.monotonic()
            self._tokens = min(self.rate_limit * self.burst_seconds,
                               self._tokens + (now - self._filled_at) * self.rate_limit)
            self._filled_at = now
            if self._tokens < events:
                return False
            self._tokens -= events
            return True

    def stats(self) -> dict[str, Any]:
        """Counts, for GET /stats."""
        with self.lock:
            return {"raw_events": self.raw_events, "requests": sum(self.statuses.values()),
                    "statuses": {str(k): v for k, v in self.statuses.items()},
                    "unique_events": (len(self.insert_ids) if self.insert_ids is not None
                                      else len(self.events)),
                    "duplicates": (self.fast_duplicates if self.insert_ids is not None
                                   else self.duplicates)}

    def next_fault(self) -> str | None:
        with self.lock:
            if time.time() < self.throttled_until:
                return "429"
            if self.script:
                return self.script.pop(0)
            for fault, rate in self.fault_rates.items():
                if self.rng.random() < rate:
                    return fault
        return None

    @property
    def unique_events(self) -> list[dict]:
        return list(self.events.values())

    @property
    def duplicates(self) -> int:
        return self.raw_events - len(self.events)


def check(event: Any, now: float) -> tuple[str, str] | None:
    """(field, message) when Mixpanel would refuse the event, else None."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str) \
            or not event["event"]:
        return "event", "'event' must be a non-empty string"
    props = event.get("properties")
    if not isinstance(props, dict):
        return "properties", "'properties' must be an object"
    t = props.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return "properties.time", "'properties.time' is required and must be a number"
    seconds = t / 1000 if t > 1e11 else t
    if seconds < 31_536_000 or seconds > now + 3600:
        return "properties.time", "'properties.time' is out of range"
    did = props.get("distinct_id")
    if not isinstance(did, str) or did.strip().lower() in REFUSED_IDS:
        return "properties.distinct_id", "'properties.distinct_id' is invalid"
    iid = props.get("$insert_id")
    if not isinstance(iid, str) or not INSERT_ID_RE.match(iid):
        return "properties.$insert_id", "'properties.$insert_id' is invalid"
    if len(props) > 255:
        return "properties", "too many properties"
    return None


class Handler(JsonReplies, BaseHTTPRequestHandler):
    server: MixpanelServer

    def answered(self, status: int) -> None:
        self.server.state.statuses[status] += 1

    def _authorized(self, params: dict[str, list[str]]) -> bool:
        creds = self.server.state.credentials
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        if (user, password) == creds.service_account:
            return params.get("project_id", [""])[0] == creds.project_id
        return password == "" and user in (creds.project_token, creds.api_secret)

    def do_POST(self) -> None:  # noqa: PLR0912
        state = self.server.state
        url = urlparse(self.path)
        params = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if url.path != "/import":
            self._reply(404, {"error": "not found"})
            return
        if not self._authorized(params):
            self._reply(401, {"code": 401, "error": "Invalid credentials" + self._echo(),
                              "status": 0})
            return
        fault = state.next_fault()
        if fault == "drop_before":
            self._drop()
            return
        if fault == "400_no_failed_records":  # a body it could not read: nothing stored
            self._reply(400, {"code": 400, "status": 0, "num_records_imported": 0,
                              "error": "unable to parse the request body" + self._echo()})
            return
        if fault == "400_not_json":  # a proxy's own 400 page
            self._reply_text(400, "<html><body><h1>400 Bad Request</h1>Request header or "
                             "cookie too large" + self._echo() + "</body></html>")
            return
        if fault and fault.startswith("slow"):
            time.sleep(float(fault.partition(":")[2] or 1))
        decoded: list[list[Any]] = []  # the body, decoded once if the rate limit or ids need it

        def body_events() -> list[Any]:
            if not decoded:
                decoded.append(_body_events(raw, self.headers))
            return decoded[0]

        if fault is None and state.rate_limit is not None \
                and not state.take_tokens(len(body_events())):
            fault = "429"
        if fault is None and state.unavailable_for \
                and not state.unavailable_for.isdisjoint(_insert_ids(body_events())):
            fault = "503"
        if fault in ("429", "500", "502", "503"):
            body = {"code": int(fault), "status": 0,
                    "error": "Project exceeded rate limits. Please retry the request with "
                    "exponential backoff." if fault == "429" else "server error"}
            headers = {"Retry-After": state.retry_after} if state.retry_after else None
            self._reply(int(fault), body, headers)
            return
        if state.fast:  # benchmarks: answer at once, parse nothing (or only $insert_ids)
            count = 0
            if state.insert_ids is not None:
                ids = _insert_ids(body_events())
                count = len(ids)
                with state.lock:
                    before = len(state.insert_ids)
                    state.insert_ids.update(ids)
                    state.fast_duplicates += count - (len(state.insert_ids) - before)
            with state.lock:
                state.requests.append({"bytes": len(raw)})
                state.raw_events += count
            self._reply(200, {"code": 200, "status": "OK", "num_records_imported": count})
            return
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        if len(raw) > state.max_bytes:
            self._reply(413, {"code": 413, "error": "request too large", "status": 0})
            return
        if self.headers.get("Content-Type", "").startswith("application/x-ndjson"):
            events = [msgspec.json.decode(line) for line in raw.splitlines() if line.strip()]
        else:
            events = msgspec.json.decode(raw)
        if not isinstance(events, list):
            self._reply(400, {"code": 400, "error": "body must be a JSON array", "status": 0})
            return
        if len(events) > state.max_events:
            self._reply(413, {"code": 413, "error": f"{len(events)} events; at most "
                              f"{state.max_events}", "status": 0})
            return
        strict = params.get("strict", ["0"])[0] == "1"
        now = time.time()
        good, failed = [], []
        for index, event in enumerate(events):
            problem = None if state.fast else check(event, now)
            if problem is None and not state.fast and \
                    event["properties"]["distinct_id"] in state.refused_distinct_ids:
                problem = ("properties.distinct_id", "distinct_id is blocked for this project")
            if problem is None:
                good.append(event)
            else:
                iid = (event.get("properties") or {}).get("$insert_id") \
                    if isinstance(event, dict) else None
                failed.append((index, iid, *problem))
        with state.lock:
            state.requests.append({"events": len(events), "params": params,
                                   "gzip": self.headers.get("Content-Encoding") == "gzip"})
            state.raw_events += len(good)
            if not state.fast:
                for event in good:
                    p = event["properties"]
                    key = (event["event"], p["time"], p["distinct_id"], p["$insert_id"])
                    state.events.setdefault(key, event)
                    state.arrivals[p["$insert_id"]] += 1
                    if fault == "drop_after":
                        state.stored_then_dropped[p["$insert_id"]] += 1
        if fault == "drop_after":
            self._drop()
            return
        if failed and strict:
            named = failed[:1] if fault == "400_some_failed_records" else failed
            self._reply(400, {"code": 400, "num_records_imported": len(good), "status": 0,
                              "error": "some data points in the request failed validation",
                              "failed_records": [self._failure(*f) for f in named]})
            return
        self._reply(200, {"code": 200, "num_records_imported": len(good), "status": "OK"})

    def _reply_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.answered(status)

    def _echo(self) -> str:
        """With echo_credentials: the request's credentials, quoted back in an error."""
        if not self.server.state.echo_credentials:
            return ""
        header = self.headers.get("Authorization", "")
        try:
            decoded = base64.b64decode(header.partition(" ")[2]).decode()
        except ValueError:
            decoded = ""
        return f" (request Authorization: {header}; credentials {decoded})"

    def _failure(self, index: int, insert_id: str | None, field_name: str,
                 message: str) -> Any:
        shape = self.server.state.failed_records_shape
        if shape == "string":
            return insert_id
        item: dict[str, Any] = {"field": field_name, "message": message + self._echo()}
        if shape == "index":
            item.update(index=index, insert_id=insert_id)
        else:
            item[shape] = insert_id
        return item


def _body_events(raw: bytes, headers: Any) -> list[Any]:
    if headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    if headers.get("Content-Type", "").startswith("application/x-ndjson"):
        return [msgspec.json.decode(line) for line in raw.splitlines() if line.strip()]
    events = msgspec.json.decode(raw)
    return events if isinstance(events, list) else []


def _insert_ids(events: list[Any]) -> list[str]:
    return [str((e.get("properties") or {}).get("$insert_id")) for e in events
            if isinstance(e, dict)]


class MixpanelServer(LoopbackServer):
    def __init__(self, port: int = 0, state: MixpanelState | None = None,
                 tls: ssl.SSLContext | None = None):
        super().__init__(port, Handler, tls)
        self.state = state or MixpanelState()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--fast", action="store_true", help="accept and count only")
    parser.add_argument("--count-ids", action="store_true",
                        help="with --fast: keep $insert_ids to count unique events, duplicates")
    parser.add_argument("--rate-limit", type=float, help="events/s; 429 above (token bucket)")
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--fault-rates", default="{}",
                        help='JSON, e.g. {"429": 0.1}: faults drawn at random per request')
    args = parser.parse_args()
    state = MixpanelState(fast=args.fast, rate_limit=args.rate_limit,
                          burst_seconds=args.burst_seconds,
                          insert_ids=set() if args.count_ids else None,
                          fault_rates=msgspec.json.decode(args.fault_rates))
    server = MixpanelServer(args.port, state)
    print(f"listening on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
