"""RECORD messages checked as the Singer spec asks, then passed through the stream maps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException


def mapped_records(mapper: Any, message_dict: dict) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stream alias, record) for each stream map of a RECORD message's stream.

    Raises ValueError for a malformed message, RecordsWithoutSchemaException for a stream
    without a SCHEMA yet, MissingKeyPropertiesError for a record lacking its key properties.
    """
    stream = message_dict.get("stream")
    record = message_dict.get("record")
    if not isinstance(stream, str) or not isinstance(record, dict):
        msg = f"RECORD message without a stream name or a record object: {stream!r}"
        raise ValueError(msg)
    stream_maps = mapper.stream_maps.get(stream)
    if stream_maps is None:
        msg = (f"A record for stream {stream!r} arrived before its SCHEMA message. "
               "Check that the tap emits a SCHEMA message first.")
        raise RecordsWithoutSchemaException(msg)
    for stream_map in stream_maps:
        mapped = stream_map.transform(dict(record))
        if mapped is None:
            continue
        keys = stream_map.transformed_key_properties or ()
        missing = [k for k in keys if k not in mapped]
        if missing:
            msg = (f"A record of stream {stream_map.stream_alias!r} lacks its key "
                   f"properties {missing}: it has {list(mapped)[:20]}")
            raise MissingKeyPropertiesError(msg)
        yield stream_map.stream_alias, mapped
