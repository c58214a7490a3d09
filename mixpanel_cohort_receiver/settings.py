"""The receiver's settings, declared once: command-line flags, environment variables, schema.

Each is a plugin_support.declared_settings field.

`meltano invoke mixpanel-cohort-receiver` passes each setting of meltano.yml's utility as
`MIXPANEL_COHORT_RECEIVER_<NAME>`; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_support.declared_settings import DeclaredSettings, setting

ENV_PREFIX = "MIXPANEL_COHORT_RECEIVER_"


@dataclass(frozen=True, kw_only=True)
class ReceiverSettings(DeclaredSettings):
    """Where the receiver listens, who may post, where messages are stored."""

    host: str = setting("127.0.0.1", description="Address to listen on. Put a TLS reverse "
                        "proxy in front for Mixpanel to reach it (docs/cohort-webhooks.md).")
    port: int = setting(8787, minimum=1, maximum=65535, description="Port to listen on.")
    username: str = setting("", description="Basic auth user name Mixpanel's webhook "
                            "connection sends (empty: no auth; then keep the receiver "
                            "unreachable from outside).")
    password: str = setting("", secret=True,
                            description="Basic auth password of the webhook connection.")
    spool_url: str = setting("", required=True, description="Where messages are stored before "
                             "the receiver answers success: a local path, or s3://, gs://, "
                             "az:// (tap-mixpanel-cohorts' `spool_url` reads the same place).")
    spool_options: Mapping[str, Any] | None = setting(
        None, secret=True, description="fsspec options for spool_url (key, secret, "
        "endpoint_url, token, connection_string, ...).")
    max_body_megabytes: float = setting(16.0, minimum=0.01, maximum=1024,
                                        description="Largest body accepted (a page of 1,000 "
                                        "members with a few properties is about 0.2 MB).")

    @classmethod
    def from_sources(cls, argv: list[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> ReceiverSettings:
        """Flags, then `MIXPANEL_COHORT_RECEIVER_*` variables, then the defaults; checked."""
        environ = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="mixpanel-cohort-receiver",
            description="Receive Mixpanel's cohort webhook sync and store each message "
                        "durably for tap-mixpanel-cohorts (source: webhook).")
        for item in cls.declared():
            parser.add_argument(f"--{item.name.replace('_', '-')}", dest=item.name,
                                help=f"{item.declaration.description} "
                                     f"(env {ENV_PREFIX}{item.name.upper()})")
        given = vars(parser.parse_args(argv))
        values: dict[str, Any] = {}
        for item in cls.declared():
            raw = given[item.name]
            if raw is None:
                raw = environ.get(f"{ENV_PREFIX}{item.name.upper()}")
            if raw is None or raw == "":
                continue
            values[item.name] = _parse(item.name, _kind(item.kind), raw)
        return cls.from_config(values)

    def check(self) -> None:
        """Refuse a missing spool or a value out of range, naming the setting."""
        if not self.spool_url:
            raise SettingError("spool_url is required: a local path, s3://, gs:// or az:// "
                               f"URL (flag --spool-url or {ENV_PREFIX}SPOOL_URL)")
        if bool(self.username) != bool(self.password):
            raise SettingError("username and password go together: set both, or neither")
        for item in self.declared():
            value = getattr(self, item.name)
            low, high = item.declaration.minimum, item.declaration.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise SettingError(f"{item.name} {value} is out of range [{low}, {high}]")

    def __repr__(self) -> str:
        """The settings, secrets hidden."""
        secret = self.secret_settings()
        shown = {item.name: "***" if item.name in secret else getattr(self, item.name)
                 for item in self.declared()}
        return f"ReceiverSettings({shown})"


def _kind(kind: Any) -> str:
    """A setting's type as its parse error names it: "str", "int", "float" or "dict"."""
    origin = typing.get_origin(kind) or kind
    return "dict" if origin in (dict, Mapping) else getattr(origin, "__name__", "str")


class SettingError(ValueError):
    """A setting is missing or wrong; the message names it."""


def _parse(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "dict":
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
    except ValueError as exc:
        hidden = "" if name == "spool_options" else f" {raw!r}"
        raise SettingError(f"{name}{hidden} is not a valid {kind}: "
                           f"{'(value hidden)' if hidden == '' else exc}") from None
    return raw
