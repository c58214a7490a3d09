"""A Braze /users/track-compatible server for tests and benchmarks, on loopback.

It enforces what Braze documents for /users/track (see ../shared/docs/cohort-sync.md): Bearer
auth with a REST key holding `users.track` (401 for an unknown key, echoing it as Braze's
SDK endpoint does; 403 for a key without the permission), at most 75 objects per request
(400 beyond), one attributes object per user naming `external_id`, `_update_existing_only`
(an unknown user is not created), array custom attributes changed with {"add", "remove"}
(a set) up to an array limit (25: the object is refused with a per-object error), a plain
array replacing, null removing. Every answer carries X-RateLimit-Limit/Remaining/Reset
(windows of `window_seconds` aligned on the epoch); over the limit it answers 429. Faults can
be scripted or drawn at random: 429, 5xx, connections dropped before or after a request is
applied. The profiles it ends with are what tests assert on.

The rules here are written independently of target_braze's, so the tests can catch a wrong
rule in the target.

    python -m testkit.braze_server --port 8998 --rate-limit 100 --known-users 100000
    python -m testkit.braze_server --port 8998 --rate-limit 500 --fast   # benchmarks: count only
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import urlparse

import msgspec

from testkit.loopback_server import JsonReplies, LoopbackServer

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_KEY = "braze-rest-key-6f1c2d9e8a7b4c3d"
NO_PERMISSION_KEY = "braze-rest-key-without-users-track-01"


@dataclass
class BrazeState:
    """What the server stored and saw; tests read and steer it."""

    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    keys_without_permission: set[str] = field(default_factory=lambda: {NO_PERMISSION_KEY})
    known_users: set[str] = field(default_factory=set)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # external_id -> attrs
    created_users: set[str] = field(default_factory=set)   # made without _update_existing_only
    not_created: Counter = field(default_factory=Counter)  # unknown users left alone
    max_objects: int = 75
    array_limit: int = 25
    truncated: Counter = field(default_factory=Counter)    # user -> values Braze dropped
    bulk_requests: int = 0                                  # requests with X-Braze-Bulk: true
    poison_users: set[str] = field(default_factory=set)     # a request naming one gets 400
    script: list[str] = field(default_factory=list)         # faults for the next requests
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 1
    rate_limit: int | None = None                           # requests per window
    window_seconds: int = 1
    window_start: float = 0.0
    window_used: int = 0
    statuses: Counter = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies of applied requests
    applied_objects: int = 0
    first_request_at: float = 0.0                           # time.time() of the first POST
    last_answer_at: float = 0.0
    keep_bodies: bool = True
    fast: bool = False                                      # count objects, store nothing
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def next_fault(self) -> str | None:
        with self.lock:
            if self.script:
                return self.script.pop(0) or None
            for fault, rate in self.fault_rates.items():
                if self._random.random() < rate:
                    return fault
        return None

    def take_slot(self) -> tuple[bool, dict[str, str]]:
        """(allowed, rate-limit headers) for a request arriving now.

        The time is read under the lock: requests meet the windows in the order they are counted.
        """
        if self.rate_limit is None:
            return True, {}
        with self.lock:
            now = time.time()
            start = math.floor(now / self.window_seconds) * self.window_seconds
            if start != self.window_start:
                self.window_start, self.window_used = start, 0
            allowed = self.window_used < self.rate_limit
            self.window_used += int(allowed)
            remaining = self.rate_limit - self.window_used
        return allowed, {"X-RateLimit-Limit": str(self.rate_limit),
                         "X-RateLimit-Remaining": str(remaining),
                         "X-RateLimit-Reset": str(int(start + self.window_seconds))}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"statuses": dict(self.statuses), "applied_objects": self.applied_objects,
                    "profiles": len(self.profiles), "created_users": len(self.created_users),
                    "requests": sum(self.statuses.values()),
                    "first_request_at": self.first_request_at,
                    "last_answer_at": self.last_answer_at}

    def cohorts_of(self, user: str, attribute: str = "mixpanel_cohorts") -> set[str]:
        return set((self.profiles.get(user) or {}).get(attribute) or [])


def _is_array_change(value: Any) -> bool:
    """{"add": [...], "remove": [...]} changes an array; any other object is a nested value."""
    return isinstance(value, dict) and bool(value) and set(value) <= {"add", "remove"} and \
        all(isinstance(v, list) for v in value.values())


def user_key(obj: dict[str, Any]) -> tuple[str | None, str]:
    """The profile an attributes object names (Braze's `/users/track` identifiers).

    Its external_id, braze_id or email as is, a user alias as `alias_label:alias_name`.
    """
    alias = obj.get("user_alias")
    if isinstance(alias, dict):
        name, label = alias.get("alias_name"), alias.get("alias_label")
        return (f"{label}:{name}" if isinstance(name, str) and isinstance(label, str)
                and name and label else None), "user_alias"
    for identifier in ("external_id", "braze_id", "email"):
        value = obj.get(identifier)
        if value is not None:
            return (value if isinstance(value, str) and value else None), identifier
    return None, ""


def truncate(values: list[Any], limit: int) -> list[Any]:
    """What Braze keeps of an array over its limit: the newest `limit` values, no error.

    "Arrays exceeding the maximum number of elements will be truncated to contain the maximum
    number of elements" (Braze docs `_docs/_api/objects_filters/user_attributes_object.md`,
    and the SDK pages on custom attribute arrays): the oldest values (the first) go.
    """
    return values[-limit:] if len(values) > limit else values


def _kept(state: BrazeState, user: str, values: list[Any]) -> list[Any]:
    """What Braze stores of an array value (truncated as `truncate` says, counted)."""
    kept = truncate(values, state.array_limit)
    if len(kept) < len(values):
        state.truncated[user] += len(values) - len(kept)
    return kept


def apply_object(state: BrazeState, obj: Any) -> str | None:
    """Apply one attributes object; None, or the per-object error Braze would give."""
    if not isinstance(obj, dict):
        return "attributes object must be an object"
    user, identifier = user_key(obj)
    if user is None:
        return ("an attributes object needs one of 'external_id', 'user_alias', 'braze_id' "
                "or 'email'")
    attributes = {k: v for k, v in obj.items() if k not in (identifier,
                                                            "_update_existing_only")}
    for name, value in attributes.items():
        if name.startswith("$"):
            return f"'{name}' is not a valid custom attribute name"
        if name == "email" and value is not None and not EMAIL.match(str(value)):
            return "The value provided for the 'email' field is not a valid email."
    with state.lock:
        exists = user in state.profiles or user in state.known_users
        if not exists and obj.get("_update_existing_only") is True:
            state.not_created[user] += 1
            return None
        profile = dict(state.profiles.get(user) or {})
        for name, value in attributes.items():
            if value is None:
                profile.pop(name, None)
            elif _is_array_change(value):
                current = [v for v in profile.get(name) or [] if v not in value.get("remove", [])]
                added = value.get("add", [])
                # a value added again moves to the end (it is the newest)
                current = [v for v in current if v not in added] + list(dict.fromkeys(added))
                profile[name] = _kept(state, user, current)
            elif isinstance(value, list):
                profile[name] = _kept(state, user, list(value))
            else:
                profile[name] = value
        if not exists:
            state.created_users.add(user)
        state.profiles[user] = profile
        state.applied_objects += 1
    return None


class Handler(JsonReplies, BaseHTTPRequestHandler):
    server: BrazeServer
    no_delay = True
    not_found_body: ClassVar[dict[str, str]] = {"message": "Not found"}  # as Braze answers

    def answered(self, status: int) -> None:
        with self.server.state.lock:
            self.server.state.statuses[status] += 1
            self.server.state.last_answer_at = time.time()

    def do_POST(self) -> None:  # noqa: PLR0912
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlparse(self.path).path != "/users/track":
            self._reply(404, {"message": "Not found"})
            return
        header = self.headers.get("Authorization", "")
        key = header[7:] if header.startswith("Bearer ") else ""
        if key in state.keys_without_permission:
            self._reply(403, {"message": "Access denied: the key lacks users.track"})
            return
        if key not in state.api_keys:
            self._reply(401, {"message": f'The API key "{key}" is invalid'})
            return
        now = time.time()
        with state.lock:
            state.first_request_at = state.first_request_at or now
        allowed, rate_headers = state.take_slot()
        fault = state.next_fault()
        if fault == "drop_before":
            self._drop()
            return
        if not allowed or fault == "429":
            self._reply(429, {"message": "Rate limit exceeded"}, rate_headers)
            return
        if fault is not None and fault.isdigit() and 500 <= int(fault) < 600:
            self._reply(int(fault), {"message": "Internal server error"}, rate_headers)
            return
        if fault == "202":  # an older errors page: "queued" during maintenance; not applied
            self._reply(202, {"message": "queued"}, rate_headers)
            return
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            self._reply(400, {"message": "Invalid JSON"}, rate_headers)
            return
        objects = body.get("attributes") or [] if isinstance(body, dict) else None
        if not isinstance(objects, list):
            self._reply(400, {"message": "'attributes' must be an array"}, rate_headers)
            return
        total = sum(len(body.get(k) or []) for k in ("attributes", "events", "purchases"))
        if total > state.max_objects:
            self._reply(400, {"message": f"Too many objects: {total}; at most "
                              f"{state.max_objects} per request",
                              "errors": ["too many objects"]}, rate_headers)
            return
        if self.headers.get("X-Braze-Bulk", "").lower() == "true":
            with state.lock:
                state.bulk_requests += 1
        if any(isinstance(o, dict) and o.get("external_id") in state.poison_users
               for o in objects):
            self._reply(400, {"message": "Malformed request", "errors": ["bad object"]},
                        rate_headers)
            return
        if state.fast:  # benchmarks: the rate limit and the count, no profiles
            with state.lock:
                state.applied_objects += len(objects)
            self._reply(201, {"message": "success", "attributes_processed": len(objects)},
                        rate_headers)
            return
        errors = []
        for index, obj in enumerate(objects):
            problem = apply_object(state, obj)
            if problem is not None:
                errors.append({"type": problem, "input_array": "attributes", "index": index})
        if state.keep_bodies:
            with state.lock:
                state.requests.append(body)
        if fault == "drop_after":
            self._drop()
            return
        answer: dict[str, Any] = {"message": "success",
                                  "attributes_processed": len(objects) - len(errors)}
        if errors:
            answer["errors"] = errors
        self._reply(201, answer, rate_headers)


class BrazeServer(LoopbackServer):
    def __init__(self, port: int = 0, state: BrazeState | None = None):
        super().__init__(port, Handler)
        self.state = state or BrazeState()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8998)
    parser.add_argument("--rate-limit", type=int, help="requests per window; 429 above")
    parser.add_argument("--window-seconds", type=int, default=1)
    parser.add_argument("--known-users", type=int, default=0,
                        help="users user-0 .. user-(N-1) exist in Braze")
    parser.add_argument("--fast", action="store_true",
                        help="benchmarks: count objects, keep no profiles")
    args = parser.parse_args()
    state = BrazeState(rate_limit=args.rate_limit, window_seconds=args.window_seconds,
                       known_users={f"user-{i}" for i in range(args.known_users)},
                       keep_bodies=False, fast=args.fast)
    server = BrazeServer(args.port, state)
    print(f"Braze-compatible server on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
