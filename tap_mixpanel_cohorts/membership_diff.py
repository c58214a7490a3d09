"""What changed in a cohort between the snapshot Braze has and the membership read now."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass
class Changes:
    """User ids to add to and remove from a cohort, each under the cohort name to use."""

    adds: pl.Series
    add_name: str
    removes: pl.Series
    remove_name: str

    def __len__(self) -> int:
        return len(self.adds) + len(self.removes)


def membership_changes(before: pl.DataFrame | None, before_name: str | None,
                       now: pl.DataFrame | None, now_name: str) -> Changes:
    """Adds and removes turning `before` into `now`.

    No snapshot before: every member is an add. A cohort that is gone (`now` None): every
    member before is a remove. A new name: every member before is removed under the old name
    and every member now added under the new one.
    """
    old = before["user_id"] if before is not None else pl.Series("user_id", [], pl.String)
    new = now["user_id"] if now is not None else pl.Series("user_id", [], pl.String)
    old_name = before_name if before_name is not None else now_name
    if old_name != now_name or before is None:
        return Changes(new, now_name, old, old_name)
    adds = new.filter(~new.is_in(old))
    removes = old.filter(~old.is_in(new))
    return Changes(adds, now_name, removes, old_name)
