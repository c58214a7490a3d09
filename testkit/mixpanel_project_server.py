"""One Mixpanel project on one loopback URL: the Import API and the Query API over the same data.

`/import` goes to the Import API-compatible server (testkit.mixpanel_server), `/api/query/...`
to the Query API-compatible server (testkit.mixpanel_query_server); the client sees one host,
as with mixpanel.com. A cohort may be defined by a rule over the events imported so far
(`EventCohort`), computed when it is queried, as Mixpanel computes a cohort from events.
Users known only from imported events have no profile: Mixpanel's `/import` creates none, so
/api/query/engage lists them only with `include_all_users` true (its default). Profiles come
from `POST /engage#profile-batch-update` (answered here, not proxied): a JSON list of updates,
each with the project's `$token` and `$distinct_id`, `$set` / `$set_once` applied, at most 2000
a request (docs `reference/profile-batch-update`, `reference/user-profile-limits`); with
`verbose=1` the answer is `{"error": null, "status": 1}` (`status` 0 and the error otherwise,
still a 200, as Mixpanel answers).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, overload

from testkit.loopback_server import JsonReplies, LoopbackServer
from testkit.mixpanel_query_server import Member, MixpanelQueryServer
from testkit.mixpanel_server import MixpanelServer

HOP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}
MAX_PROFILE_UPDATES = 2000


class EventCohort(Sequence[Member]):
    """The users (distinct_id) with an imported event `rule` accepts; computed when read."""

    def __init__(self, project: MixpanelProjectServer, rule: Callable[[dict[str, Any]], bool]):
        self.project, self.rule = project, rule

    def _members(self) -> list[Member]:
        state = self.project.imports.state
        with state.lock:
            events = list(state.events.values())
        ids = {str((e.get("properties") or {}).get("distinct_id")) for e in events
               if self.rule(e) and (e.get("properties") or {}).get("distinct_id") is not None}
        with self.project.profiles_lock:
            return [Member(distinct_id, dict(self.project.profiles[distinct_id])
                           if distinct_id in self.project.profiles else None)
                    for distinct_id in sorted(ids)]

    def __len__(self) -> int:
        return len(self._members())

    @overload
    def __getitem__(self, index: int) -> Member: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Member]: ...

    def __getitem__(self, index: int | slice) -> Member | Sequence[Member]:
        return self._members()[index]


class Handler(JsonReplies, BaseHTTPRequestHandler):
    server: MixpanelProjectServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].split("#")[0] == "/engage":
            self._reply(200, self.server.update_profiles(body))
            return
        backend = self.server.query if self.path.startswith("/api/query/") \
            else self.server.imports
        connection = http.client.HTTPConnection("127.0.0.1", backend.server_address[1],
                                                timeout=120)
        try:
            connection.request("POST", self.path, body=body, headers={
                k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS})
            answer = connection.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException):
            self._reply(502, {"error": "bad gateway", "status": "error"})
            return
        finally:
            connection.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_HEADERS:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class MixpanelProjectServer(LoopbackServer):
    """Import and Query API of one project; `imports.state` and `query.state` steer them.

    Both use the same project id and service account (the query server's are set to the
    import server's).
    """

    def __init__(self, port: int = 0):
        super().__init__(port, Handler)
        self.imports = MixpanelServer()
        self.query = MixpanelQueryServer()
        credentials = self.imports.state.credentials
        self.query.state.project_id = credentials.project_id
        self.query.state.service_account = credentials.service_account
        self.profiles: dict[str, dict[str, Any]] = {}   # distinct_id -> profile properties
        self.profiles_lock = threading.Lock()

    def update_profiles(self, body: bytes) -> dict[str, Any]:
        """Apply a profile-batch-update body; Mixpanel's verbose answer (always a 200)."""
        try:
            updates = json.loads(body)
        except ValueError:
            return {"error": "data is not valid JSON", "status": 0}
        if not isinstance(updates, list) or len(updates) > MAX_PROFILE_UPDATES:
            return {"error": f"expected a list of at most {MAX_PROFILE_UPDATES} updates",
                    "status": 0}
        token = self.imports.state.credentials.project_token
        for update in updates:
            if not isinstance(update, dict) or update.get("$token") != token:
                return {"error": "$token is missing or not this project's token", "status": 0}
            if not isinstance(update.get("$distinct_id"), str):
                return {"error": "$distinct_id is required", "status": 0}
        with self.profiles_lock:
            for update in updates:
                profile = self.profiles.setdefault(update["$distinct_id"], {})
                profile.update(update.get("$set") or {})
                for key, value in (update.get("$set_once") or {}).items():
                    profile.setdefault(key, value)
        return {"error": None, "status": 1}

    def start(self) -> MixpanelProjectServer:
        self.imports.start()
        self.query.start()
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.query.stop()
        self.imports.stop()
