"""tap-mixpanel-cohorts: the Singer tap, its settings and its streams."""

from __future__ import annotations

import atexit
import io
import json
import logging
from dataclasses import asdict
from functools import cached_property, partial
from typing import Any, ClassVar

import click
from singer_sdk import Stream, Tap
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from plugin_support import redacted_output
from plugin_support.clean_exit import wait_until_stdout_is_read
from plugin_support.complete_stdout import WholeMessageWriter
from plugin_support.config_errors import SecretSafeConfig
from plugin_support.distribution import DISTRIBUTION
from plugin_support.redaction import Redactor
from plugin_support.stop_signals import StopSignalSetup
from tap_mixpanel_cohorts.cohort_sync import CohortSettingError, CohortSync
from tap_mixpanel_cohorts.membership import SessionExpiredError
from tap_mixpanel_cohorts.query_client import QuerySettingError
from tap_mixpanel_cohorts.settings import CONFIG_SCHEMA, WEBHOOK, Settings, SourceSettingError
from tap_mixpanel_cohorts.snapshots import SnapshotError, location_secrets
from tap_mixpanel_cohorts.state_checks import DELIVERED_STREAMS as STATE_STREAMS
from tap_mixpanel_cohorts.state_checks import StateError, check_saved_state, state_from_text
from tap_mixpanel_cohorts.streams import (
    CohortMembershipChangesStream,
    CohortMembersStream,
    CohortsStream,
    DeliveredCohortsStream,
    UserCohortsStream,
)
from tap_mixpanel_cohorts.webhook_source import WebhookCohortSync

logger = logging.getLogger(__name__)

# Errors whose message says which setting to fix.
SETTING_ERRORS = (QuerySettingError, SnapshotError, CohortSettingError, StateError,
                  SessionExpiredError, SourceSettingError)
MEMBER_STREAMS = (CohortMembersStream.name, CohortMembershipChangesStream.name,
                  UserCohortsStream.name)
DELIVERED_STREAMS = (UserCohortsStream.name, CohortMembershipChangesStream.name)
assert set(DELIVERED_STREAMS) == set(STATE_STREAMS)


class TapMixpanelCohorts(StopSignalSetup, SecretSafeConfig, Tap):
    """Mixpanel cohorts, their members, and the membership changes since the last sync."""

    name = "tap-mixpanel-cohorts"
    package_name = DISTRIBUTION  # for --version
    message_writer_class = WholeMessageWriter
    config_jsonschema = CONFIG_SCHEMA
    # No BATCH: a cohort's STATE follows its last record, which must be out, not in a file
    # announced later.
    capabilities: ClassVar[list[Any]] = [
        TapCapabilities.CATALOG, TapCapabilities.STATE, TapCapabilities.DISCOVER,
        TapCapabilities.ACTIVATE_VERSION, PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS, PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def _handle_termination(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: the SDK writes the state (it names only delivered cohorts), exit 0.

        Not in the middle of a message being written: then right after it. Before exiting,
        wait until `meltano run` has read what was written. A second signal stops at once.
        """
        writer = self.message_writer
        assert isinstance(writer, WholeMessageWriter)
        if writer.stop_pending:
            raise SystemExit(128 + signum)
        atexit.register(wait_until_stdout_is_read)
        writer.between_messages(partial(super()._handle_termination, signum, frame))

    @classmethod
    def invoke(cls, *, state: Any = None, **kwargs: Any) -> None:
        """The SDK's, with the state file read and checked first (StateError names it)."""
        if state is not None:
            try:
                state = io.StringIO(json.dumps(state_from_text(
                    state.read(), getattr(state, "name", "--state"))))
            except StateError as exc:
                cls.logger.error("%s", exc)
                raise click.exceptions.Exit(1) from None
        super().invoke(state=state, **kwargs)

    def extra_secrets(self, config: dict[str, Any]) -> list[str]:
        """Every snapshot_options/spool_options value and the locations' passwords."""
        secrets: list[str] = []
        for url, options in (("snapshot_url", "snapshot_options"),
                             ("spool_url", "spool_options")):
            given = config.get(options)
            secrets += location_secrets(str(config.get(url) or ""),
                                        given if isinstance(given, dict) else {})
        return secrets

    @property
    def redactor(self) -> Redactor:
        """The redaction installed once the config was validated (plugin_support)."""
        return redacted_output.installed()

    @cached_property
    def settings(self) -> Settings:
        """The config, typed."""
        return Settings.from_config(self.config)

    @cached_property
    def sync_run(self) -> CohortSync:
        """The run's cohorts and memberships (nothing is queried until a stream asks)."""
        reads_members = any(self.streams[name].selected for name in MEMBER_STREAMS)
        if self.settings.source == WEBHOOK:
            return WebhookCohortSync(self.settings, reads_members,
                                     saved_snapshots=self.named_snapshots(),
                                     saved_entries=self.saved_entries())
        return CohortSync(self.settings, reads_members, saved_snapshots=self.named_snapshots())

    def saved_entries(self) -> dict[str, list[dict[str, Any]]]:
        """Cohort id -> its entries in the delivered streams' state (user_cohorts' first)."""
        entries: dict[str, list[dict[str, Any]]] = {}
        for name in DELIVERED_STREAMS:
            stream = self.streams[name]
            assert isinstance(stream, DeliveredCohortsStream)
            for cohort_id, entry in stream.delivered.items():
                entries.setdefault(str(cohort_id), []).append(entry)
        return entries

    def named_snapshots(self) -> set[str]:
        """The snapshots the state of the delivered streams names."""
        named: set[str] = set()
        for name in DELIVERED_STREAMS:
            stream = self.streams[name]
            assert isinstance(stream, DeliveredCohortsStream)
            named |= stream.named_snapshots()
        return named

    def discover_streams(self) -> list[Stream]:
        """The four streams."""
        def sync_run() -> CohortSync:
            return self.sync_run

        return [stream(self, sync_run) for stream in (
            CohortsStream, CohortMembersStream, UserCohortsStream,
            CohortMembershipChangesStream)]

    def sync_all(self) -> None:  # type: ignore[misc]  # final in the SDK; extended, not replaced
        """Sync the streams, then drop snapshots no state names and log the run's summary.

        A setting error ends the run with its message (naming the setting), not a traceback.
        """
        try:
            check_saved_state(self.state)
            super().sync_all()
        except SETTING_ERRORS as exc:
            self.logger.error("%s", self.redactor(str(exc)))  # it names the setting to fix
            raise SystemExit(1) from None
        except Exception as exc:  # no traceback: it could quote a secret from deep inside
            self.logger.error("The run failed: %s", self.redactor(f"{type(exc).__name__}: "
                                                                  f"{exc}"))
            raise SystemExit(1) from None
        summary = self.sync_run.finish(self.named_snapshots())  # and those of the saved state
        self.logger.info("summary: %s", json.dumps(asdict(summary)))


if __name__ == "__main__":
    TapMixpanelCohorts.cli()
