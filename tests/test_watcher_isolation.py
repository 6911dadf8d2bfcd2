"""`insight serve` decodes watched files in processes of their own: a file that crashes its
decoder (or hangs it) takes that process down, not the server, and not at every restart."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from conftest import stop_running

from insight.storage.base import TRACKS_AUDIO
from insight.watcher.state import DONE, FAILED
from tests.audio_files import write_track
from tests.test_watcher import make_library, start_stack, stored_ids, watcher_of


def _opened_by(pid: int) -> set[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    out = set()
    for fd in fds:
        with suppress(OSError):
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def _nice_of(pid: int) -> int | None:
    """The nice value of a live process; None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else int(fields[16])  # state, field 19: nice


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _nice_of(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _children() -> set[int]:
    """This process's children, from /proc (not ``multiprocessing.active_children()``, which
    reaps them and would race the code under test for their exit codes)."""
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with suppress(OSError):
            out.update(int(pid) for pid in (task / "children").read_text().split())
    return out


class Hostile:
    """A neighbour that sends ``sig`` to any child process of this one that opens ``path``,
    as a decoder crash (SIGSEGV) or a decoder stuck in a loop (SIGSTOP) would look from
    outside. Records the nice value of each process it hits."""

    def __init__(self, path: Path, sig: signal.Signals) -> None:
        self.path, self.sig = str(path), sig
        self.hits: list[int] = []
        self.nice: dict[int, int | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in _children() - set(self.hits):
                if self.path in _opened_by(pid):
                    self.nice[pid] = _nice_of(pid)
                    os.kill(pid, self.sig)
                    self.hits.append(pid)
            time.sleep(0.002)

    @contextmanager
    def running(self) -> Iterator[Hostile]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


async def test_a_file_that_crashes_its_decoder_fails_alone_and_the_server_stays_up(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "music"
    make_library(root)  # 5 good files and a corrupt one
    poison = write_track(root / "poison.flac", seconds=120.0, freq=880)
    # two files in flight, two processes: the other one is in flight when the pool breaks
    r = await start_stack(
        tmp_path / "data", tiny_model_dir, folders=[str(root)], workers=2, threads=2
    )
    try:
        w = watcher_of(r)
        with Hostile(poison, signal.SIGSEGV).running() as hostile:
            await w.start()
            await w.wait_idle(120)
        # killed in the pool, then alone in a process of its own: then it is the file's fault
        assert len(hostile.hits) == 2
        assert w.files.processes is not None and w.files.processes.replaced == 1
        failures = {f["path"]: f["error"] for f in w.failures()}
        assert set(failures) == {str(root / "broken.mp3"), str(poison)}
        assert failures[str(poison)] == "undecodable: it kills the process decoding it (signal 11)"
        st = w.status()
        assert (st.done, st.failed, st.pending) == (5, 2, 0)  # the others were tried again
        assert len(await stored_ids(r, TRACKS_AUDIO)) == 5
        # background decoding runs at the watcher's nice value, in the retry's process too
        assert list(hostile.nice.values()) == [15, 15]
        # the server still answers, and a rescan does not feed it the file again
        code, body = await r.api.call("POST", "/tracks/search-text", {"query": "rock", "limit": 3})
        assert code == 200 and len(body["results"]) == 3, body
        with Hostile(poison, signal.SIGSEGV).running() as again:
            w.scan()
            await w.wait_idle(60)
        assert again.hits == [] and w.state.get(str(poison)).status == FAILED
    finally:
        await stop_running(r)


async def test_stopping_kills_a_stuck_decoder_and_leaves_its_file_for_next_time(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "music"
    stuck = write_track(root / "stuck.flac", seconds=120.0, freq=660)
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    stopped = False
    try:
        w = watcher_of(r)
        with Hostile(stuck, signal.SIGSTOP).running() as hostile:
            await w.start()
            for _ in range(600):  # until the decoding process has the file open
                if hostile.hits:
                    break
                await asyncio.sleep(0.05)
            assert hostile.hits, "the file was never opened by a decoding process"
            started = time.monotonic()
            await stop_running(r)
            stopped = True
            took = time.monotonic() - started
        assert took < 10.0, took  # not the decode budget (300 s): the process is killed
        (pid,) = hostile.hits
        gone = await asyncio.to_thread(_gone_within, pid, 5.0)  # reaped by the pool's thread
        assert gone, "the stuck decoding process outlived the server"
    finally:
        if not stopped:
            await stop_running(r)
    # not failed (the file was not at fault): the next start analyses it
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    try:
        w = watcher_of(r)
        await w.start()
        await w.wait_idle(60)
        st = w.status()
        assert (st.done, st.failed) == (1, 0)
        assert w.state.get(str(stuck)).status == DONE
    finally:
        await stop_running(r)
