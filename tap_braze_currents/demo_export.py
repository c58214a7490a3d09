"""Write a realistic Braze Currents export (Avro files in Braze's key layout) for demos and tests.

Every event type comes from the shipped catalog; values follow the field names (ids, epoch
times, platforms, JSON `properties`, float32 prices, unicode, null external ids). Both key
layouts (`version=N/<env>` and the older `<schema-id>/<zone>`), several integrations, hours and
codecs sit side by side, as in a real bucket. Deterministic for a given seed.

    braze-currents-demo-export ./demo/currents --hours 3 --events-per-file 40
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import fastavro
import fsspec

from tap_braze_currents.event_types import catalog, catalog_avro_schema
from tap_braze_currents.layout import HOUR_FORMAT, hour_key

CODECS = ("null", "deflate", "snappy", "zstandard")
UNICODE_SAMPLES = ("Zürich", "東京", "São Paulo 🎉", "Ελληνικά", "naïve café")
CUSTOM_EVENT_NAMES = ("Added to Cart", "Viewed Product", "Level Complete 🎮", "Signed Up")
PRICES = (3.14, 0.99, 19.99, 4.2, 1234.56, 7.1)  # float32 makes 3.14 3.140000104904175

# Field name -> value maker (rng, event index). Fields not listed are made from their Avro type.
FIELD_VALUES: dict[str, Callable[[random.Random, int], Any]] = {
    "platform": lambda r, _: r.choice(("ios", "android", "web")),
    "os_version": lambda r, _: r.choice(("iOS 17.4", "Android 14", "Windows 11")),
    "device_model": lambda r, _: r.choice(("iPhone15,2", "Pixel 8", None)),
    "currency": lambda r, _: r.choice(("USD", "EUR", "JPY")),
    "price": lambda r, _: r.choice(PRICES),
    "timezone": lambda r, _: r.choice(("Europe/Berlin", "America/New_York", "Asia/Tokyo")),
    "email_address": lambda _, i: f"user{i}@example.com",
    "to_phone_number": lambda _, i: f"+1555{i:07d}",
    "from_phone_number": lambda _, i: f"+1444{i:07d}",
    "phone_number": lambda _, i: f"+1555{i:07d}",
    "name": lambda r, _: r.choice(CUSTOM_EVENT_NAMES),
    "product_id": lambda r, _: r.choice(("sku-1", "sku-2", "bundle-π")),
    "user_id": lambda r, _: f"{r.getrandbits(96):024x}",
    "latitude": lambda r, _: r.choice((52.52, 48.8566, -33.8688)),
    "longitude": lambda r, _: r.choice((13.405, 2.3522, 151.2093)),
}


def _properties_json(rng: random.Random, index: int) -> str:
    props = {
        "plan": rng.choice(("free", "pro", "enterprise")),
        "quantity": rng.randint(1, 5),
        "ratio": rng.choice((0.5, 1.25)),
        "city": rng.choice(UNICODE_SAMPLES),
        "tags": ["a", "b"],
        "nested": {"level": index % 3, "ok": True},
    }
    return json.dumps(props, ensure_ascii=False)


def _value_for_type(avro_type: Any, name: str, rng: random.Random, index: int) -> Any:
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if "null" in avro_type and rng.random() < 0.15:
            return None
        return _value_for_type(branches[0], name, rng, index)
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "array":
            return [_value_for_type(avro_type["items"], name, rng, index) for _ in range(2)]
        return _value_for_type(avro_type.get("type"), name, rng, index)
    if avro_type in ("int", "long"):
        return rng.randint(0, 10_000)
    if avro_type in ("float", "double"):
        return rng.choice(PRICES)
    if avro_type == "boolean":
        return rng.random() < 0.5
    if rng.random() < 0.1:
        return f"{name} {rng.choice(UNICODE_SAMPLES)}"
    return f"{name}-{index}"


@dataclass
class DemoExport:
    """What a generated export holds: event ids per type and how many lack an external id."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    without_external_id: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Number of events written."""
        return sum(len(v) for v in self.ids.values())


def make_event(event_type: str, fields: list[dict], rng: random.Random, index: int,
               epoch: int) -> dict[str, Any]:
    """One event of a type, valued from its field names and Avro types."""
    event: dict[str, Any] = {}
    for fdef in fields:
        name, avro_type = fdef["name"], fdef["type"]
        if name == "id":
            event[name] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif name == "time":
            event[name] = epoch
        elif name == "time_ms":
            event[name] = epoch * 1000 + rng.randint(0, 999)
        elif name == "external_user_id":
            event[name] = None if rng.random() < 0.15 else f"user-{rng.randint(1, 5000)}"
        elif name == "properties" and event_type.endswith(("CustomEvent", "Purchase")):
            event[name] = _properties_json(rng, index)
        elif name in FIELD_VALUES:
            value = FIELD_VALUES[name](rng, index)
            nullable = isinstance(avro_type, list) and "null" in avro_type
            event[name] = value if value is not None or nullable else f"{name}-{index}"
        else:
            event[name] = _value_for_type(avro_type, name, rng, index)
    return event


def write_avro_file(fs: fsspec.AbstractFileSystem, path: str, schema: dict,
                    records: Iterable[dict], codec: str = "null") -> None:
    """Write records as one Avro object container file at an fsspec path."""
    parsed = fastavro.parse_schema(schema)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local folders; a no-op on object stores
    with fs.open(path, "wb") as handle:
        fastavro.writer(handle, parsed, records, codec=codec)


def currents_key(integration: str, event_type: str, hour: str, *, old_layout: bool,
                 partition: int, offset: int, cloud: str = "S3") -> str:
    """A file key in Braze's layout, relative to the export prefix."""
    folder = f"dataexport.prod-01.{cloud}.integration.{integration}"
    after_date = "305823741/zone-1" if old_layout else "version=6/us-01"
    return (f"{folder}/event_type={event_type}/date={hour}/{after_date}/"
            f"{folder}+{partition}+{offset}.avro")


def write_demo_export(url: str, *, storage_options: dict | None = None,
                      event_types: Iterable[str] | None = None, hours: int = 3,
                      start: dt.datetime | None = None, files_per_hour: int = 1,
                      events_per_file: int = 20, integrations: int = 2,
                      seed: int = 7, codecs: tuple[str, ...] = CODECS) -> DemoExport:
    """Write a Currents export under `url` and return what it holds (codecs taken in turn)."""
    rng = random.Random(seed)
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    root = root.rstrip("/")
    start = start or dt.datetime(2025, 4, 1, tzinfo=dt.timezone.utc)
    integration_ids = [f"{rng.getrandbits(96):024x}" for _ in range(integrations)]
    types = list(event_types) if event_types is not None else list(catalog())
    result = DemoExport()
    counter = 0
    for type_index, event_type in enumerate(types):
        schema = catalog_avro_schema(event_type)
        if schema is None:
            msg = f"unknown event type {event_type!r}"
            raise ValueError(msg)
        ids = result.ids.setdefault(event_type, [])
        for hour_index in range(hours):
            moment = start + dt.timedelta(hours=hour_index)
            for integ_index, integration in enumerate(integration_ids):
                for part in range(files_per_hour):
                    events = []
                    for _ in range(events_per_file):
                        counter += 1
                        epoch = int(moment.timestamp()) + rng.randint(0, 3599)
                        events.append(make_event(event_type, schema["fields"], rng, counter, epoch))
                    key = currents_key(integration, event_type, hour_key(moment),
                                       old_layout=(hour_index + integ_index) % 2 == 1,
                                       partition=part, offset=counter)
                    codec = codecs[(type_index + hour_index + part) % len(codecs)]
                    write_avro_file(fs, f"{root}/{key}", schema, events, codec)
                    result.files.append(f"{root}/{key}")
                    ids.extend(e["id"] for e in events)
                    missing = sum(1 for e in events if e.get("external_user_id") is None)
                    result.without_external_id[event_type] = (
                        result.without_external_id.get(event_type, 0) + missing)
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: write a demo export and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="where to write: a local folder or an fsspec URL")
    parser.add_argument("--hours", type=int, default=3)
    parser.add_argument("--start", default="2025-04-01-00", help="first hour, YYYY-MM-DD-HH")
    parser.add_argument("--files-per-hour", type=int, default=1)
    parser.add_argument("--events-per-file", type=int, default=20)
    parser.add_argument("--integrations", type=int, default=2)
    parser.add_argument("--event-type", action="append", dest="event_types",
                        help="limit to these types (repeatable); default: every catalog type")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    start = dt.datetime.strptime(args.start, HOUR_FORMAT).replace(tzinfo=dt.timezone.utc)
    export = write_demo_export(args.url, event_types=args.event_types, hours=args.hours,
                               start=start, files_per_hour=args.files_per_hour,
                               events_per_file=args.events_per_file,
                               integrations=args.integrations, seed=args.seed)
    print(f"wrote {export.total} events of {len(export.ids)} event types "
          f"in {len(export.files)} files under {args.url}")


if __name__ == "__main__":
    main()
