"""tap-mixpanel-cohorts: the Singer tap, its settings and its streams."""

from __future__ import annotations

import atexit
import json
import logging
from dataclasses import asdict
from functools import cached_property, partial
from typing import Any, ClassVar

from singer_sdk import Stream, Tap
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from plugin_support.clean_exit import ignore_stop_signal_while_exiting, wait_until_stdout_is_read
from plugin_support.complete_stdout import WholeMessageWriter, complete_stdout_writes
from plugin_support.config_errors import SecretSafeConfig
from plugin_support.distribution import DISTRIBUTION
from tap_mixpanel_cohorts.cohort_sync import CohortSettingError, CohortSync
from tap_mixpanel_cohorts.query_client import QuerySettingError
from tap_mixpanel_cohorts.settings import CONFIG_SCHEMA, Settings
from tap_mixpanel_cohorts.snapshots import SnapshotError
from tap_mixpanel_cohorts.streams import (
    CohortMembershipChangesStream,
    CohortMembersStream,
    CohortsStream,
)

logger = logging.getLogger(__name__)

# Errors whose message says which setting to fix.
SETTING_ERRORS = (QuerySettingError, SnapshotError, CohortSettingError)
MEMBER_STREAMS = (CohortMembersStream.name, CohortMembershipChangesStream.name)


class TapMixpanelCohorts(SecretSafeConfig, Tap):
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

    def _setup_signal_handlers(self) -> None:
        """The SDK's (ours: `_handle_termination`), none once exiting; whole writes to stdout."""
        super()._setup_signal_handlers()
        ignore_stop_signal_while_exiting()
        complete_stdout_writes()  # a signal must not cut a write to stdout short

    @cached_property
    def settings(self) -> Settings:
        """The config, typed."""
        return Settings.from_config(self.config)

    @cached_property
    def sync_run(self) -> CohortSync:
        """The run's cohorts and memberships (nothing is queried until a stream asks)."""
        reads_members = any(self.streams[name].selected for name in MEMBER_STREAMS)
        changes = self.streams[CohortMembershipChangesStream.name]
        assert isinstance(changes, CohortMembershipChangesStream)
        return CohortSync(self.settings, reads_members, saved_snapshots=changes.named_snapshots())

    def discover_streams(self) -> list[Stream]:
        """The three streams."""
        return [CohortsStream(self), CohortMembersStream(self),
                CohortMembershipChangesStream(self)]

    def sync_all(self) -> None:  # type: ignore[misc]  # final in the SDK; extended, not replaced
        """Sync the streams, then drop snapshots no state names and log the run's summary.

        A setting error ends the run with its message (naming the setting), not a traceback.
        """
        try:
            super().sync_all()
        except SETTING_ERRORS as exc:
            self.logger.error("%s", exc)  # the message names the setting to fix
            raise SystemExit(1) from None
        changes = self.streams[CohortMembershipChangesStream.name]
        assert isinstance(changes, CohortMembershipChangesStream)
        summary = self.sync_run.finish(changes.named_snapshots())  # and those of the saved state
        self.logger.info("summary: %s", json.dumps(asdict(summary)))


if __name__ == "__main__":
    TapMixpanelCohorts.cli()
