"""target-braze: the Singer target, its hooks, and the glue from messages to delivery."""

from __future__ import annotations

import logging
import time
from typing import Any

from singer_sdk import Target

from plugin_support.config_errors import SecretSafeConfig, SettingError
from plugin_support.distribution import DISTRIBUTION
from plugin_support.line_reader import FastReader
from plugin_support.record_messages import mapped_records
from plugin_support.run_end import RunEnd
from plugin_support.stop_signals import StopAtNextState
from target_braze.delivery import Delivery
from target_braze.settings import CONFIG_SCHEMA, BrazeSettings
from target_braze.sinks import BrazeSink
from target_braze.user_changes import COHORT_STREAM
from target_braze.wiring import build_delivery

logger = logging.getLogger("target-braze")

__all__ = ["SettingError", "TargetBraze"]


class TargetBraze(RunEnd, StopAtNextState, SecretSafeConfig, Target):
    """Singer target for Braze's /users/track (custom attributes, existing users only)."""

    name = "target-braze"
    package_name = DISTRIBUTION  # for --version
    default_sink_class = BrazeSink
    message_reader_class = FastReader
    config_jsonschema = CONFIG_SCHEMA
    delivered_word = accounted_word = "applied"  # in the summary's lines (RunEnd)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The SDK target; a bad line delivers what came before it, a failure abandons."""
        super().__init__(*args, **kwargs)
        self._delivery: Delivery | None = None
        self._settings: BrazeSettings | None = None
        self._streams_seen: set[str] = set()
        self._held_state: dict | None = None  # see _write_state_message
        self._last_progress = time.monotonic()
        reader = self.message_reader
        if isinstance(reader, FastReader):
            reader.on_failure = self._abandon
            reader.on_input_error = self._deliver_before_failing

    @property
    def settings(self) -> BrazeSettings:
        """The settings, read and checked once."""
        if self._settings is None:
            self._settings = BrazeSettings.from_config(self.config)
        return self._settings

    @property
    def delivery(self) -> Delivery:
        """The delivery pipeline, built on first use after the settings are checked."""
        if self._delivery is None:
            self._delivery = build_delivery(self.settings, self._write_state_message)
        return self._delivery

    # -- Singer messages -----------------------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        delivery = self.delivery
        for stream, record in mapped_records(self.mapper, message_dict):
            delivery.add(stream, record)
        self._maybe_progress()

    def _process_schema_message(self, message_dict: dict) -> None:
        super()._process_schema_message(message_dict)
        self._streams_seen.add(str(message_dict.get("stream")))

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        self.delivery.add_state(message_dict["value"])

    def _process_batch_message(self, message_dict: dict) -> None:
        msg = (f"BATCH message of stream {message_dict.get('stream')!r}: target-braze reads "
               "RECORD messages; unset the tap's batch_config")
        raise ValueError(msg)

    # -- the end (plugin_support.run_end) -------------------------------------------------

    def _started_delivery(self) -> Delivery | None:
        return self._delivery

    def _setting_at_fault(self) -> str | None:
        """The setting that kept every record so far from applying, if one did."""
        if self._delivery is None or self.settings.dry_run:
            return None
        summary, settings = self._delivery.summary(), self.settings
        if not summary["received"] or summary["applied"]:
            return None
        if settings.mapping == "mixpanel_cohorts":
            only_skipped = sum(summary["skipped"].values()) == summary["received"]
            return "mapping" if only_skipped and COHORT_STREAM not in self._streams_seen \
                else None
        refused = f"refused before sending: {settings.external_id_field}"
        return "external_id_field" if summary["dead_lettered"] == {
            refused: summary["received"]} else None

    def _fail_if_a_setting_delivered_nothing(self) -> None:
        """Records came and none could apply because of a setting: say which, exit 1.

        No state was emitted, so the rerun with the setting fixed reads the records again.
        """
        setting = self._setting_at_fault()
        if setting == "mapping":
            msg = (f"mapping is mixpanel_cohorts but the tap sent no {COHORT_STREAM} stream "
                   f"(streams: {sorted(self._streams_seen)}): select it, or set mapping: "
                   "attributes. No state was emitted.")
            raise SettingError(msg)
        if setting == "external_id_field":
            msg = (f"no record has a usable external_id_field "
                   f"({self.settings.external_id_field!r}): set it to the field holding the "
                   "Braze external_id. No state was emitted; the records are in the "
                   "dead-letter file, and the rerun reads them again.")
            raise SettingError(msg)

    # -- reporting -----------------------------------------------------------------------

    def _maybe_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < self.settings.progress_interval_seconds:
            return
        self._last_progress = now
        s = self.delivery.summary()
        logger.info("progress: %s received, %s applied, %s users updated, %s cohort sets, "
                    "%s dead-lettered, %s requests, %s retries, %s 429s", f"{s['received']:,}",
                    f"{s['applied']:,}", f"{s['users_updated']:,}", f"{s['cohort_sets']:,}",
                    f"{sum(s['dead_lettered'].values()):,}",
                    f"{s['requests']:,}", f"{s['retries']:,}", f"{s['throttled_429']:,}")


if __name__ == "__main__":
    TargetBraze.cli()
