"""The settings every HTTP plugin shares, declared once: retries, timeout, dead letters, ...

`HttpSettings` (retries, timeout: the taps and the targets) and `DeliverySettings` (also dead
letters, dry run and progress: the targets) are plugin_support.declared_settings classes a
plugin's settings inherit; the defaults and ranges live here only. A plugin names its own
files and outcome through `setting_words` ({"prefix": "braze", "delivered": "applied"}).
`delivery_setting_errors` checks what a schema cannot (jitter's order, a dead-letter file
that could not be written); the plugins' config check (plugin_support.config_errors) runs it
at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_support.dead_letter import unwritable_reason
from plugin_support.declared_settings import DeclaredSettings, setting
from plugin_support.retry import RetryPolicy

HOUR, DAY = 3600, 86400


@dataclass(frozen=True, kw_only=True)
class HttpSettings(DeclaredSettings):
    """How a plugin's HTTP requests are retried and timed out."""

    max_retry_seconds: float = setting(
        900, minimum=0, maximum=DAY,
        description="Total time one request (a batch, a query) may spend retrying 429/5xx/"
        "network errors before the run fails.")
    retry_first_delay_seconds: float = setting(
        2.0, minimum=0, maximum=HOUR,
        description="First backoff delay (doubles up to retry_max_delay_seconds).")
    retry_max_delay_seconds: float = setting(60.0, minimum=0, maximum=HOUR,
                                             description="Longest backoff delay.")
    retry_jitter_seconds: tuple[float, float] = setting(
        (1.0, 5.0), item_minimum=0, item_maximum=HOUR,
        description="Random jitter added to each delay: [min, max] seconds.")
    request_timeout_seconds: float = setting(120, exclusive_minimum=0, maximum=HOUR,
                                             description="Timeout of one HTTP request.")

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        low, high = self.retry_jitter_seconds
        return RetryPolicy(first_delay=self.retry_first_delay_seconds,
                           max_delay=self.retry_max_delay_seconds,
                           jitter_min=low, jitter_max=high,
                           budget_seconds=self.max_retry_seconds)



@dataclass(frozen=True, kw_only=True)
class DeliverySettings(HttpSettings):
    """A loader's: its HTTP settings, and where records not delivered and dry runs go."""

    dead_letter_path: str = setting(
        "{prefix}-dead-letters.jsonl",
        description="Newline-delimited JSON file of records not {delivered}, with the reason.")
    dry_run: bool = setting(False,
                            description="Send nothing; write the request bodies to dry_run_path.")
    dry_run_path: str = setting("{prefix}-dry-run",
                                description="Folder for dry-run request bodies.")
    progress_interval_seconds: float = setting(10, exclusive_minimum=0, maximum=DAY,
                                               description="How often a progress line is logged.")


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
