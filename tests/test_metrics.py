"""``/metrics`` exposes every listed metric, and they move when work happens."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from insight.bus import subjects
from insight.codec import pack
from insight.observability import MetricsCollector

LISTED = {
    "insight_requests": "counter",  # bus requests by endpoint/status
    "insight_request_seconds": "histogram",
    "insight_http_requests": "counter",
    "insight_http_request_seconds": "histogram",
    "insight_inference_batch_size": "histogram",
    "insight_inference_seconds": "histogram",
    "insight_inference_queue_depth": "gauge",
    "insight_events": "counter",  # processed / redelivered / dead_lettered
    "insight_stream_sessions": "gauge",
    "insight_store_points": "gauge",
    "insight_stream_messages": "gauge",
    "insight_bus_consumer_pending": "gauge",
}


async def scrape(running: Any) -> dict[str, Any]:
    port = running.stack.bridge.port
    async with running.api.session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """Sum of the samples named ``sample`` whose labels include ``labels``."""
    total = 0.0
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def test_metrics_listed_and_moving(running: Any) -> None:
    collector = MetricsCollector(
        running.app.stores, running.app.js, running.app.instance_id, interval_s=3600
    )
    await collector.start()
    try:
        before = await scrape(running)
        assert {n: f.type for n, f in before.items() if n in LISTED} == LISTED

        status, _ = await running.api.call("GET", "/health")
        assert status == 200
        status, body = await running.api.call("POST", "/embed/text", {"text": "calm piano"})
        assert status == 200 and len(body["embedding"]) > 0

        js = running.app.js
        event = {
            "event": "media_item_added",
            "object_id": "library://track/metrics-1",
            "data": {
                "name": "Metric Song",
                "artists": [{"name": "Prom"}],
                "album": None,
                "metadata": {"genres": ["ambient"]},
                "uri": "library://track/metrics-1",
            },
        }
        await js.publish(subjects.TRACK_ADDED, pack(event), headers={"Nats-Msg-Id": "metrics-1"})
        store = running.app.require_store()
        for _ in range(200):
            if await store.exists("tracks_text", "library://track/metrics-1"):
                break
            await asyncio.sleep(0.05)
        await collector.collect()
        after = await scrape(running)
    finally:
        await collector.stop()

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("insight_http_requests_total", status="200") >= 2
    assert moved("insight_http_request_seconds_count") >= 2
    assert moved("insight_requests_total", status="ok") + moved("insight_requests_total") >= 2
    assert moved("insight_request_seconds_count") >= 2
    assert moved("insight_inference_batch_size_count") >= 2  # the embed call + the event
    assert moved("insight_inference_seconds_count") >= 2
    assert moved("insight_events_total", outcome="processed") >= 1
    points = value(after, "insight_store_points", collection="tracks_text")
    assert points == await store.count("tracks_text") >= 1
    assert value(after, "insight_stream_messages", stream=subjects.EVENTS_STREAM) >= 1
    assert (
        value(
            after,
            "insight_bus_consumer_pending",
            consumer=subjects.LIBRARY_CONSUMER,
            state="pending",
        )
        == 0
    )
