"""target-mixpanel: the Singer target, its settings, and the glue from messages to delivery."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import IO, Any

import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import (
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from target_mixpanel.dead_letter import DeadLetterFile
from target_mixpanel.delivery import Delivery
from target_mixpanel.event_mapping import BrazeCurrentsMapping, GenericMapping
from target_mixpanel.import_client import (
    Counters,
    DryRunClient,
    ImportClient,
    RetryPolicy,
)
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES, REGION_HOSTS
from target_mixpanel.pii import PiiPolicy
from target_mixpanel.sinks import MixpanelSink

logger = logging.getLogger("target-mixpanel")
_decode_line = msgspec.json.Decoder().decode
AUTH_SETTINGS = ("project_id + service_account_username + service_account_secret, "
                 "or project_token, or api_secret")


class SettingError(ValueError):
    """A setting is missing, out of range or inconsistent; the message names it."""


class FastReader(GenericSingerReader[Any]):
    """Singer lines parsed with msgspec (floats stay floats), RECORD lines on a short path."""

    @property
    def default_input(self) -> IO[bytes]:
        """Standard input, as bytes."""
        return sys.stdin.buffer

    def deserialize_json(self, line: Any) -> dict:
        """One line as a dict, or an error naming the line."""
        try:
            message = _decode_line(line)
        except msgspec.DecodeError as exc:
            text = line if isinstance(line, str) else line.decode("utf-8", "replace")
            msg = f"Input line is not valid JSON ({exc}): {text[:200]!r}"
            raise ValueError(msg) from None
        if not isinstance(message, dict) or "type" not in message:
            msg = f"Input line is not a Singer message: {str(line)[:200]!r}"
            raise ValueError(msg)
        return message

    def process_lines(self, file_input: IO[Any] | None, callbacks: dict) -> Counter[str]:
        """Dispatch every line to its callback; count lines by message type."""
        stats: Counter[str] = Counter()
        on_record = callbacks["RECORD"]
        decode = _decode_line
        records = 0
        for line in file_input or self.default_input:
            try:
                message = decode(line)
                kind = message["type"]
            except (msgspec.DecodeError, TypeError, KeyError):
                if not line.strip():
                    continue
                message = self.deserialize_json(line)  # raises, naming the line
                kind = message["type"]
            if kind == "RECORD":
                on_record(message)
                records += 1
                continue
            callback = callbacks.get(kind)
            if callback is None:
                self._process_unknown_message(message)
            else:
                callback(message)
            stats[kind] += 1
        stats["RECORD"] += records
        return stats


class TargetMixpanel(Target):
    """Singer target for Mixpanel's Import API."""

    name = "target-mixpanel"
    default_sink_class = MixpanelSink
    message_reader_class = FastReader

    config_jsonschema = th.PropertiesList(
        th.Property("project_id", th.StringType,
                    description="Mixpanel project id (required with a service account)."),
        th.Property("service_account_username", th.StringType,
                    description="Service account user name (preferred auth)."),
        th.Property("service_account_secret", th.StringType, secret=True,
                    description="Service account secret."),
        th.Property("project_token", th.StringType, secret=True,
                    description="Project token (auth when no service account is given)."),
        th.Property("api_secret", th.StringType, secret=True,
                    description="Project API secret (deprecated by Mixpanel; works, warns)."),
        th.Property("region", th.StringType, default="US", allowed_values=list(REGION_HOSTS),
                    description="Data residency: US (api), EU (api-eu) or IN (api-in)."),
        th.Property("api_url", th.StringType,
                    description="Base URL overriding region (proxies, tests); POSTs go to "
                    "{api_url}/import."),
        th.Property("mapping", th.StringType, default="braze_currents",
                    allowed_values=["braze_currents", "generic"],
                    description="braze_currents: Braze's own Mixpanel naming; generic: any tap."),
        th.Property("event_name", th.StringType, default="{stream}",
                    description="generic: event name; {field} and {stream} are filled in."),
        th.Property("distinct_id_field", th.StringType, default="distinct_id",
                    description="generic: the field holding the user id."),
        th.Property("time_field", th.StringType, default="time",
                    description="generic: the field holding the event time (epoch s/ms or "
                    "ISO 8601)."),
        th.Property("insert_id_field", th.StringType, default="id",
                    description="generic: the field that identifies an event for dedup "
                    "(absent: a hash of the record)."),
        th.Property("batch_size", th.IntegerType, default=MAX_EVENTS_PER_REQUEST,
                    description="Events per request (at most 2000)."),
        th.Property("max_batch_bytes", th.IntegerType, default=8 * 1024 * 1024,
                    description="Uncompressed bytes per request (at most 10 MB)."),
        th.Property("max_concurrency", th.IntegerType, default=10,
                    description="Requests in flight at once."),
        th.Property("gzip", th.BooleanType, default=True, description="Gzip request bodies."),
        th.Property("gzip_level", th.IntegerType, default=1,
                    description="Gzip level 1 (fastest) to 9 (smallest)."),
        th.Property("strict", th.BooleanType, default=True,
                    description="Ask Mixpanel to validate every event (strict=1)."),
        th.Property("dead_letter_path", th.StringType, default="mixpanel-dead-letters.jsonl",
                    description="Newline-delimited JSON file of records not imported, with "
                    "the reason."),
        th.Property("dry_run", th.BooleanType, default=False,
                    description="Send nothing; write the request bodies to dry_run_path."),
        th.Property("dry_run_path", th.StringType, default="mixpanel-dry-run",
                    description="Folder for dry-run request bodies."),
        th.Property("pii", th.StringType, default="keep", allowed_values=["keep", "hash", "drop"],
                    description="Email addresses and phone numbers: keep, hash (salted SHA-256) "
                    "or drop."),
        th.Property("pii_salt", th.StringType, secret=True,
                    description="Salt for pii: hash."),
        th.Property("max_retry_seconds", th.NumberType, default=900,
                    description="Total time one batch may spend retrying 429/5xx/network "
                    "errors before the run fails."),
        th.Property("retry_first_delay_seconds", th.NumberType, default=2.0,
                    description="First backoff delay (doubles up to retry_max_delay_seconds)."),
        th.Property("retry_max_delay_seconds", th.NumberType, default=60.0,
                    description="Longest backoff delay."),
        th.Property("retry_jitter_seconds", th.ArrayType(th.NumberType), default=[1.0, 5.0],
                    description="Random jitter added to each delay: [min, max] seconds."),
        th.Property("request_timeout_seconds", th.NumberType, default=120,
                    description="Timeout of one HTTP request."),
        th.Property("verify_tls", th.BooleanType, default=True,
                    description="Check TLS certificates (turning it off warns)."),
        th.Property("progress_interval_seconds", th.NumberType, default=10,
                    description="How often a progress line is logged."),
    ).to_dict()

    _delivery: Delivery | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        """The SDK target, plus a route per stream for records needing no stream map."""
        super().__init__(*args, **kwargs)
        # stream -> (stream alias, key properties, delivery.add)
        self._routes: dict[str, tuple[str, tuple[str, ...], Any]] = {}

    # -- wiring --------------------------------------------------------------------------

    def _auth(self) -> tuple[tuple[str, str], dict[str, str], str]:
        config = self.config
        if config.get("service_account_username") or config.get("service_account_secret"):
            missing = [k for k in ("project_id", "service_account_username",
                                   "service_account_secret") if not config.get(k)]
            if missing:
                msg = f"Service account auth needs {', '.join(missing)} as well."
                raise SettingError(msg)
            return ((config["service_account_username"], config["service_account_secret"]),
                    {"project_id": str(config["project_id"])},
                    "project_id, service_account_username and service_account_secret")
        params = {"project_id": str(config["project_id"])} if config.get("project_id") else {}
        if config.get("project_token"):
            return (config["project_token"], ""), params, "project_token"
        if config.get("api_secret"):
            logger.warning("api_secret is deprecated by Mixpanel (retired 2027-03-03); use a "
                           "service account (service_account_username/secret + project_id)")
            return (config["api_secret"], ""), params, "api_secret"
        msg = f"No Mixpanel credentials: set {AUTH_SETTINGS}."
        raise SettingError(msg)

    def _api_url(self) -> str:
        return str(self.config.get("api_url") or REGION_HOSTS[self.config.get("region", "US")])

    def _mapping(self) -> BrazeCurrentsMapping | GenericMapping:
        config = self.config
        if config.get("mapping", "braze_currents") == "generic":
            return GenericMapping(config.get("event_name", "{stream}"),
                                  config.get("distinct_id_field", "distinct_id"),
                                  config.get("time_field", "time"),
                                  config.get("insert_id_field", "id"))
        return BrazeCurrentsMapping()

    def _build_delivery(self) -> Delivery:
        config = self.config
        batch_size = int(config.get("batch_size", MAX_EVENTS_PER_REQUEST))
        max_bytes = int(config.get("max_batch_bytes", 8 * 1024 * 1024))
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            msg = f"batch_size must be 1 to {MAX_EVENTS_PER_REQUEST}, got {batch_size}"
            raise SettingError(msg)
        if not 1024 <= max_bytes <= MAX_REQUEST_BYTES:
            msg = f"max_batch_bytes must be 1024 to {MAX_REQUEST_BYTES}, got {max_bytes}"
            raise SettingError(msg)
        counters = Counters()
        sender: DryRunClient | ImportClient
        if config.get("dry_run"):
            sender = DryRunClient(config.get("dry_run_path", "mixpanel-dry-run"),
                                  self._api_url(), counters)
        else:
            auth, params, describe = self._auth()
            params["ip"] = "0"
            if config.get("strict", True):
                params["strict"] = "1"
            jitter = [*list(config.get("retry_jitter_seconds") or [1.0, 5.0]), 0.0, 0.0]
            retry = RetryPolicy(first_delay=float(config.get("retry_first_delay_seconds", 2)),
                                max_delay=float(config.get("retry_max_delay_seconds", 60)),
                                jitter_min=float(jitter[0]), jitter_max=float(jitter[1]),
                                budget_seconds=float(config.get("max_retry_seconds", 900)))
            verify = bool(config.get("verify_tls", True))
            if not verify:
                logger.warning("verify_tls is off: TLS certificates of %s are not checked",
                               self._api_url())
            sender = ImportClient(self._api_url(), auth, params,
                                  gzip_level=(int(config.get("gzip_level", 1))
                                              if config.get("gzip", True) else None),
                                  timeout=float(config.get("request_timeout_seconds", 120)),
                                  retry=retry, verify=verify, counters=counters,
                                  describe_auth=describe)
        pii_mode = config.get("pii", "keep")
        if pii_mode == "hash" and not config.get("pii_salt"):
            logger.warning("pii is 'hash' without pii_salt: hashes of common values can be "
                           "guessed; set pii_salt")
        return Delivery(mapping=self._mapping(), sender=sender,
                        dead_letters=DeadLetterFile(config.get("dead_letter_path",
                                                               "mixpanel-dead-letters.jsonl")),
                        pii=PiiPolicy(pii_mode, config.get("pii_salt") or ""),
                        emit_state=self._write_state_message, counters=counters,
                        batch_size=batch_size, max_batch_bytes=max_bytes,
                        max_concurrency=max(1, int(config.get("max_concurrency", 10))),
                        progress_seconds=float(config.get("progress_interval_seconds", 10)))

    @property
    def delivery(self) -> Delivery:
        """The pipeline, built on first use (so config errors surface at the first message)."""
        if self._delivery is None:
            self._delivery = self._build_delivery()
        return self._delivery

    # -- Singer messages -----------------------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        stream = message_dict.get("stream")
        record = message_dict.get("record")
        route = self._routes.get(stream)  # type: ignore[arg-type]
        if route is None or not isinstance(record, dict):
            self._process_mapped_record(stream, record)
            return
        for key in route[1]:
            if key not in record:
                self._missing_keys(route[0], route[1], record)
        route[2](route[0], record)

    def _process_mapped_record(self, stream: object, record: object) -> None:
        """Records of streams with inline stream maps (or of unknown/bad shape)."""
        if not isinstance(stream, str) or not isinstance(record, dict):
            msg = f"RECORD message without a stream name or a record object: {stream!r}"
            raise ValueError(msg)
        stream_maps = self.mapper.stream_maps.get(stream)
        if stream_maps is None:
            msg = (f"A record for stream {stream!r} arrived before its SCHEMA message. "
                   "Check that the tap emits a SCHEMA message first.")
            raise RecordsWithoutSchemaException(msg)
        add = self.delivery.add
        has_maps = bool(self.config.get("stream_maps") or self.config.get("flattening_enabled"))
        if len(stream_maps) == 1 and not has_maps:
            keys = tuple(stream_maps[0].transformed_key_properties or ())
            self._routes[stream] = (stream_maps[0].stream_alias, keys, add)
            self._process_record_message({"stream": stream, "record": record})
            return
        for stream_map in stream_maps:
            mapped = stream_map.transform(dict(record))
            if mapped is None:
                continue
            keys = tuple(stream_map.transformed_key_properties or ())
            if any(k not in mapped for k in keys):
                self._missing_keys(stream_map.stream_alias, keys, mapped)
            add(stream_map.stream_alias, mapped)

    @staticmethod
    def _missing_keys(stream: str, keys: tuple[str, ...], record: dict) -> None:
        msg = (f"A record of stream {stream!r} lacks its key properties {list(keys)}: "
               f"it has {list(record)[:20]}")
        raise MissingKeyPropertiesError(msg)

    def _process_schema_message(self, message_dict: dict) -> None:
        self._routes.pop(message_dict.get("stream"), None)  # type: ignore[arg-type]
        super()._process_schema_message(message_dict)

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        self.delivery.add_state(message_dict["value"])

    def _process_batch_message(self, message_dict: dict) -> None:
        msg = "BATCH messages are not supported by target-mixpanel; send RECORD messages"
        raise NotImplementedError(msg)

    def _write_state_message(self, state: dict) -> None:
        sys.stdout.write(msgspec.json.encode(state).decode() + "\n")
        sys.stdout.flush()

    def process_endofpipe(self) -> None:
        """Deliver what is left, emit the last state, log the summary."""
        delivery = self.delivery
        try:
            delivery.finish()
        except BaseException:
            delivery.abandon()
            self._log_summary(delivery, failed=True)
            raise
        self._log_summary(delivery, failed=False)
        super().process_endofpipe()

    def _log_summary(self, delivery: Delivery, *, failed: bool) -> None:
        summary = delivery.summary()
        logger.info("summary: %s", msgspec.json.encode(summary).decode())
        if summary["dead_letter_file"]:
            logger.warning("%d records were not imported; see %s",
                           sum(summary["dead_lettered"].values()), summary["dead_letter_file"])
        if failed:
            logger.error("The run failed; no state was emitted past the last fully accounted "
                         "record. Rerun to resume.")


if __name__ == "__main__":
    TargetMixpanel.cli()
