"""Prometheus metrics (served at ``/metrics`` by the bridge)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "insight_requests_total", "Bus requests handled, by endpoint and status", ["endpoint", "status"]
)
REQUEST_LATENCY = Histogram(
    "insight_request_seconds",
    "Bus request handling time",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_REQUESTS = Counter(
    "insight_http_requests_total", "HTTP requests, by route and status", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "insight_http_request_seconds",
    "HTTP request time including the bus round trip",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFERENCE_BATCH = Histogram(
    "insight_inference_batch_size",
    "Items per inference batch",
    ["tower"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
INFERENCE_SECONDS = Histogram(
    "insight_inference_seconds",
    "Time per inference batch",
    ["tower"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INFERENCE_QUEUE = Gauge("insight_inference_queue_depth", "Requests waiting for inference")
EVENTS = Counter("insight_events_total", "Bus events by kind and outcome", ["kind", "outcome"])
INFERENCE_WORKERS = Gauge(
    "insight_inference_workers", "Inference workers of this node's model heard on the bus"
)
REMOTE_ITEMS = Counter(
    "insight_remote_inference_items_total",
    "Windows and texts embedded by inference workers (where=remote) or here instead (local)",
    ["where"],
)
SESSIONS = Gauge("insight_stream_sessions", "Streaming sessions owned by this worker")
STORE_POINTS = Gauge("insight_store_points", "Points per collection", ["collection"])
STREAM_MESSAGES = Gauge("insight_stream_messages", "Messages held per JetStream stream", ["stream"])
BUS_PENDING = Gauge(
    "insight_bus_consumer_pending",
    "Events waiting per durable consumer: pending (not yet delivered), ack_pending "
    "(delivered, not acked), redelivered",
    ["consumer", "state"],
)
