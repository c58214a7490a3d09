"""Settings declared once: one typed dataclass field per setting, everything else derived.

A plugin declares each setting once, as a field of a frozen dataclass that inherits
`DeclaredSettings`: its name, type (the annotation), default, description, secrecy and range::

    @dataclass(frozen=True, kw_only=True)
    class MySettings(HttpSettings):        # shared settings: inherit their declaration
        region: str = setting("US", options=["US", "EU"], description="Data residency.")
        api_key: str = setting("", secret=True, description="The API key.")
        batch_size: int = setting(500, minimum=1, maximum=2000, description="Per request.")
        state_interval_seconds: float = setting(60, exclusive_minimum=0, maximum=3600,
                                                description="How often a STATE is written.")
        cohort_ids: tuple[int, ...] | None = setting(None, description="Cohorts to read.")
        start_date: dt.datetime | None = setting(None, description="Earliest event.")

        def check(self) -> None:           # what a schema cannot say; SettingError names it
            ...

    class MyTap(SecretSafeConfig, Tap):
        config_jsonschema = MySettings.schema()
        ...
        settings = MySettings.from_config(self.config)   # typed, defaults filled, checked

From that come:

- `schema()`: the JSON schema (the SDK validates the config with it; tools/generate_meltano.py
  and tools/generate_settings_doc.py write meltano.yml's settings and docs/settings.md from it).
  Types follow the annotations: `str`, `int`, `bool`, `float` (a number or a numeric string:
  Meltano passes a setting set through the environment as a string, and cannot pass a
  `kind: decimal` one at all), `dt.datetime` (an ISO 8601 string; UTC unless it names an
  offset), `tuple[X, ...]` or
  `list[X]` (an array; `tuple[X, X]`: exactly two), `dict` / `dict[str, str]` (an object), and
  `X | None`. `secret=True` marks it secret (the SDK and meltano.yml then treat it as
  sensitive); `json_type=` replaces the type keywords where the annotation cannot say it (an
  id given as a number or a numeric string).
- `from_config(config)`: the typed values of a validated config (numeric strings become
  floats, arrays tuples, dates aware UTC datetimes), each unset one its default, then
  `check()`. A date that does not parse (a schema's `format` is not checked) is a
  SettingError naming the setting.
- `secret_settings()`: the secret settings' values (for a redaction); a secret field is
  left out of `repr()`.

Defaults: a field's default is its value when the setting is unset (None, or missing) and
the schema's `default`, except None, "" and an empty container, which the schema leaves out
(the setting then shows as unset). `factory=` computes a default when read (CPUs + 1, ...).
`{word}` in a default or a description is filled from the class's `setting_words`, so a
shared declaration can name a plugin's own files (plugin_support.delivery_settings); a plugin
that needs another default for a setting it inherits says so in `setting_defaults` (the cohort
tap's retries: no jitter). Both apply to `from_config` and the schema, so read through it. In the
schema a class's own settings come first, then those it inherits.

Moving a plugin onto it: write one field per property of its `th.PropertiesList` (same name,
description, default, range; `th.DateTimeType` -> `dt.datetime | None`, a SECONDS-like
duration -> `float`), set `config_jsonschema = MySettings.schema()`, move the checks of its
`from_config` (or of raw `self.config` reads) into `check()`, turn values it derived into
properties of the fields, and read `MySettings.from_config(self.config)` once. Then
`tools/generate_meltano.py --check` and `tools/generate_settings_doc.py --check` show what
changed, and tests/pipelines/test_settings_from_environment.py gives every setting through
Meltano.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from plugin_support.setting_checks import SettingError

__all__ = ["DATE_EXAMPLE", "NUMERIC_STRING", "DeclaredSettings", "setting", "settings_schema"]

NUMERIC_STRING = r"^[0-9]+(\.[0-9]+)?$"  # a non-negative decimal, as Meltano passes it
DATE_EXAMPLE = "2025-04-01T00:00:00Z"  # a date setting's format, as an error message shows it
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_KEY = "declared_setting"
_UNSET_DEFAULTS: tuple[Any, ...] = (None, "", (), [], {})


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What `setting()` was told about one setting, beyond its name and type."""

    description: str
    default: Any = None
    factory: Callable[[], Any] | None = None
    secret: bool = False
    required: bool = False
    options: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    item_minimum: float | None = None
    item_maximum: float | None = None
    json_type: Mapping[str, Any] | None = None


def setting(default: Any = None, *, description: str, secret: bool = False,
            required: bool = False, options: Sequence[Any] | None = None,
            minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: float | None = None, item_minimum: float | None = None,
            item_maximum: float | None = None, json_type: Mapping[str, Any] | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field declaring one setting (see the module docstring)."""
    if options is not None and not all(isinstance(o, str) for o in options):
        # Meltano's `kind: options` compares a value given through the environment, a string,
        # with each option: TARGET_X_LEVEL=2 is "not a valid choice" of [0, 1, 2, 3]
        msg = f"options must be strings (use minimum and maximum for numbers), got {options}"
        raise TypeError(msg)
    declaration = Declaration(
        description=description, default=default, factory=factory, secret=secret,
        required=required, options=tuple(options) if options is not None else None,
        minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum,
        item_minimum=item_minimum, item_maximum=item_maximum, json_type=json_type)
    metadata = {_KEY: declaration}
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=not secret, metadata=metadata)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default),
                                 repr=not secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Declared:
    """One declared setting: its name, its type without None, and its declaration."""

    name: str
    kind: Any
    optional: bool
    declaration: Declaration


T = TypeVar("T", bound="DeclaredSettings")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeclaredSettings:
    """Base of a plugin's settings: the schema, the typed reading and the secrets."""

    # `{word}` in a declared default or description -> the plugin's word (see the docstring)
    setting_words: ClassVar[Mapping[str, str]] = {}
    # setting -> this plugin's default of a setting it inherits (see the docstring)
    setting_defaults: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The settings as JSON schema (a fresh copy: the SDK's config_jsonschema)."""
        return copy.deepcopy(settings_schema(cls))

    @classmethod
    def declared(cls) -> list[_Declared]:
        """The declared settings, the class's own first, then those it inherits."""
        return _declared(cls)

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The typed value of setting `name` when it is unset."""
        item = next(i for i in cls.declared() if i.name == name)
        return _default_value(cls, item)

    @classmethod
    def from_config(cls: type[T], config: Mapping[str, Any]) -> T:
        """The typed settings of a validated config, unset ones at their default; checked.

        `check()` raises the error naming what is wrong (plugin_support.config_errors'
        SettingError, or a plugin's own).
        """
        values = {}
        for item in cls.declared():
            raw = config.get(item.name)
            if raw is None or (raw == "" and item.optional):
                values[item.name] = _default_value(cls, item)
            elif item.kind is dt.datetime:
                values[item.name] = _moment(item.name, raw)
            else:
                values[item.name] = _typed(item.kind, raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """What the schema cannot check (settings that go together, ...); nothing here."""

    def secret_settings(self) -> dict[str, Any]:
        """The secret settings that are set, by name."""
        return {item.name: getattr(self, item.name) for item in self.declared()
                if item.declaration.secret and getattr(self, item.name) not in _UNSET_DEFAULTS}


_DECLARED: dict[type, list[_Declared]] = {}
_SCHEMAS: dict[type, dict[str, Any]] = {}


def _declared(cls: type[DeclaredSettings]) -> list[_Declared]:
    if cls not in _DECLARED:
        _DECLARED[cls] = _read_declarations(cls)
    return _DECLARED[cls]


def _read_declarations(cls: type[DeclaredSettings]) -> list[_Declared]:
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls) if _KEY in f.metadata}
    order = [name for klass in cls.__mro__ for name in vars(klass).get("__annotations__", {})
             if name in by_name]
    result = []
    for name in dict.fromkeys(order):
        kind, optional = _without_none(hints[name])
        result.append(_Declared(name, kind, optional, by_name[name].metadata[_KEY]))
    return result


def settings_schema(cls: type[DeclaredSettings]) -> dict[str, Any]:
    """The JSON schema of a settings class (made once; `cls.schema()` gives a copy)."""
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = _schema(cls)
    return _SCHEMAS[cls]


def _schema(cls: type[DeclaredSettings]) -> dict[str, Any]:
    properties = {item.name: _property(cls, item) for item in cls.declared()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [item.name for item in cls.declared() if item.declaration.required]
    if required:
        schema["required"] = required
    schema["$schema"] = JSON_SCHEMA_DIALECT
    return schema


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of `X | None` or `X`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            msg = f"a setting has one type (or it and None), not {annotation}"
            raise TypeError(msg)
        return args[0], True
    return annotation, False


def _type_keywords(kind: Any, declaration: Declaration | None = None) -> dict[str, Any]:
    """JSON schema type keywords of an annotation (declaration: the item range of arrays)."""
    origin = typing.get_origin(kind) or kind
    args = typing.get_args(kind)
    if kind is str:
        return {"type": ["string"]}
    if kind is bool:
        return {"type": ["boolean"]}
    if kind is int:
        return {"type": ["integer"]}
    if kind is float:
        return {"type": ["number", "string"], "pattern": NUMERIC_STRING}
    if kind is dt.datetime:
        return {"type": ["string"], "format": "date-time"}
    if origin in (tuple, list):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        item = args[0] if args else str
        items = _item_keywords(item, declaration)
        keywords: dict[str, Any] = {"type": ["array"]}
        if fixed:
            keywords.update(minItems=len(args), maxItems=len(args))
        return {**keywords, "items": items}
    if origin in (dict, Mapping) or kind is dict:
        value = args[1] if len(args) == 2 else Any
        extra: Any = True if value is Any else {"type": _type_keywords(value)["type"]}
        return {"type": ["object"], "properties": {}, "additionalProperties": extra}
    msg = f"no JSON schema for a setting of type {kind}"
    raise TypeError(msg)


def _item_keywords(item: Any, declaration: Declaration | None) -> dict[str, Any]:
    # an array's items come as JSON: a float item is a number, never a numeric string
    keywords: dict[str, Any] = {"type": ["number"]} if item is float else _type_keywords(item)
    if declaration is not None:
        for keyword, bound in (("minimum", declaration.item_minimum),
                               ("maximum", declaration.item_maximum)):
            if bound is not None:
                keywords[keyword] = bound
    return keywords


def _property(cls: type[DeclaredSettings], item: _Declared) -> dict[str, Any]:
    declaration = item.declaration
    prop = dict(declaration.json_type or _type_keywords(item.kind, declaration))
    if not declaration.required:
        prop["type"] = [*prop["type"], "null"]
    for keyword, bound in (("minimum", declaration.minimum), ("maximum", declaration.maximum),
                           ("exclusiveMinimum", declaration.exclusive_minimum)):
        if bound is not None:
            prop[keyword] = bound
    default = _words(cls, cls.setting_defaults.get(item.name, declaration.default))
    if declaration.factory is None and default not in _UNSET_DEFAULTS:
        prop["default"] = list(default) if isinstance(default, tuple) else default
    prop["description"] = _words(cls, declaration.description)
    if declaration.options is not None:
        prop["enum"] = list(declaration.options)
    if declaration.secret:
        prop.update(secret=True, writeOnly=True)
    return prop


def _words(cls: type[DeclaredSettings], value: Any) -> Any:
    """A str with `{word}`s filled from the class's setting_words; anything else as is."""
    if isinstance(value, str):
        for word, replacement in cls.setting_words.items():
            value = value.replace("{" + word + "}", replacement)
    return value


def _default_value(cls: type[DeclaredSettings], item: _Declared) -> Any:
    declaration = item.declaration
    if declaration.factory is not None:
        return declaration.factory()
    default = _words(cls, cls.setting_defaults.get(item.name, declaration.default))
    if default is None:
        return None
    return _typed(item.kind, copy.deepcopy(default))


def _typed(kind: Any, value: Any) -> Any:
    """A validated setting's value as its annotation says (numeric strings -> float, ...)."""
    origin = typing.get_origin(kind) or kind
    args = typing.get_args(kind)
    if kind in (str, int, float) and not isinstance(value, bool):
        return kind(value)
    if kind is dt.datetime:
        moment = value if isinstance(value, dt.datetime) else \
            dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else \
            moment.astimezone(dt.timezone.utc)
    if origin in (tuple, list):
        item = args[0] if args else Any
        typed = [value_ if item is Any else _typed(item, value_) for value_ in value]
        return tuple(typed) if origin is tuple else typed
    if origin in (dict, Mapping) or kind is dict:
        return dict(value)
    return value


def _moment(name: str, value: Any) -> dt.datetime:
    """A date setting's value as an aware UTC datetime; SettingError names one not parsed."""
    try:
        return typing.cast(dt.datetime, _typed(dt.datetime, value))
    except ValueError:
        msg = (f"{name} {value!r} is not a date and time: use ISO 8601, e.g. {DATE_EXAMPLE} "
               "(UTC unless it names another offset)")
        raise SettingError(msg) from None
