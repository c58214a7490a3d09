"""Config validation whose messages never show the value of a secret setting.

The Singer SDK's messages quote the offending value ("'abc' is not of type 'integer' in
config['x']"); for a setting marked secret (a token, a key, storage options) that value is the
secret. Every plugin mixes this in before its SDK base class. It also names a config file that
is not JSON, holds numeric strings to their range, checks the shared delivery settings, warns
about unknown settings, and once the config is valid masks the secrets in everything the
plugin prints from then on (plugin_support.redacted_output).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click
from singer_sdk.exceptions import ConfigValidationError

from plugin_support import redacted_output
from plugin_support.delivery_settings import delivery_setting_errors
from plugin_support.redaction import Redactor, redact
from plugin_support.setting_checks import (
    SettingError,
    range_errors,
    read_config_file,
    unknown_settings,
)

__all__ = ["SecretSafeConfig", "SettingError", "secret_values"]


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


class SecretSafeConfig:
    """Mixin for a Singer plugin: config errors name the setting, hide secret values."""

    name: str  # the plugin's, as its SDK logger is named

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        """The CLI's --config files; one that is not a JSON object is named."""
        for path in value:
            if path != "ENV":
                try:
                    read_config_file(path)
                except SettingError as exc:
                    raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        return super().cb_config(ctx, param, value)  # type: ignore[misc]

    def extra_secrets(self, config: dict[str, Any]) -> list[str]:
        """Secrets beyond the secret settings' values (a URL's password, ...); none by default."""
        return []

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        schema: dict[str, Any] = getattr(self, "config_jsonschema", {})
        config: dict[str, Any] = getattr(self, "_config", {})
        secrets = secret_values(schema, config) + self.extra_secrets(config)
        try:
            errors = super()._validate_config(raise_errors=raise_errors)  # type: ignore[misc]
        except ConfigValidationError as exc:
            raise ConfigValidationError(redact(str(exc), secrets),
                                        errors=[redact(e, secrets) for e in exc.errors],
                                        schema=exc.schema) from None
        errors = [*errors, *range_errors(schema, config), *delivery_setting_errors(config)]
        errors = [redact(e, secrets) for e in errors]
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors,
                                        schema=schema)
        for warning in unknown_settings(schema.get("properties") or {}, config):
            logging.getLogger(self.name).warning(redact(warning, secrets))
        redacted_output.install(Redactor(secrets))
        return errors
