"""Config validation whose messages never show the value of a secret setting.

The Singer SDK's messages quote the offending value ("'abc' is not of type 'integer' in
config['x']"); for a setting marked secret (a token, a key, storage options) that value is the
secret. Both plugins mix this in before their SDK base class.
"""

from __future__ import annotations

import json
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from plugin_support.redaction import redact


def secret_values(schema: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The values of the config's secret settings, as they may be printed."""
    values: list[str] = []
    for name, prop in (schema.get("properties") or {}).items():
        if not (prop.get("secret") or prop.get("writeOnly")) or config.get(name) in (None, ""):
            continue
        value = config[name]
        values += [str(value), repr(value), json.dumps(value, default=str)]
        if isinstance(value, dict):  # storage options: each string inside is secret too
            values += [v for v in value.values() if isinstance(v, str) and len(v) >= 4]
    return sorted({v for v in values if v}, key=len, reverse=True)


class SettingError(ValueError):
    """A setting is missing, out of range or inconsistent; the message names it."""


class SecretSafeConfig:
    """Mixin for a Singer plugin: config errors name the setting, hide secret values."""

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        secrets = secret_values(getattr(self, "config_jsonschema", {}),
                                getattr(self, "_config", {}))
        try:
            errors = super()._validate_config(raise_errors=raise_errors)  # type: ignore[misc]
        except ConfigValidationError as exc:
            raise ConfigValidationError(redact(str(exc), secrets),
                                        errors=[redact(e, secrets) for e in exc.errors],
                                        schema=exc.schema) from None
        return [redact(e, secrets) for e in errors]
