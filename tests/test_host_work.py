"""A scan's host work in processes: the same vectors as threads, a dying process's files."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import make_settings

from insight.config import InferenceSettings, ModelSettings
from insight.errors import Conflict, NotReady
from insight.inference.clap import ClapModel
from insight.inference.pool import InferencePool
from insight.schemas import WatchedFolder
from insight.storage.base import TRACKS_AUDIO
from insight.watcher.cli import _close, _open_app, run_scan
from insight.watcher.decode import DecodeFailed
from insight.watcher.host_work import HostProcesses
from tests.test_watcher import make_library


async def _audio_vectors(settings_dir: Path, model_dir: Path) -> dict[str, np.ndarray]:
    app = await _open_app(make_settings(settings_dir, model_dir))
    try:
        assert app.store is not None
        points, _ = await app.store.scroll(TRACKS_AUDIO, limit=100, with_vectors=True)
        return {p.key: np.asarray(p.vector) for p in points}
    finally:
        await _close(app)


async def test_scan_in_processes_stores_what_threads_store(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "music"
    make_library(root)
    threads_only = make_settings(tmp_path / "threads", tiny_model_dir, watcher={"processes": 0})
    assert await run_scan(threads_only, root, False) == 0  # (processes are the default now)
    assert "analysed 5, failed 1" in capsys.readouterr().out
    app = await _open_app(
        make_settings(tmp_path / "processes", tiny_model_dir, watcher={"processes": 2})
    )
    try:  # as run_scan does, to see the processes' work
        svc = app.services.watcher
        assert svc is not None
        svc.foreground()
        svc.scan(folders=[WatchedFolder(path=str(root))])
        await svc.wait_idle(60)
        assert svc.files.processes is not None and svc.files.processes.jobs == 6
        assert (svc.outcomes["analyzed"], svc.outcomes["failed"]) == (5, 1)  # the corrupt one
    finally:
        await _close(app)
    threads = await _audio_vectors(tmp_path / "threads", tiny_model_dir)
    processes = await _audio_vectors(tmp_path / "processes", tiny_model_dir)
    assert len(threads) == 5 and threads.keys() == processes.keys()
    for key, v in threads.items():  # the same decode and features, made elsewhere
        assert float(v @ processes[key]) > 0.99999, key


def _dies_on_bad(name: str) -> str:
    """Runs in a worker process: ``crash`` ends it as a decoder crash would (SIGSEGV), ``oom``
    as the OOM killer does (SIGKILL), ``exits`` as a broken install might (no signal)."""
    if name == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "exits":
        os._exit(3)
    return name.upper()


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        ("crash", DecodeFailed, "it kills the process decoding it (signal 11)"),
        ("oom", NotReady, "killed (out of memory?): next scan"),
        ("exits", NotReady, "exited (code 3): next scan"),  # the install's fault, not the file's
    ],
)
async def test_a_file_that_kills_its_process_fails_alone(
    bad: str, error: type[Exception], says: str
) -> None:
    procs = HostProcesses(2)
    try:
        names = ["a", bad, "b", "c"]
        results = await asyncio.gather(
            *(procs.run(_dies_on_bad, n) for n in names), return_exceptions=True
        )
        assert [r for r in results if not isinstance(r, BaseException)] == ["A", "B", "C"]
        (failed,) = [r for r in results if isinstance(r, BaseException)]
        assert isinstance(failed, error) and says in str(failed), failed
        assert procs.replaced == 1
        assert await procs.run(_dies_on_bad, "d") == "D"  # the replacement works on
    finally:
        procs.shutdown()


async def test_a_decode_over_budget_in_a_process_fails_as_in_a_thread(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "music"
    make_library(root)
    for name, processes in (("threads", 0), ("processes", 1)):
        watcher = {"processes": processes, "max_decode_s": 1e-6}
        settings = make_settings(tmp_path / name, tiny_model_dir, watcher=watcher)
        assert await run_scan(settings, root, force=False) == 0
        assert "analysed 0, failed 6" in capsys.readouterr().out, name
        app = await _open_app(settings)
        try:
            svc = app.services.watcher
            assert svc is not None
            reasons = {f["error"].split(":")[0] for f in svc.failures()}
            assert "over budget" in reasons, (name, reasons)  # the exception crossed over
        finally:
            await _close(app)


async def test_features_of_another_model_are_refused(tiny_model_dir: Path) -> None:
    model = ClapModel.load(tiny_model_dir, ModelSettings(threads=1), "tiny")
    pool = InferencePool(model, InferenceSettings(max_wait_ms=0))
    await pool.start()
    try:
        windows = np.random.default_rng(0).standard_normal((2, 48_000)).astype(np.float32)
        feats = model.mel(windows)
        got = await pool.embed_features(feats, rate=model.sample_rate)
        np.testing.assert_allclose(got, model.embed_windows(windows), atol=1e-5)
        with pytest.raises(Conflict, match="features were made for another"):
            await pool.embed_features(feats[:, :, :, :-1], rate=model.sample_rate)
    finally:
        await pool.close()
