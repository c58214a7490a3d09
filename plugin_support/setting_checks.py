"""Checks every plugin's settings share: config files, ranges of numeric strings, URLs, typos.

The JSON schema's own validation (the SDK's) checks types and the ranges of numbers; what it
cannot see is here: a config file that is not JSON, a duration given as a string ("0") outside
its range, a URL setting without an http(s) scheme, and a setting nobody declared (a typo).
"""

from __future__ import annotations

import difflib
import json
import operator
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class SettingError(ValueError):
    """A setting is missing, out of range or inconsistent; the message names it."""


def read_config_file(path: str) -> dict[str, Any]:
    """A config file's settings; SettingError names the file when it is not a JSON object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"The config file {path} cannot be read: {type(exc).__name__}: {exc.args[-1]}"
        raise SettingError(msg) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (f"The config file {path} is not JSON: {exc.msg} at line {exc.lineno}, "
               f"column {exc.colno}")
        raise SettingError(msg) from None
    if not isinstance(config, dict):
        msg = (f"The config file {path} holds a JSON {type(config).__name__}, not an object "
               "of settings")
        raise SettingError(msg)
    return config


# JSON schema's range keywords: how a message says each, and whether a number is within it
RANGE_KEYWORDS = {"minimum": ("at least", operator.ge), "exclusiveMinimum": ("above", operator.gt),
                  "maximum": ("at most", operator.le), "exclusiveMaximum": ("below", operator.lt)}


def range_errors(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """Settings given as numeric strings outside their schema's range, each named.

    (Meltano passes some durations as strings; the schema's minimum/maximum apply to numbers
    only.)
    """
    errors = []
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name)
        if not isinstance(value, str):
            continue
        try:
            number = float(value)
        except ValueError:
            continue  # the schema's pattern names it
        for keyword, (word, within) in RANGE_KEYWORDS.items():
            bound = prop.get(keyword)
            if isinstance(bound, (int, float)) and not within(number, bound):
                errors.append(f"{name} must be {word} {bound:g}, got {value!r}")
    return errors


def check_http_url(setting: str, value: str, example: str) -> str:
    """`value` without a trailing slash, if it is an http(s) URL with a host; else SettingError."""
    url = value.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        msg = f"{setting} must be an http:// or https:// URL, e.g. {example}; got {value!r}"
        raise SettingError(msg)
    return url


def unknown_settings(known: Iterable[str], config: Mapping[str, Any]) -> list[str]:
    """A warning for each setting the plugin does not know, with the closest known one."""
    known = list(known)
    warnings = []
    for name in sorted(set(config) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"Unknown setting {name} is ignored{hint}")
    return warnings
