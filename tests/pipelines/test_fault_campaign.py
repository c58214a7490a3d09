"""The fault campaign's short form: 20 seeded trials of the whole pipeline, no event missing,
and 5 cohort-sync trials and 6 webhook-source trials, no Braze user differing from its Mixpanel
membership."""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import pytest

from testkit.fault_campaign import KILLS, MELTANO, MELTANO_KILLS, run_campaign


def test_twenty_trials_lose_no_event(tmp_path: Path) -> None:
    if not MELTANO.exists():
        pytest.fail("Meltano is not installed: run bash scripts/setup-tests")
    table = io.StringIO()
    outcomes = run_campaign(20, seed=12, runners=["meltano-record", "meltano-batch", "pipe"],
                            storages=["local", "s3"], work=tmp_path, out=table)
    print(table.getvalue())
    assert len(outcomes) == 20
    problems = [(o.trial, o.problem) for o in outcomes if o.problem]
    assert problems == []
    assert sum(o.missing for o in outcomes) == 0, table.getvalue()
    assert all(o.expected > 0 for o in outcomes)
    # the campaign did what it says: faults happened and were survived
    assert {o.trial.runner for o in outcomes} == {"meltano-record", "meltano-batch", "pipe"}
    assert {o.trial.kill for o in outcomes} == {None, *KILLS, *MELTANO_KILLS}
    # graceful stops (no duplicates allowed, checked per trial) in the pipe and under Meltano
    assert {o.trial.runner for o in outcomes if o.trial.kill == "term"} >= {"pipe",
                                                                            "meltano-record"}
    assert any(o.trial.s3_fault_rates for o in outcomes)
    assert any(sum(o.dead_lettered.values()) for o in outcomes)  # strict-mode refusals
    assert "missing" in table.getvalue()
    # pii: kept addresses reach Mixpanel (as Braze's export sends them); hashed or dropped never
    assert any(o.emails_shown for o in outcomes if o.trial.pii == "keep")
    assert not any(o.emails_shown for o in outcomes if o.trial.pii != "keep")
    assert {o.trial.pii for o in outcomes} == {"keep", "hash", "drop"}
    # half the trials, and every graceful stop, run as in a container: PYTHONUNBUFFERED=1
    assert {o.trial.kill for o in outcomes if o.trial.unbuffered} >= {"term", "meltano-term"}
    assert not all(o.trial.unbuffered for o in outcomes)


def test_the_secret_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    from testkit.fault_campaign import _files_holding, _produced_files  # noqa: PLC0415

    (tmp_path / "state.json").write_text('{"bookmarks": {}}')
    (tmp_path / "stderr.log").write_text("connecting with secret sa-secret-3f9d2a7c41 ...")
    files = _produced_files(tmp_path, since=time.time() + 3600)  # no Meltano logs
    assert _files_holding(files, ["sa-secret-3f9d2a7c41", ""]) == [str(tmp_path / "stderr.log")]
    assert _files_holding(files, ["not-there"]) == []


def test_cohort_trials_leave_every_braze_user_equal_to_its_mixpanel_membership(
        tmp_path: Path) -> None:
    from testkit.cohort_fault_campaign import run_cohort_campaign  # noqa: PLC0415

    table = io.StringIO()
    outcomes = run_cohort_campaign(5, seed=1, work=tmp_path, out=table)
    print(table.getvalue())
    assert [(o.trial.number, o.problem) for o in outcomes if o.problem] == []
    assert [o.differing for o in outcomes] == [0] * 5, table.getvalue()
    assert all(o.applied_objects > 0 for o in outcomes)
    # the faults happened: kills of both plugins, Braze 429 bursts, drops before and after
    # Braze applied a request, Mixpanel faults
    assert {o.trial.kill for o in outcomes} >= {"tap", "target", "target-at-state"}
    assert any(o.killed for o in outcomes), table.getvalue()
    assert any(o.trial.braze_burst for o in outcomes)
    served = sum((Counter(o.faults_seen) for o in outcomes), Counter())
    assert {"429", "drop_before", "drop_after"} <= set(served), served
    assert any(o.trial.mixpanel_script for o in outcomes)


def test_webhook_trials_leave_every_braze_user_equal_to_mixpanels_membership(
        tmp_path: Path) -> None:
    """Each webhook fault once: receiver killed, disk full, repeats, pages out of order, the tap
    and the target killed between reading the spool and the state."""
    from testkit.webhook_fault_campaign import WEBHOOK_FAULTS, run_webhook_campaign  # noqa: PLC0415

    table = io.StringIO()
    outcomes = run_webhook_campaign(len(WEBHOOK_FAULTS), seed=1, work=tmp_path, out=table)
    print(table.getvalue())
    assert [(o.trial.number, o.problem) for o in outcomes if o.problem] == []
    assert [o.differing for o in outcomes] == [0] * len(WEBHOOK_FAULTS), table.getvalue()
    hit = {o.trial.kill for o in outcomes if o.killed}
    # every fault happened (disk-full only where a user namespace can mount a tmpfs)
    assert hit >= set(WEBHOOK_FAULTS) - {"disk-full"}, table.getvalue()
