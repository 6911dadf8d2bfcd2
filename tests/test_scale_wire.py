"""The wire of remote inference: 16-bit PCM windows, the chunk ramp, the bulk lane."""

from __future__ import annotations

from pathlib import Path

import msgpack
import nats
import numpy as np
import pytest

from insight.bus.embedded import EmbeddedNats
from insight.config import ModelSettings
from insight.errors import BadRequest
from insight.inference.families import load_model
from insight.scale import protocol as p
from insight.scale.node import InferenceNode
from insight.scale.remote import spans
from tests.conftest import make_settings
from tests.scaleutil import cosine_rows


def music(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """Tones, noise and a fade: quiet and loud parts in every window."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 48_000.0
    fade = np.linspace(1.0, 0.001, samples)
    rows = [
        fade * (0.4 * np.sin(2 * np.pi * rng.uniform(60, 4000) * t))
        + 0.02 * rng.standard_normal(samples)
        for _ in range(n)
    ]
    return np.asarray(rows, dtype=np.float32)


def test_s16_windows_come_back_within_half_a_step_of_their_peak() -> None:
    windows = music(3, 20_000)
    windows[1] *= 3.0  # louder than full scale: the scale follows the peak
    windows = np.concatenate([windows, np.zeros((1, 20_000), np.float32)])  # and silence
    body = msgpack.unpackb(p.pack_request("w", "m", "audio", windows))
    assert body["pcm"] == "s16" and len(body["windows"]) == windows.size * 2  # half of float32
    back = p.unpack_request(p.pack_request("w", "m", "audio", windows), "audio", 16).items
    assert back.dtype == np.float32 and back.shape == windows.shape
    peak = np.abs(windows).max(axis=1)
    err = np.abs(back - windows).max(axis=1)
    step = peak[:3] / p.S16_MAX
    assert (err[:3] <= step * 0.5 + peak[:3] * 4e-7).all(), (err, step)  # + float32 rounding
    assert (err[:3] > 0).all()  # it is lossy: the test below is what makes that acceptable
    assert np.allclose(np.abs(back[:3]).max(axis=1), peak[:3], rtol=1e-6, atol=0)  # the peak
    assert not back[3].any()  # silence stays silence


def test_vectors_of_s16_windows_match_float32_ones(tiny_model_dir: Path) -> None:
    model = load_model(tiny_model_dir, ModelSettings(threads=1), "insight/tiny-clap")
    spec = model.audio_spec(10.0, 10.0)
    windows = music(6, spec.window, seed=3)
    wire = p.unpack_request(p.pack_request("w", "m", "audio", windows), "audio", 16).items
    assert not np.array_equal(wire, windows)
    exact = p.unpack_request(p.pack_request("w", "m", "audio", windows, pcm="f32"), "audio", 16)
    assert np.array_equal(exact.items, windows)  # f32 stays bit-exact
    cos = cosine_rows(model.embed_windows(wire), model.embed_windows(windows))
    assert cos.min() >= 0.9999, cos


def test_non_finite_windows_travel_as_float32_and_are_refused() -> None:
    windows = music(2, 1000)
    windows[1, 7] = np.nan
    payload = p.pack_request("w", "m", "audio", windows)
    assert msgpack.unpackb(payload)["pcm"] == "f32"
    with pytest.raises(BadRequest, match="NaN or infinite"):
        p.unpack_request(payload, "audio", 16)


def test_bad_s16_requests_are_refused_with_what_is_wrong() -> None:
    good = msgpack.unpackb(p.pack_request("w", "m", "audio", music(2, 100)))

    def refused(match: str, **change: object) -> None:
        body = {**good, **change}
        with pytest.raises(BadRequest, match=match):
            p.unpack_request(msgpack.packb(body), "audio", 16)

    refused("pcm` s16 or f32", pcm="s8")
    refused("holds 399 bytes, s16 shape", windows=good["windows"][:-1])
    refused("need `scales`: 2 float32 bytes", scales=b"\0" * 4)
    refused("need `scales`", scales=None)
    refused("finite and positive", scales=np.array([1.0, 0.0], np.float32).tobytes())
    refused("finite and positive", scales=np.array([np.inf, 1.0], np.float32).tobytes())
    # a request of an older node (float32, no `pcm`) is still understood
    old = music(2, 100)
    body = {"id": "w", "model": "m", "shape": [2, 100], "windows": old.tobytes()}
    req = p.unpack_request(msgpack.packb(body), "audio", 16)
    assert np.array_equal(req.items, old) and req.bulk is False


def test_audio_chunks_ramp_up_and_cover_every_window_once() -> None:
    assert spans(12, 7, ramp=True) == [(0, 1), (1, 3), (3, 7), (7, 12)]
    assert spans(3, 16, ramp=True) == [(0, 1), (1, 3)]
    assert spans(5, 2, ramp=False) == [(0, 2), (2, 4), (4, 5)]
    for n in range(1, 40):
        for step in (1, 3, 16):
            got = spans(n, step, ramp=True)
            assert [a for a, _ in got[1:]] == [b for _, b in got[:-1]]
            assert got[0][0] == 0 and got[-1][1] == n
            assert all(0 < b - a <= step for a, b in got)


@pytest.mark.asyncio
async def test_bulk_requests_run_on_the_workers_bulk_lane(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    settings = make_settings(
        tmp_path / "inf", tiny_model_dir, model={"threads": 1}, nats={"url": nats_server.url}
    )
    node = InferenceNode(settings)
    await node.start(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        pool = node.app.require_pool()
        model_id = pool.model.model_id
        windows = music(3, pool.model.audio_spec(10.0, 10.0).window, seed=5)
        subject = p.worker_subject(node.worker_id, "audio")
        sizes = pool.stats.batch_sizes["audio"]

        async def ask(work_id: str, bulk: bool) -> np.ndarray:
            payload = p.pack_request(work_id, model_id, "audio", windows, bulk=bulk)
            msg = await nc.request(subject, payload, timeout=30)
            return p.unpack_reply(msg.data, work_id, model_id, 3)

        interactive = await ask("a", bulk=False)
        assert sizes[-1:] == [3]  # one batch of the three windows
        bulk = await ask("b", bulk=True)
        assert sizes[-3:] == [1, 1, 1]  # one window at a time, behind interactive work
        assert cosine_rows(bulk, interactive).min() >= 0.99999
        local = pool.model.embed_windows(windows)
        assert cosine_rows(bulk, local).min() >= 0.9999
    finally:
        await nc.close()
        await node.stop()
