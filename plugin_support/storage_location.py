"""Opening a local path or s3://, gs://, az:// URL with fsspec, errors naming the setting.

For plugins that keep files of their own somewhere a user chooses (the cohort tap's
snapshots). Every string inside the options counts as secret and never shows in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsspec

from plugin_support.redaction import redact

SUPPORTED_SCHEMES = "a local path, file://, s3://, gs://, gcs://, az://, abfs:// or abfss://"


class StorageLocationError(Exception):
    """The location cannot be opened or used; the message names the setting to fix."""


def option_secrets(options: Mapping[str, Any]) -> list[str]:
    """Every string value in the options, nested ones included."""
    found: list[str] = []
    for value in options.values():
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            found.extend(option_secrets(value))
    return found


def open_location(url: str, options: Mapping[str, Any] | None, url_setting: str,
                  options_setting: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path) for `url`; nothing is read or written yet."""
    secrets = option_secrets(options or {})
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(options or {}))
    except (ValueError, ImportError) as exc:
        msg = (f"{url_setting} {url!r} cannot be opened: "
               f"{redact(f'{type(exc).__name__}: {exc}', secrets)}. Use {SUPPORTED_SCHEMES}.")
        raise StorageLocationError(msg) from None
    except TypeError as exc:
        msg = (f"{options_setting} are not accepted by the {url.split(':', 1)[0]} filesystem: "
               f"{redact(str(exc), secrets)}")
        raise StorageLocationError(msg) from None
    return fs, root.rstrip("/") or root
