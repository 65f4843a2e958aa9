"""Sends one checkout trace through an OpenTelemetry Python Zipkin exporter and prints its
trace id (hex). Three services (frontend → checkout → payments); the payments span fails
with an exception event. Used by tests/zipkin_ingest.rs.

    send_zipkin.py --encoding json|proto --endpoint http://host:port/api/v2/spans --order-id ID
"""

import argparse

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context


def exporter(encoding, endpoint):
    if encoding == "json":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter
    else:
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
    return ZipkinExporter(endpoint=endpoint)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoding", choices=["json", "proto"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--order-id", required=True)
    args = p.parse_args()

    providers = {}
    for service in ["frontend", "checkout", "payments"]:
        tp = TracerProvider(resource=Resource.create({"service.name": service}))
        tp.add_span_processor(SimpleSpanProcessor(exporter(args.encoding, args.endpoint)))
        providers[service] = tp

    def tracer(service):
        return providers[service].get_tracer("clew-zipkin-test", "1.0")

    with tracer("frontend").start_as_current_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        attributes={"order_id": args.order_id, "http.route": "/checkout"},
    ) as root:
        ctx = set_span_in_context(root)
        with tracer("checkout").start_as_current_span(
            "PlaceOrder", context=ctx, kind=SpanKind.INTERNAL
        ) as mid:
            mid.add_event("cart.loaded", {"items": 3})
            ctx = set_span_in_context(mid)
            with tracer("payments").start_as_current_span(
                "SELECT payments", context=ctx, kind=SpanKind.CLIENT
            ) as db:
                db.set_attribute("db.system", "postgresql")
                db.add_event(
                    "exception",
                    {"exception.type": "RuntimeError", "exception.message": "card declined"},
                )
                db.set_status(Status(StatusCode.ERROR, "card declined"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    for tp in providers.values():
        tp.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()
