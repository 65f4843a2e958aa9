"""Avro interop: fastavro with the published schema file, no clew code.

usage: avro_interop.py SCHEMA write OUT      -- writes a single-object record of two spans
       avro_interop.py SCHEMA read IN        -- decodes a record, prints it as JSON
"""
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def main():
    schema_path, mode, path = sys.argv[1:4]
    with open(schema_path) as f:
        schema = parse_schema(json.load(f))
    # fastavro's hex is the fingerprint's bytes already in little-endian order (as Java's).
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    header = b"\xc3\x01" + fp
    if mode == "write":
        kv = lambda k, v: {"key": k, "value": {"value": v}}
        span = {
            "trace_id": bytes(range(1, 17)), "span_id": bytes(range(1, 9)),
            "parent_span_id": None, "trace_state": "", "flags": 1, "name": "py-root",
            "kind": 2, "start_time_unix_nano": 1_700_000_000_000_000_000,
            "end_time_unix_nano": 1_700_000_000_250_000_000,
            "attributes": [kv("order_id", "12345"), kv("n", 7), kv("ok", True),
                           kv("nested", ("dev.clew.avro.v1.ArrayValue", {"values": [{"value": 1.5}]}))],
            "dropped_attributes_count": 0, "events": [], "dropped_events_count": 0,
            "links": [], "dropped_links_count": 0, "status": {"code": 2, "message": "boom"},
            "business_keys": [], "repairs": 0,
        }
        child = dict(span, span_id=bytes(range(2, 10)), parent_span_id=bytes(range(1, 9)),
                     name="py-child", attributes=[], status={"code": 0, "message": ""})
        batch = {"resource_spans": [{
            "resource": {"attributes": [kv("service.name", "py-service")], "dropped_attributes_count": 0},
            "schema_url": "",
            "scope_spans": [{"scope": {"name": "py", "version": "1", "attributes": [], "dropped_attributes_count": 0},
                             "schema_url": "", "spans": [span, child]}],
        }]}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, batch)
        with open(path, "wb") as f:
            f.write(header + buf.getvalue())
    else:
        with open(path, "rb") as f:
            data = f.read()
        assert data[:10] == header, f"header {data[:10].hex()} != {header.hex()}"
        rec = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema, None)
        print(json.dumps(rec, default=lambda b: b.hex() if isinstance(b, bytes) else str(b)))


if __name__ == "__main__":
    main()
