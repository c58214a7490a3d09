"""Settings every loader has, declared once: retries, timeout, dead letters, dry run, progress.

Both targets splice these properties into their config schema and read the values with
`retry_policy_from`; the defaults and ranges live here only. `delivery_setting_errors` checks
what a schema cannot (jitter's order, a dead-letter file that could not be written); the
plugins' config check (plugin_support.config_errors) runs it at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

from plugin_support.dead_letter import unwritable_reason
from plugin_support.retry import RetryPolicy

# Durations: a number, or a string holding one. Meltano (4.4) turns a "decimal" setting given
# by an environment variable into a Decimal it then cannot write as JSON, so meltano.yml
# declares these as strings and the targets read both.
SECONDS = th.CustomType({"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$"})
HOUR, DAY = 3600, 86400


def seconds(*, maximum: float, minimum: float = 0, exclusive: bool = False) -> th.CustomType:
    """A duration in seconds within a range (`exclusive`: above `minimum`, not at it).

    A numeric string is held to the same range by plugin_support.setting_checks.
    """
    return th.CustomType({**SECONDS.type_dict, "maximum": maximum,
                          "exclusiveMinimum" if exclusive else "minimum": minimum})


def retry_properties() -> list[th.Property]:
    """The retry settings: budget, first and longest delay, jitter."""
    return [
        th.Property("max_retry_seconds", seconds(maximum=DAY), default=900,
                    description="Total time one batch may spend retrying 429/5xx/network "
                    "errors before the run fails."),
        th.Property("retry_first_delay_seconds", seconds(maximum=HOUR), default=2.0,
                    description="First backoff delay (doubles up to retry_max_delay_seconds)."),
        th.Property("retry_max_delay_seconds", seconds(maximum=HOUR), default=60.0,
                    description="Longest backoff delay."),
        th.Property("retry_jitter_seconds",
                    th.CustomType({"type": ["array", "null"], "minItems": 2, "maxItems": 2,
                                   "items": {"type": "number", "minimum": 0,
                                             "maximum": HOUR}}),
                    default=[1.0, 5.0],
                    description="Random jitter added to each delay: [min, max] seconds."),
    ]


def request_timeout_property() -> th.Property:
    """The timeout of one HTTP request."""
    return th.Property("request_timeout_seconds", seconds(maximum=HOUR, exclusive=True),
                       default=120,
                       description="Timeout of one HTTP request.")


def progress_property() -> th.Property:
    """How often a progress line is logged."""
    return th.Property("progress_interval_seconds", seconds(maximum=DAY, exclusive=True),
                       default=10,
                       description="How often a progress line is logged.")


def output_properties(prefix: str, outcome: str) -> list[th.Property]:
    """Where records not `outcome` go (dead letters), and the dry run: files named `prefix`-."""
    return [
        th.Property("dead_letter_path", th.StringType, default=f"{prefix}-dead-letters.jsonl",
                    description=f"Newline-delimited JSON file of records not {outcome}, with "
                    "the reason."),
        th.Property("dry_run", th.BooleanType, default=False,
                    description="Send nothing; write the request bodies to dry_run_path."),
        th.Property("dry_run_path", th.StringType, default=f"{prefix}-dry-run",
                    description="Folder for dry-run request bodies."),
    ]


def retry_policy_from(config: Mapping[str, Any]) -> RetryPolicy:
    """The retry policy the (validated, defaults filled) settings describe."""
    jitter = [*list(config["retry_jitter_seconds"] or [0.0, 0.0]), 0.0, 0.0]
    return RetryPolicy(first_delay=float(config["retry_first_delay_seconds"]),
                       max_delay=float(config["retry_max_delay_seconds"]),
                       jitter_min=float(jitter[0]), jitter_max=float(jitter[1]),
                       budget_seconds=float(config["max_retry_seconds"]))


def delivery_setting_errors(config: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check of the delivery settings given, each naming its setting."""
    errors = []
    jitter = config.get("retry_jitter_seconds")
    if isinstance(jitter, list) and len(jitter) == 2 \
            and all(isinstance(x, (int, float)) for x in jitter) and jitter[0] > jitter[1]:
        errors.append(f"retry_jitter_seconds must be [min, max] with min <= max, got {jitter}")
    path = config.get("dead_letter_path")
    if isinstance(path, str):
        problem = unwritable_reason(path)
        if problem:
            errors.append(f"dead_letter_path cannot be written: {problem}")
    return errors
