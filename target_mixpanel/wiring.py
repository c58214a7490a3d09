"""Settings -> a delivery pipeline: auth, endpoint, retry policy, mapping, PII, dead letters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from plugin_support.dead_letter import DeadLetterFile
from plugin_support.redaction import Redactor
from plugin_support.retry import Counters
from target_mixpanel.delivery import Delivery
from target_mixpanel.event_mapping import BrazeCurrentsMapping, GenericMapping
from target_mixpanel.import_client import DryRunClient, ImportClient
from target_mixpanel.pacing import AdaptivePace, SharedPace
from target_mixpanel.pii import PiiPolicy
from target_mixpanel.profile_updates import ProfileUpdatingSender
from target_mixpanel.settings import MixpanelAuth, MixpanelSettings

__all__ = ["build_delivery"]


def mapping_for(settings: MixpanelSettings) -> BrazeCurrentsMapping | GenericMapping:
    """The record -> event mapping the settings choose."""
    if settings.mapping == "generic":
        return GenericMapping(settings.event_name, settings.distinct_id_field,
                              settings.time_field, settings.insert_id_field)
    return BrazeCurrentsMapping()


def sender_for(settings: MixpanelSettings, counters: Counters, name: str,
               concurrency: int = 1, pace: SharedPace | None = None
               ) -> DryRunClient | ImportClient | ProfileUpdatingSender:
    """The HTTP client (or the dry-run writer) the settings choose.

    With adaptive sending it paces itself by `pace` (shared by the worker processes), or alone.
    """
    if settings.dry_run:
        dry_run = DryRunClient(settings.dry_run_path, settings.base_url, counters, prefix=name)
        return _with_profiles(settings, dry_run, counters, name)
    auth = settings.auth
    assert isinstance(auth, MixpanelAuth)  # from_config requires it unless dry_run
    params = {**auth.params, "ip": "0"}
    if settings.strict:
        params["strict"] = "1"
    client = ImportClient(settings.base_url, auth.basic, params,
                          gzip_level=settings.gzip_level if settings.gzip else None,
                          timeout=settings.request_timeout_seconds, retry=settings.retry,
                          verify=settings.verify_tls, counters=counters,
                          describe_auth=auth.describe, redact=Redactor(settings.secrets),
                          pace=(AdaptivePace(concurrency, pace)
                                if settings.adaptive_sending else None))
    return _with_profiles(settings, client, counters, name)


def _with_profiles(settings: MixpanelSettings, sender: DryRunClient | ImportClient,
                   counters: Counters, name: str,
                   ) -> DryRunClient | ImportClient | ProfileUpdatingSender:
    """`sender`, writing profile_properties after each batch when that setting is given.

    A dry run writes the /engage bodies to dry_run_path/engage/.
    """
    if not settings.profile_properties:
        return sender
    return ProfileUpdatingSender(sender, api_url=settings.base_url, token=settings.project_token,
                                 properties=dict(settings.profile_properties),
                                 retry=settings.retry, counters=counters,
                                 timeout=settings.request_timeout_seconds,
                                 verify=settings.verify_tls,
                                 dry_run_folder=(Path(settings.dry_run_path) / "engage"
                                                 if settings.dry_run else None),
                                 dry_run_name=f"profiles-{name}")


def build_delivery(settings: MixpanelSettings, emit_state: Callable[[dict], None], *,
                   name: str = "", concurrency: int | None = None,
                   pace: SharedPace | None = None) -> Delivery:
    """A delivery pipeline for one process.

    `name` tells its files apart from other workers'; `pace` is the one the processes share.
    """
    concurrency = concurrency or max(1, settings.max_concurrency)
    counters = Counters()
    return Delivery(mapping=mapping_for(settings),
                    sender=sender_for(settings, counters, name, concurrency, pace),
                    dead_letters=DeadLetterFile(settings.dead_letter_path,
                                                Redactor(settings.secrets)),
                    pii=PiiPolicy(settings.pii, settings.pii_salt),
                    emit_state=emit_state, counters=counters,
                    batch_size=settings.batch_size, max_batch_bytes=settings.max_batch_bytes,
                    max_concurrency=concurrency)
