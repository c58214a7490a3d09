"""The obvious cohort tap, the baseline bench/cohorts_tap.py prints beside tap-mixpanel-cohorts.

A plain singer-sdk tap (default writer and type conformance): pages /engage with requests and
json, keeps each cohort's members as a Python set, its snapshot as a JSON list in a local file,
and emits an add or remove per change. No query budget, no retries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import requests
from singer_sdk import Stream, Tap
from singer_sdk import typing as th


class PlainChangesStream(Stream):
    name = "cohort_membership_changes"
    primary_keys = ("cohort_id", "user_id", "action")
    schema = th.PropertiesList(
        th.Property("cohort_id", th.IntegerType), th.Property("user_id", th.StringType),
        th.Property("action", th.StringType)).to_dict()

    def _post(self, path: str, form: dict) -> object:
        answer = requests.post(self.config["api_url"] + path, data=form, timeout=60,
                               params={"project_id": self.config["project_id"]},
                               auth=(self.config["username"], self.config["secret"]))
        answer.raise_for_status()
        return answer.json()

    def get_records(self, context):
        for cohort in self._post("/api/query/cohorts/list", {}):
            members: set[str] = set()
            page, session = 0, None
            while True:
                form = {"filter_by_cohort": json.dumps({"id": cohort["id"]}), "page": page,
                        "include_all_users": "false"}
                if session:
                    form["session_id"] = session
                answer = self._post("/api/query/engage", form)
                members.update(r["$distinct_id"] for r in answer["results"])
                session = answer["session_id"]
                if len(answer["results"]) < answer["page_size"]:
                    break
                page += 1
            snapshot = Path(self.config["snapshot_folder"]) / f"cohort-{cohort['id']}.json"
            before = set(json.loads(snapshot.read_text())) if snapshot.exists() else set()
            for user_id in members - before:
                yield {"cohort_id": cohort["id"], "user_id": user_id, "action": "add"}
            for user_id in before - members:
                yield {"cohort_id": cohort["id"], "user_id": user_id, "action": "remove"}
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            snapshot.write_text(json.dumps(sorted(members)))


class PlainCohortsTap(Tap):
    name = "plain-sdk-cohorts"
    config_jsonschema = th.PropertiesList(
        th.Property("api_url", th.StringType), th.Property("project_id", th.StringType),
        th.Property("username", th.StringType), th.Property("secret", th.StringType),
        th.Property("snapshot_folder", th.StringType)).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [PlainChangesStream(self)]


if __name__ == "__main__":
    sys.exit(PlainCohortsTap.cli())
