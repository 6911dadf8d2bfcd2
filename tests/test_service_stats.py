"""``$SRV.STATS`` of the insight service: errors counted, the real work timed (micro spec)."""

from __future__ import annotations

import json
import time
from typing import Any

from insight.bus.service import endpoint_name
from insight.errors import InsightError
from insight.handlers import all_endpoints
from tests.conftest import Running


def endpoint_name_of(name: str) -> str:
    return next(endpoint_name(ep) for ep in all_endpoints() if ep.name == name)


async def stats_of(running: Running) -> dict[str, dict[str, Any]]:
    msg = await running.bus.nc.request("$SRV.STATS.insight", b"", timeout=5)
    body = json.loads(msg.data)
    assert body["type"] == "io.nats.micro.v1.stats_response"
    return {e["name"]: e for e in body["endpoints"]}


async def timed_call(running: Running, subject: str, body: dict[str, Any]) -> tuple[float, int]:
    """One request: (round trip in ns, HTTP-like status of the reply)."""
    start = time.perf_counter_ns()
    try:
        await running.bus.call(subject, body)
        status = 200
    except InsightError as err:
        status = err.status
    return time.perf_counter_ns() - start, status


async def network_ns(running: Running, n: int = 30) -> int:
    """The round trip of a request with next to no work: ``$SRV.PING`` (answered by nats-py)."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await running.bus.nc.request("$SRV.PING.insight", b"", timeout=5)
        times.append(time.perf_counter_ns() - start)
    return sorted(times)[n // 2]


async def test_stats_count_requests_errors_and_time_the_handler(running: Running) -> None:
    text = "a long song title with many words " * 600  # ~20 000 characters to tokenize
    rtts = []
    for _ in range(10):
        rtt, status = await timed_call(running, "insight.v1.embed.text", {"text": text})
        assert status == 200
        rtts.append(rtt)
    for _ in range(3):
        _, status = await timed_call(running, "insight.v1.tracks.get", {"track_id": "nope"})
        assert status == 404
    for _ in range(2):
        _, status = await timed_call(running, "insight.v1.tracks.get", {"include_text": "x"})
        assert status == 400
    net = await network_ns(running)

    stats = await stats_of(running)
    embed = stats["embed_text"]
    assert (embed["num_requests"], embed["num_errors"], embed["last_error"]) == (10, 0, "")
    mean_rtt = sum(rtts) / len(rtts)
    avg = embed["average_processing_time"]
    assert avg == embed["processing_time"] // 10
    # the handler's work (tokenising, the text tower), not the ~40 µs of a task launch
    assert (mean_rtt - net) / 2 <= avg <= mean_rtt, (avg, mean_rtt, net)

    get = stats[endpoint_name_of("tracks.get")]
    assert (get["num_requests"], get["num_errors"]) == (5, 5)  # 404s and 400s are errors
    assert get["last_error"].startswith("400:") and "track_id" in get["last_error"]
    assert get["average_processing_time"] > 0
    assert (stats["health"]["num_requests"], stats["health"]["last_error"]) == (0, "")
