"""plugin_support.declared_settings: one declaration gives the schema, the typed values, secrets."""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jsonschema
import pytest

from mixpanel_cohort_receiver.settings import ReceiverSettings
from plugin_support.declared_settings import DeclaredSettings, setting
from plugin_support.delivery_settings import DeliverySettings
from plugin_support.setting_checks import SettingError
from tap_braze_currents.settings import CurrentsSettings
from tap_mixpanel_cohorts.settings import Settings as CohortSettings
from target_braze.settings import BrazeSettings
from target_mixpanel.settings import MixpanelSettings


@dataclass(frozen=True, kw_only=True)
class Example(DeliverySettings):
    """Every kind of setting once."""

    setting_words: ClassVar[dict[str, str]] = {"prefix": "example", "delivered": "stored"}

    name: str = setting("n", options=["n", "m"], description="A choice.")
    token: str = setting("", secret=True, description="A secret.")
    count: int = setting(3, minimum=1, maximum=9, description="A count.")
    ratio: float = setting(0.5, exclusive_minimum=0, maximum=1, description="A ratio.")
    flag: bool = setting(True, description="A flag.")
    ids: tuple[int, ...] | None = setting(None, description="Some ids.")
    labels: Mapping[str, str] = setting({}, description="Some labels.")
    since: dt.datetime | None = setting(None, description="A moment.")
    url: str = setting(required=True, description="Where to {prefix}.")
    workers: int = setting(factory=lambda: 4, minimum=1, description="Computed by default.")


def test_the_schema_comes_from_the_annotations() -> None:
    schema = Example.schema()
    properties = schema["properties"]
    assert list(properties)[:3] == ["name", "token", "count"]  # its own first, then inherited
    assert list(properties)[-1] == "request_timeout_seconds"
    assert properties["name"] == {"type": ["string", "null"], "default": "n",
                                  "description": "A choice.", "enum": ["n", "m"]}
    assert properties["token"]["secret"] is properties["token"]["writeOnly"] is True
    assert "default" not in properties["token"]  # "" is unset
    assert properties["count"]["type"] == ["integer", "null"]
    assert (properties["count"]["minimum"], properties["count"]["maximum"]) == (1, 9)
    # Meltano passes a decimal set through the environment only as a string
    assert properties["ratio"]["type"] == ["number", "string", "null"]
    assert properties["ratio"]["exclusiveMinimum"] == 0
    assert properties["ids"]["items"] == {"type": ["integer"]}
    assert properties["labels"]["additionalProperties"] == {"type": ["string"]}
    assert properties["since"]["format"] == "date-time"
    assert properties["url"] == {"type": ["string"], "description": "Where to example."}
    assert schema["required"] == ["url"]
    assert "default" not in properties["workers"]
    assert properties["dead_letter_path"]["default"] == "example-dead-letters.jsonl"
    assert "records not stored" in properties["dead_letter_path"]["description"]
    jitter = properties["retry_jitter_seconds"]
    assert (jitter["minItems"], jitter["maxItems"], jitter["default"]) == (2, 2, [1.0, 5.0])


def test_a_validated_config_is_read_typed_with_every_default() -> None:
    config = {"url": "https://x", "ratio": "0.25", "ids": [4, 5], "labels": {"a": "b"},
              "since": "2025-04-01T00:00:00Z", "max_retry_seconds": "7.5", "token": "t0k3n"}
    jsonschema.validate(config, Example.schema())
    read = Example.from_config(config)
    assert (read.ratio, read.ids, read.labels, read.max_retry_seconds) == (
        0.25, (4, 5), {"a": "b"}, 7.5)
    assert read.since == dt.datetime(2025, 4, 1, tzinfo=dt.timezone.utc)
    assert (read.name, read.count, read.flag, read.workers) == ("n", 3, True, 4)
    assert read.request_timeout_seconds == 120.0
    assert isinstance(read.request_timeout_seconds, float)
    assert read.retry_jitter_seconds == (1.0, 5.0)
    assert (read.retry.jitter_min, read.retry.budget_seconds) == (1.0, 7.5)
    assert read.dead_letter_path == "example-dead-letters.jsonl"
    assert read.secret_settings() == {"token": "t0k3n"}
    assert "t0k3n" not in repr(read)
    assert pickle.loads(pickle.dumps(read)) == read


def test_a_plugin_can_give_an_inherited_setting_its_own_default() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Calm(Example):
        setting_defaults: ClassVar[dict[str, Any]] = {"retry_jitter_seconds": (0.0, 0.0)}

    assert Calm.schema()["properties"]["retry_jitter_seconds"]["default"] == [0.0, 0.0]
    assert Calm.from_config({"url": "https://x"}).retry.jitter_max == 0.0
    assert Example.from_config({"url": "https://x"}).retry.jitter_max == 5.0


def test_an_unset_optional_setting_is_none() -> None:
    read = Example.from_config({"url": "https://x", "ids": None, "since": ""})
    assert (read.ids, read.since, read.labels) == (None, None, {})


def test_a_moment_is_utc_unless_it_names_an_offset_and_one_that_does_not_parse_is_named() -> None:
    read = Example.from_config({"url": "https://x", "since": "2025-04-01T05:30:00"})
    assert read.since == dt.datetime(2025, 4, 1, 5, 30, tzinfo=dt.timezone.utc)
    read = Example.from_config({"url": "https://x", "since": "2025-04-01T05:30:00+02:00"})
    assert read.since == dt.datetime(2025, 4, 1, 3, 30, tzinfo=dt.timezone.utc)
    with pytest.raises(SettingError, match=r"since 'yesterday' is not a date and time: use "
                       r"ISO 8601, e.g\. 2025-04-01T00:00:00Z"):
        Example.from_config({"url": "https://x", "since": "yesterday"})


def test_number_options_are_refused() -> None:
    """Meltano refuses TARGET_X_LEVEL=2 as "not a valid choice" of options [1, 2]."""
    with pytest.raises(TypeError, match="options must be strings"):
        setting(1, options=[1, 2], description="A level.")


@pytest.mark.parametrize("cls", [MixpanelSettings, BrazeSettings, CohortSettings,
                                 ReceiverSettings, CurrentsSettings])
def test_each_plugin_reads_the_defaults_its_schema_publishes(
        cls: type[DeclaredSettings]) -> None:
    for name, prop in cls.schema()["properties"].items():
        if "default" in prop:
            default: Any = cls.default_of(name)
            published = prop["default"]
            jsonschema.validate(published, prop)  # a value the setting accepts
            assert (list(default) if isinstance(default, tuple) else default) == published, name
        assert prop["description"], name
    numbers = [name for name, prop in cls.schema()["properties"].items()
               if "number" in prop["type"]]
    assert all("string" in cls.schema()["properties"][n]["type"] for n in numbers), numbers
