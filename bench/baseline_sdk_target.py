"""A plain singer-sdk target for Mixpanel: the baseline the target benchmark prints.

Default record validation, BatchSink of 2000, one request at a time, no gzip; the same event
shape as target-mixpanel's Braze mapping (simplified).
"""

from __future__ import annotations

import sys

import requests
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class PlainSink(BatchSink):
    max_size = 2000

    def process_batch(self, context: dict) -> None:
        events = []
        for record in context.get("records", []):
            if not record.get("external_user_id"):
                continue
            props = {k: v for k, v in record.items() if v is not None}
            props.update(distinct_id=record["external_user_id"], time=record["time"],
                         **{"$insert_id": record["id"]})
            events.append({"event": record.get("event_type", self.stream_name),
                           "properties": props})
        if events:
            response = requests.post(self.config["api_url"] + "/import", json=events,
                                     auth=(self.config["project_token"], ""), timeout=60)
            response.raise_for_status()


class PlainTarget(Target):
    name = "plain-sdk-mixpanel"
    default_sink_class = PlainSink
    config_jsonschema = th.PropertiesList(th.Property("api_url", th.StringType),
                                          th.Property("project_token", th.StringType)).to_dict()


if __name__ == "__main__":
    sys.exit(PlainTarget.cli())
