"""Settings -> a delivery pipeline: the mapping, the client (or dry run), the pace, dead letters."""

from __future__ import annotations

from collections.abc import Callable

from plugin_support.dead_letter import DeadLetterFile
from plugin_support.retry import Counters
from target_braze.delivery import Delivery
from target_braze.rate_headers import HeaderPace
from target_braze.settings import BrazeSettings
from target_braze.user_changes import UserChanges
from target_braze.users_track import DryRunClient, UsersTrackClient


def build_delivery(settings: BrazeSettings, emit_state: Callable[[dict], None]) -> Delivery:
    """The delivery pipeline the settings describe."""
    counters = Counters()
    sender: DryRunClient | UsersTrackClient
    if settings.dry_run:
        sender = DryRunClient(settings, counters)
    else:
        sender = UsersTrackClient(settings, counters,
                                  HeaderPace() if settings.adaptive_sending else None)
    return Delivery(changes=UserChanges(settings), sender=sender,
                    dead_letters=DeadLetterFile(settings.dead_letter_path),
                    emit_state=emit_state, counters=counters,
                    objects_per_request=settings.objects_per_request,
                    max_concurrency=settings.max_concurrency)
