"""Sends one realistic multi-service trace to clew with the real OpenTelemetry Python SDK.

Usage: send_traces.py --protocol grpc|http --endpoint URL --order-id ID --run-id ID
                      [--ca-file PEM]   (TLS, trusting this CA; the endpoint is https://)

Prints the trace id (32 hex digits) on stdout once the exporter has flushed and clew has
acknowledged the spans. The trace: frontend (root, SERVER, carries order_id) -> checkout
(SERVER) -> payments (CLIENT db span that raises and records an exception).
"""

import argparse
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporter(protocol: str, endpoint: str, ca_file=None):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if ca_file:
            import grpc

            with open(ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            return OTLPSpanExporter(endpoint=endpoint, insecure=False, credentials=credentials)
        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", certificate_file=ca_file)


def provider(service: str, protocol: str, endpoint: str, run_id: str, ca_file=None) -> TracerProvider:
    p = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test", "clew.test.run": run_id})
    )
    p.add_span_processor(SimpleSpanProcessor(exporter(protocol, endpoint, ca_file)))
    return p


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--order-id", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--ca-file", help="speak TLS, trusting the CA certificates in this PEM file")
    args = ap.parse_args()

    providers = {
        s: provider(s, args.protocol, args.endpoint, args.run_id, args.ca_file) for s in ("frontend", "checkout", "payments")
    }
    t_front = providers["frontend"].get_tracer("shop.frontend", "1.0.0")
    t_check = providers["checkout"].get_tracer("shop.checkout", "2.1.0")
    t_pay = providers["payments"].get_tracer("shop.payments", "0.9.0")

    with t_front.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("order_id", args.order_id)
        root.set_attribute("http.route", "/checkout")
        root.set_attribute("http.status_code", 500)
        root.set_attribute("test.list", ["a", "b"])
        root.set_attribute("test.float", 2.5)
        root.set_attribute("test.bool", True)
        trace_id = format(root.get_span_context().trace_id, "032x")
        with t_check.start_as_current_span("PlaceOrder", kind=SpanKind.SERVER) as mid:
            mid.add_event("cart.loaded", {"items": 3})
            with t_pay.start_as_current_span("SELECT payments", kind=SpanKind.CLIENT) as db:
                db.set_attribute("db.system", "postgresql")
                try:
                    raise RuntimeError("card declined for order " + args.order_id)
                except RuntimeError as exc:
                    db.record_exception(exc)
                    db.set_status(Status(StatusCode.ERROR, str(exc)))
        root.set_status(Status(StatusCode.ERROR, "payment failed"))

    for p in providers.values():
        p.force_flush()
        p.shutdown()
    print(trace_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
