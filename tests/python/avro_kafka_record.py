"""Writes one Kafka record value as an independent Avro implementation would: fastavro with
only the published schema file (proto/schemas/span_batch_v1.avsc), single-object framing.
No clew code is involved.

usage: avro_kafka_record.py SCHEMA OUT TRACE_ID_HEX START_UNIX_NANO ORDER_ID

The record holds one trace of three spans of service "py-checkout": a root server span with
a business key (carried in the record, as an agent would) and typed attributes, a child
with an exception event and an error status, and a client span with a nested attribute.
"""
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def kv(key, value):
    return {"key": key, "value": {"value": value}}


def span(trace_id, span_id, parent, name, kind, start, duration, attributes, events=(),
         status=(0, ""), business_keys=()):
    return {
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
        "trace_state": "", "flags": 1, "name": name, "kind": kind,
        "start_time_unix_nano": start, "end_time_unix_nano": start + duration,
        "attributes": list(attributes), "dropped_attributes_count": 0,
        "events": list(events), "dropped_events_count": 0,
        "links": [], "dropped_links_count": 0,
        "status": {"code": status[0], "message": status[1]},
        "business_keys": [{"name": k, "value": v} for k, v in business_keys],
        "repairs": 0,
    }


def main():
    schema_path, out, trace_hex, start, order_id = sys.argv[1:6]
    start = int(start)
    with open(schema_path) as f:
        schema = parse_schema(json.load(f))
    # fastavro's hex is the fingerprint's bytes in little-endian order already (as Java's)
    header = b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    trace = bytes.fromhex(trace_hex)
    root_id, child_id, db_id = bytes([1] * 8), bytes([2] * 8), bytes([3] * 8)
    spans = [
        span(trace, root_id, None, "POST /checkout", 2, start, 40_000_000,
             [kv("http.route", "/checkout"), kv("http.status_code", 500),
              kv("retry", False), kv("order_id", order_id)],
             business_keys=[("order_id", order_id)]),
        span(trace, child_id, root_id, "charge card", 1, start + 1_000_000, 30_000_000,
             [kv("amount", 12.5)],
             events=[{"time_unix_nano": start + 2_000_000, "name": "exception",
                      "attributes": [kv("exception.type", "CardDeclined"),
                                     kv("exception.message", "insufficient funds")],
                      "dropped_attributes_count": 0}],
             status=(2, "card declined")),
        span(trace, db_id, child_id, "SELECT cards", 3, start + 3_000_000, 5_000_000,
             [kv("db.system", "postgresql"),
              kv("tags", ("dev.clew.avro.v1.ArrayValue",
                          {"values": [{"value": "a"}, {"value": 2}]}))]),
    ]
    batch = {"resource_spans": [{
        "resource": {"attributes": [kv("service.name", "py-checkout")],
                     "dropped_attributes_count": 0},
        "schema_url": "",
        "scope_spans": [{
            "scope": {"name": "fastavro-test", "version": "1", "attributes": [],
                      "dropped_attributes_count": 0},
            "schema_url": "", "spans": spans}],
    }]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, batch)
    with open(out, "wb") as f:
        f.write(header + buf.getvalue())


if __name__ == "__main__":
    main()
