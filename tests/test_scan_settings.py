"""What ``insight scan`` runs with: every core busy on a CPU, the GPU fed by every core; files
decoded in a process per core on both."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_settings

from insight.config import ModelSettings
from insight.inference.clap import ClapModel
from insight.watcher.cli import GPU_RUNNERS, for_bulk
from insight.watcher.polite import MAX_FILES_IN_FLIGHT, decode_processes


def test_cpu_scan_has_a_file_in_flight_per_single_threaded_runner(tmp_path: Path) -> None:
    s = for_bulk(make_settings(tmp_path, None), n_cores=4)
    assert (s.model.threads, s.inference.runners, s.watcher.workers) == (1, 4, 4)
    # one file at a time on 4 runners left three cores idle: the windows of one file run
    # on one runner, so files in flight, not runners, bound what runs at once
    s = for_bulk(make_settings(tmp_path, None), n_cores=64)
    assert (s.inference.runners, s.watcher.workers) == (64, MAX_FILES_IN_FLIGHT)


def test_what_was_configured_is_kept(tmp_path: Path) -> None:
    s = for_bulk(make_settings(tmp_path, None, model={"threads": 2}), n_cores=4)
    assert (s.model.threads, s.inference.runners, s.watcher.workers) == (2, 1, 1)
    s = for_bulk(make_settings(tmp_path, None, watcher={"workers": 3}), n_cores=8)
    assert (s.model.threads, s.inference.runners, s.watcher.workers) == (1, 8, 3)
    s = for_bulk(make_settings(tmp_path, None, inference={"runners": 2}), n_cores=8)
    assert (s.model.threads, s.inference.runners, s.watcher.workers) == (0, 2, 2)


@pytest.mark.parametrize(("cores", "processes"), [(4, 4), (16, 16), (64, MAX_FILES_IN_FLIGHT)])
def test_gpu_scan_decodes_on_every_core(tmp_path: Path, cores: int, processes: int) -> None:
    s = for_bulk(make_settings(tmp_path, None, model={"enable_cuda": True}), n_cores=cores)
    assert s.model.threads == 0  # the host's share of a GPU run is not cut to one thread
    assert (s.inference.runners, s.watcher.processes) == (GPU_RUNNERS, processes)
    assert s.watcher.workers == processes + GPU_RUNNERS  # no process idles while files run


@pytest.mark.parametrize("gpu", [False, True])
def test_scan_decodes_in_a_process_per_core(tmp_path: Path, gpu: bool) -> None:
    # threads could not use a 16-core CPU either: 2.9x slower than processes there
    model = {"enable_cuda": True} if gpu else {}
    for cores, processes in ((2, 2), (16, 16), (64, MAX_FILES_IN_FLIGHT)):
        s = for_bulk(make_settings(tmp_path, None, model=model), n_cores=cores)
        assert s.watcher.processes == processes
    s = make_settings(tmp_path, None, model=model, watcher={"processes": 0})
    assert for_bulk(s, n_cores=16).watcher.processes == 0  # configured: kept


def test_a_background_scan_decodes_in_as_many_processes_as_threads() -> None:
    # isolation, not speed: a file that crashes its decoder takes down a process, not serve
    assert decode_processes(None, 0, background=True, n_cores=2) == 1  # a quarter, at least 1
    assert decode_processes(None, 0, background=True, n_cores=16) == 4
    assert decode_processes(None, 3, background=True, n_cores=16) == 3  # THREADS
    assert decode_processes(0, 3, background=True, n_cores=16) == 0  # threads, as configured
    assert decode_processes(5, 3, background=False, n_cores=16) == 5


def test_unset_quantized_means_fp32_on_a_gpu(tiny_model_dir: Path) -> None:
    model = ClapModel.load(tiny_model_dir, ModelSettings(threads=1), "m")
    assert model.device == "CPU" and model.int8_setting is None  # int8 where accurate
    model.device = "CUDA"  # what select_providers says where onnxruntime-gpu sees a GPU
    assert model.int8_setting is False
    forced = ClapModel.load(tiny_model_dir, ModelSettings(threads=1, quantized=True), "m")
    forced.device = "CUDA"
    assert forced.int8_setting is True  # asked for: kept
