"""Demo of `meltano run tap-mixpanel-cohorts target-braze` against the project's own servers.

Starts the Mixpanel Query API-compatible and Braze /users/track-compatible servers (testkit),
seeds a few cohorts and the users Braze knows, runs the pipeline twice (a membership change
between the runs) and prints what Braze ended with. The local servers' URLs and keys are passed
to Meltano explicitly, so no real account is ever written to. Run from the project root with
PYTHONPATH=. (scripts/demo does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit.braze_server import API_KEY, BrazeServer, BrazeState
from testkit.mixpanel_query_server import MixpanelQueryServer

MELTANO = Path(".meltano-venv/bin/meltano")
KNOWN_USERS = {f"user-{i}" for i in range(1, 9)}


def meltano_env(mixpanel: MixpanelQueryServer, braze: BrazeServer, demo: Path) -> dict[str, str]:
    """The pipeline's settings: both plugins pointed at the local servers."""
    query = mixpanel.state
    return {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{demo.resolve()}/cohorts-meltano.db",
            "TAP_MIXPANEL_COHORTS_API_URL": mixpanel.url,
            "TAP_MIXPANEL_COHORTS_PROJECT_ID": query.project_id,
            "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_USERNAME": query.service_account[0],
            "TAP_MIXPANEL_COHORTS_SERVICE_ACCOUNT_SECRET": query.service_account[1],
            "TAP_MIXPANEL_COHORTS_SNAPSHOT_URL": str(demo.resolve() / "cohort-snapshots"),
            "TARGET_BRAZE_API_KEY": API_KEY, "TARGET_BRAZE_REST_ENDPOINT": braze.url,
            "TARGET_BRAZE_DRY_RUN": "false",
            "TARGET_BRAZE_DEAD_LETTER_PATH": str(demo.resolve() / "braze-dead-letters.jsonl")}


def run_pipeline(env: dict[str, str], log: Path) -> None:
    """One `meltano run tap-mixpanel-cohorts target-braze`; its output goes to log."""
    with log.open("w") as out:
        done = subprocess.run([str(MELTANO), "run", "tap-mixpanel-cohorts", "target-braze"],
                              env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        print(log.read_text()[-4000:])
        sys.exit(f"meltano run failed (exit {done.returncode}); the log is {log}")


def print_braze(braze: BrazeServer, sent_before: int) -> None:
    """Users per cohort on Braze's profiles, and the attribute objects this run applied."""
    cohorts: dict[str, list[str]] = {}
    for user, profile in sorted(braze.state.profiles.items()):
        for name in profile.get("mixpanel_cohorts") or []:
            cohorts.setdefault(name, []).append(user)
    for name in sorted(cohorts):
        print(f"    {name}: {len(cohorts[name])} users: {', '.join(cohorts[name])}")
    print(f"    users updated by this run (each with its whole set): "
          f"{braze.state.applied_objects - sent_before}")


def main() -> None:
    demo = Path(sys.argv[1] if len(sys.argv) > 1 else "demo")
    demo.mkdir(parents=True, exist_ok=True)
    mixpanel = MixpanelQueryServer().start()
    braze = BrazeServer(state=BrazeState(known_users=set(KNOWN_USERS))).start()
    try:
        query = mixpanel.state
        query.add_cohort(1, "Power users", ["user-1", "user-2", "user-3", "visitor-9"])
        query.add_cohort(2, "Churn risk", ["user-3", "user-4"])
        query.add_cohort(3, "Trial", ["user-5", "user-6", "user-7"])
        env = meltano_env(mixpanel, braze, demo)
        print()
        print("meltano run tap-mixpanel-cohorts target-braze, against the project's Mixpanel "
              "Query API- and Braze-compatible servers")
        print(f"(Braze knows {len(KNOWN_USERS)} users, user-1 .. user-8; visitor-9 is not "
              "created):")
        print("  first run, what Braze ended with (attribute mixpanel_cohorts):")
        run_pipeline(env, demo / "cohorts-meltano-1.log")
        print_braze(braze, 0)
        sent = braze.state.applied_objects
        query.add_cohort(1, "Power users", ["user-2", "user-3", "user-8"])
        query.add_cohort(3, "Trial", ["user-5", "user-6"])
        print("  Mixpanel changes: Power users -user-1 +user-8, Trial -user-7; second run "
              "(only the users whose set changed are sent):")
        run_pipeline(env, demo / "cohorts-meltano-2.log")
        print_braze(braze, sent)
    finally:
        braze.stop()
        mixpanel.stop()


if __name__ == "__main__":
    main()
