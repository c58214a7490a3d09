"""The receiver's settings, declared once: command-line flags, environment variables, schema.

`meltano invoke mixpanel-cohort-receiver` passes each setting of meltano.yml's utility as
`MIXPANEL_COHORT_RECEIVER_<NAME>`; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

ENV_PREFIX = "MIXPANEL_COHORT_RECEIVER_"


def _setting(default: Any, description: str, *, secret: bool = False,
             minimum: float | None = None, maximum: float | None = None) -> Any:
    return field(default=default, metadata={"description": description, "secret": secret,
                                            "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class ReceiverSettings:
    """Where the receiver listens, who may post, where messages are stored."""

    host: str = _setting("127.0.0.1", "Address to listen on. Put a TLS reverse proxy in "
                         "front for Mixpanel to reach it (docs/cohort-webhooks.md).")
    port: int = _setting(8787, "Port to listen on.", minimum=1, maximum=65535)
    username: str = _setting("", "Basic auth user name Mixpanel's webhook connection sends "
                             "(empty: no auth; then keep the receiver unreachable from outside).")
    password: str = _setting("", "Basic auth password of the webhook connection.", secret=True)
    spool_url: str = _setting("", "Where messages are stored before the receiver answers "
                              "success: a local path, or s3://, gs://, az:// (tap-mixpanel-"
                              "cohorts' `spool_url` reads the same place).")
    spool_options: dict | None = _setting(  # noqa: RUF009
        None, "fsspec options for spool_url (key, secret, endpoint_url, token, "
        "connection_string, ...).", secret=True)
    max_body_megabytes: float = _setting(16.0, "Largest body accepted (a page of 1,000 members "
                                         "with a few properties is about 0.2 MB).",
                                         minimum=0.01, maximum=1024)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The settings as JSON Schema (for meltano.yml's utility and the settings reference)."""
        kinds = {"str": "string", "int": "integer", "float": "number", "dict": "object"}
        properties = {}
        for item in fields(cls):
            meta = item.metadata
            kind = kinds[_kind(item)]
            # a decimal also as a numeric string: Meltano passes decimals through the
            # environment only as strings (kind: string)
            prop: dict[str, Any] = {"type": ["number", "string"] if kind == "number" else kind,
                                    "description": meta["description"]}
            if kind == "number":
                prop["pattern"] = r"^[0-9]+(\.[0-9]+)?$"
            if meta["secret"]:
                prop["secret"] = True
            for bound in ("minimum", "maximum"):
                if meta[bound] is not None:
                    prop[bound] = meta[bound]
            if item.default is not None:
                prop["default"] = item.default
            properties[item.name] = prop
        return {"type": "object", "properties": properties, "required": ["spool_url"]}

    @classmethod
    def from_sources(cls, argv: list[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> ReceiverSettings:
        """Flags, then `MIXPANEL_COHORT_RECEIVER_*` variables, then the defaults; checked."""
        environ = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="mixpanel-cohort-receiver",
            description="Receive Mixpanel's cohort webhook sync and store each message "
                        "durably for tap-mixpanel-cohorts (source: webhook).")
        for item in fields(cls):
            parser.add_argument(f"--{item.name.replace('_', '-')}", dest=item.name,
                                help=f"{item.metadata['description']} "
                                     f"(env {ENV_PREFIX}{item.name.upper()})")
        given = vars(parser.parse_args(argv))
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = given[item.name]
            if raw is None:
                raw = environ.get(f"{ENV_PREFIX}{item.name.upper()}")
            if raw is None or raw == "":
                continue
            values[item.name] = _parse(item.name, _kind(item), raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse a missing spool or a value out of range, naming the setting."""
        if not self.spool_url:
            raise SettingError("spool_url is required: a local path, s3://, gs:// or az:// "
                               f"URL (flag --spool-url or {ENV_PREFIX}SPOOL_URL)")
        if bool(self.username) != bool(self.password):
            raise SettingError("username and password go together: set both, or neither")
        for item in fields(self):
            value, low, high = (getattr(self, item.name), item.metadata["minimum"],
                                item.metadata["maximum"])
            if (low is not None and value < low) or (high is not None and value > high):
                raise SettingError(f"{item.name} {value} is out of range [{low}, {high}]")

    def __repr__(self) -> str:
        """The settings, secrets hidden."""
        shown = {item.name: "***" if item.metadata["secret"] and getattr(self, item.name)
                 else getattr(self, item.name) for item in fields(self)}
        return f"ReceiverSettings({shown})"


def _kind(item: Any) -> str:
    """The annotation's type name: "str", "int", "float" or "dict"."""
    return str(item.type).removesuffix(" | None")


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
