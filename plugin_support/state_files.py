"""A state file's text read as a tap's state, with errors that name the file and what to do."""

from __future__ import annotations

import json
from typing import Any

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
               float: "number", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (object, array, string, ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def state_from_text(text: str, source: str, hint: str,
                    error: type[Exception] = ValueError) -> dict[str, Any]:
    """The state in `text` (empty: none); `error` naming `source` and `hint` when it is not one.

    Refused: text that is not JSON, JSON that is not an object, and a whole STATE message
    (what a target printed) instead of its value.
    """
    if not text.strip():
        return {}
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise error(f"The state file {source} is not JSON ({exc}). {hint}") from None
    if not isinstance(state, dict):
        raise error(f"The state file {source} holds a JSON {json_type(state)}, not an object "
                    f"with bookmarks. {hint}")
    if state.get("type") == "STATE" and "value" in state:
        raise error(f"The state file {source} holds a whole STATE message: pass its value (the "
                    "object with bookmarks) instead.")
    return state
