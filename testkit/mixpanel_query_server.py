"""A Mixpanel Query API-compatible server (cohorts list, engage) for tests and benchmarks.

It enforces what Mixpanel documents for the Query API (docs `openapi/query.openapi.yaml`,
`reference/engage-query.mdx`, `reference/rate-limits.mdx`, `reference/service-accounts.mdx`):
HTTP Basic auth with a service account plus `project_id` on every request (`workspace_id`
when the project asks for one), `POST /api/query/cohorts/list`, `POST /api/query/engage`
(form-encoded) with `filter_by_cohort`, `output_properties`, `include_all_users`, paging by
`page` + `session_id` (required past page 0) and `page_size` in each answer, and the limits:
at most `max_concurrent` queries at once and `max_per_window` in each `window_seconds`
(5 and 60 an hour), 429 beyond. `include_all_users` (default true) also returns members
without a profile (`Member.properties` None); `false` hides them (engage-query.mdx).
`$distinct_id` may be an integer (the OpenAPI example types it so). Faults can be scripted:
429 (with Retry-After), 5xx, 402 (the plan does not allow API calls), an expired session
(`expire_session`: the session of that query is forgotten and it is refused as an unknown
one), an error echoing the Authorization header (`echo_auth`, as a proxy's error page may),
dropped connections, slow answers, and a query that hangs until released.

Written independently of tap_mixpanel_cohorts, so tests can catch a wrong rule in the tap.

    python -m testkit.mixpanel_query_server --port 8998 --members 2000000   # benchmarks
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from testkit.loopback_server import JsonReplies, LoopbackServer

PAGE_SIZE = 1000  # Mixpanel's engage page size


@dataclass
class Member:
    """One profile (or a bare id without profile when `properties` is None)."""

    distinct_id: str | int
    properties: dict[str, Any] | None = field(default_factory=dict)


class GeneratedMembers(Sequence):
    """`count` members user-<n> (n from `first`), each with $braze_external_id ext-<n>.

    No object per member is held: the benchmark's 2,000,000-member cohort costs nothing here.
    """

    def __init__(self, count: int, first: int = 0):
        self.count, self.first = count, first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        n = self.first + index
        return Member(f"user-{n:08d}", {"$braze_external_id": f"ext-{n:08d}", "$name": "x"})


@dataclass
class Cohort:
    """A cohort of the project; `members` may be changed between runs."""

    id: int
    name: str
    members: Sequence[Member] = field(default_factory=list)
    description: str = ""
    created: str = "2025-01-15 10:00:00"
    is_visible: int = 1


@dataclass
class QueryState:
    """What the server holds and saw; tests read and steer it."""

    project_id: str = "4242"
    service_account: tuple[str, str] = ("sa.cohorts", "sa-cohort-secret-5e1f9b")
    workspace_id: str | None = None               # required on every request when set
    cohorts: dict[int, Cohort] = field(default_factory=dict)
    page_size: int = PAGE_SIZE
    max_concurrent: int = 5
    max_per_window: int = 60
    window_seconds: float = 3600.0
    answer_delay: float = 0.0                     # seconds each query takes
    script: list[str] = field(default_factory=list)  # faults for the next queries, in order
    retry_after: str | None = None                # Retry-After header sent with 429s
    hang_at_query: int | None = None              # the n-th query (1-based) hangs
    hanging: threading.Event = field(default_factory=threading.Event)  # set when it hangs
    release: threading.Event = field(default_factory=threading.Event)  # ends the hang
    queries: int = 0                              # queries accepted (limits passed)
    in_flight: int = 0
    max_in_flight: int = 0                        # most queries seen at once
    limit_rejections: int = 0                     # 429s because a limit was exceeded
    statuses: Counter = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)  # path and form of each query
    sessions: dict[str, Sequence[Member]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _recent: deque = field(default_factory=deque)

    def add_cohort(self, cohort_id: int, name: str, members: Sequence[Member | str]) -> Cohort:
        """A cohort; plain strings are members whose only property is their distinct id."""
        cohort = Cohort(cohort_id, name, [m if isinstance(m, Member) else Member(m)
                                          for m in members]
                        if not isinstance(members, GeneratedMembers) else members)
        self.cohorts[cohort_id] = cohort
        return cohort

    def admit(self) -> bool:
        """Count a query in if both limits allow it (else it gets a 429)."""
        with self.lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window_seconds:
                self._recent.popleft()
            if self.in_flight >= self.max_concurrent or len(self._recent) >= self.max_per_window:
                self.limit_rejections += 1
                return False
            self._recent.append(now)
            self.queries += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def next_fault(self) -> str | None:
        with self.lock:
            return self.script.pop(0) if self.script else None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"queries": self.queries, "max_in_flight": self.max_in_flight,
                    "limit_rejections": self.limit_rejections,
                    "statuses": {str(k): v for k, v in self.statuses.items()}}


class Handler(JsonReplies, BaseHTTPRequestHandler):
    # Buffered (flushed after each request) and no Nagle: no answer waits on a delayed ACK.
    wbufsize = -1
    no_delay = True
    server: MixpanelQueryServer

    def answered(self, status: int) -> None:
        with self.server.state.lock:
            self.server.state.statuses[status] += 1

    def _authorized(self, params: dict[str, str]) -> str | None:
        """None when the request may go on, else the 401 message."""
        state = self.server.state
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return "missing Basic authorization"
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return "malformed authorization"
        if (user, password) != state.service_account:
            return "Invalid credentials"
        if params.get("project_id") != state.project_id:
            return "project_id is missing or not a project of this service account"
        return None

    def do_POST(self) -> None:
        state = self.server.state
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        form = {k: v[-1] for k, v in parse_qs(body).items()}
        handlers = {"/api/query/cohorts/list": self._cohorts_list,
                    "/api/query/engage": self._engage}
        if url.path not in handlers:
            self._reply(404, {"error": "not found", "status": "error"})
            return
        problem = self._authorized(params)
        if problem:
            self._reply(401, {"error": problem, "status": "error"})
            return
        if state.workspace_id is not None and params.get("workspace_id") != state.workspace_id:
            self._reply(400, {"error": "workspace_id is required for this project",
                              "status": "error"})
            return
        if not state.admit():
            self._reply(429, {"error": "Query rate limit exceeded", "status": "error"},
                        {"Retry-After": state.retry_after} if state.retry_after else None)
            return
        try:
            self._answer(url.path, handlers[url.path], form)
        finally:
            state.done()

    def _answer(self, path: str, handler: Any, form: dict[str, str]) -> None:
        state = self.server.state
        with state.lock:
            state.log.append({"path": path, "form": form, "at": time.monotonic()})
            number = state.queries
        if state.hang_at_query == number:
            state.hanging.set()
            state.release.wait(60)
        fault = state.next_fault()
        if state.answer_delay:
            time.sleep(state.answer_delay)
        if fault and fault.startswith("slow"):
            time.sleep(float(fault.partition(":")[2] or 1))
        if fault == "drop":
            self._drop()
            return
        if fault == "echo_auth":  # a proxy's (or a careless server's) error page
            self._reply(400, {"error": "bad request; you sent Authorization: "
                              f"{self.headers.get('Authorization', '')}", "status": "error"})
            return
        if fault == "402":
            self._reply(402, {"error": "Your plan does not allow API calls. Upgrade to use "
                              "the Query API.", "status": "error"})
            return
        if fault == "expire_session":
            with state.lock:
                state.sessions.pop(form.get("session_id", ""), None)
        if fault in ("429", "500", "502", "503"):
            headers = {"Retry-After": state.retry_after} if fault == "429" and \
                state.retry_after else None
            self._reply(int(fault), {"error": "injected", "status": "error"}, headers)
            return
        handler(form)

    def _cohorts_list(self, form: dict[str, str]) -> None:
        state = self.server.state
        self._reply(200, [{"id": c.id, "name": c.name, "description": c.description,
                           "count": len(c.members), "created": c.created,
                           "is_visible": c.is_visible, "project_id": int(state.project_id)}
                          for c in state.cohorts.values()])

    def _engage(self, form: dict[str, str]) -> None:
        state = self.server.state
        try:
            cohort_filter = json.loads(form.get("filter_by_cohort", "null"))
            wanted = json.loads(form["output_properties"]) \
                if "output_properties" in form else None
            page = int(form.get("page", "0"))
        except (ValueError, TypeError) as exc:
            self._reply(400, {"error": f"invalid parameter: {exc}", "status": "error"})
            return
        if not isinstance(cohort_filter, dict) or "id" not in cohort_filter:
            self._reply(400, {"error": "this server only answers filter_by_cohort queries",
                              "status": "error"})
            return
        cohort = state.cohorts.get(int(cohort_filter["id"]))
        if cohort is None:
            self._reply(400, {"error": f"cohort {cohort_filter['id']} not found",
                              "status": "error"})
            return
        include_all = form.get("include_all_users", "true").lower() != "false"
        if page == 0:
            session_id = uuid.uuid4().hex
            members = cohort.members if isinstance(cohort.members, GeneratedMembers) \
                else [m for m in cohort.members if include_all or m.properties is not None]
            with state.lock:
                state.sessions[session_id] = members
        else:
            session_id = form.get("session_id", "")
            if session_id not in state.sessions:
                self._reply(400, {"error": "session_id is missing, unknown or expired; it is "
                                  "required for page > 0 (from the answer to page 0)",
                                  "status": "error"})
                return
            members = state.sessions[session_id]
        chunk = members[page * state.page_size:(page + 1) * state.page_size]
        results = [{"$distinct_id": m.distinct_id,
                    "$properties": {k: v for k, v in (m.properties or {}).items()
                                    if wanted is None or k in wanted}} for m in chunk]
        self._reply(200, {"page": page, "page_size": state.page_size, "session_id": session_id,
                          "status": "ok", "total": len(members), "results": results})


class MixpanelQueryServer(LoopbackServer):
    def __init__(self, port: int = 0, state: QueryState | None = None):
        super().__init__(port, Handler)
        self.state = state or QueryState()

    def stop(self) -> None:
        self.state.release.set()  # a hanging query ends
        super().stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8998)
    parser.add_argument("--members", type=int, default=10_000,
                        help="members of cohort 1 (generated, user-<n>)")
    parser.add_argument("--first", type=int, default=0, help="the first member's number")
    parser.add_argument("--max-per-hour", type=int, default=1_000_000)
    args = parser.parse_args()
    state = QueryState(max_per_window=args.max_per_hour)
    state.add_cohort(1, "Benchmark cohort", GeneratedMembers(args.members, args.first))
    server = MixpanelQueryServer(args.port, state)
    print(f"listening on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
