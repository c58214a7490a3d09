"""Cohort names as Braze sees them: never two cohorts under one value or attribute name.

Array mode holds a cohort's name as a value, boolean mode makes an attribute name of it; two
cohorts must never end under the same one.

Shared by tap-mixpanel-cohorts (which names the cohorts it emits) and target-braze (which
turns a name into a boolean attribute's name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def attribute_slug(name: str) -> str:
    """A cohort name as part of an attribute name: lower case, runs of other signs as _."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "cohort"


def distinct_names(cohorts: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Cohort id -> the name it is synced under: its own, or `NAME (ID)` on a collision.

    A collision: another of the cohorts has the same name, or one that gives the same boolean
    attribute (the same slug). Every cohort of a colliding group gets its id, so no cohort's
    name depends on which of the others is selected first; the ids make the names distinct.
    """
    pairs = list(cohorts)
    by_slug: dict[str, list[int]] = {}
    for cohort_id, name in pairs:
        by_slug.setdefault(attribute_slug(name), []).append(cohort_id)
    return {cohort_id: f"{name} ({cohort_id})" if len(by_slug[attribute_slug(name)]) > 1
            else name for cohort_id, name in pairs}
