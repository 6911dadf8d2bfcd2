"""What the watcher may open and watch: regular files within budgets, no system folders."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import make_settings, start_running, stop_running

from insight.config import ConfigError, load_settings
from insight.errors import BadRequest
from insight.inference.model import AudioSpec
from insight.watcher.decode import Limits, decode_full, decode_sampled
from insight.watcher.guard import (
    MB,
    Budget,
    Interrupted,
    OverBudget,
    Refused,
    open_regular,
    regular_stat,
)
from insight.watcher.roots import (
    Mount,
    folder_refusal,
    mount_of,
    parse_mountinfo,
    pseudo_mount_points,
)
from insight.watcher.scanner import fingerprint, walk
from insight.watcher.service import Job, WatcherService, normalise_folder
from insight.watcher.state import WatcherState
from insight.watcher.tags import read_tags

CLAP_SPEC = AudioSpec(48_000, 480_000, 480_000)  # 10 s windows of transformers CLAP


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def no_hang(fn: object, within_s: float = 5.0) -> BaseException | None:
    """Run ``fn`` in a daemon thread; what it raised, or a failure when it blocks."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()  # type: ignore[operator]
            out.append(None)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), "blocked"
    return out[0]


# --- files ---------------------------------------------------------------------------------


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "song.mp3"
    os.mkfifo(fifo)
    err = no_hang(lambda: open_regular(fifo))
    assert isinstance(err, Refused)
    assert str(err) == "not a regular file: it is a FIFO"
    # every reader of the watcher goes through it: fingerprint and tags too
    assert isinstance(no_hang(lambda: fingerprint(fifo, 0)), Refused)
    assert read_tags(fifo).name == "song"  # no tags, no hang


def test_devices_behind_symlinks_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "x.flac"
    link.symlink_to("/dev/zero")
    with pytest.raises(Refused, match="it is a character device"):
        regular_stat(link)
    with pytest.raises(Refused, match="it is a character device"):
        open_regular(link)
    with pytest.raises(Refused, match="it is a directory"):
        open_regular(tmp_path)


def test_size_budget(tmp_path: Path) -> None:
    f = tmp_path / "big.wav"
    f.write_bytes(b"\0" * (2 * MB))
    with pytest.raises(Refused, match=r"2\.0 MB > 1\.0 MB \(INSIGHT_WATCHER__MAX_FILE_MB\)"):
        open_regular(f, max_bytes=MB)
    with open_regular(f, max_bytes=2 * MB) as fh:
        assert fh.name == str(f)
        assert len(fh.read()) == 2 * MB


def test_decode_budgets(tmp_path: Path) -> None:
    f = write_wav(tmp_path / "four.wav", 4.0)
    assert decode_full(f, CLAP_SPEC).duration_s == pytest.approx(4.0, abs=0.01)
    capped = decode_full(f, CLAP_SPEC, Limits(max_audio_s=1.5))
    assert capped.duration_s == pytest.approx(1.5, abs=1e-6)
    assert (
        decode_sampled(
            f, 3, AudioSpec(48_000, 48_000, 48_000), Limits(max_audio_s=2.0)
        ).windows.shape[0]
        >= 1
    )
    with pytest.raises(OverBudget, match="INSIGHT_WATCHER__MAX_DECODE_S"):
        decode_full(f, CLAP_SPEC, Limits(budget=Budget(seconds=1e-9)))
    stopping = Budget()
    stopping.stop.set()
    with pytest.raises(Interrupted):
        decode_full(f, CLAP_SPEC, Limits(budget=stopping))
    with pytest.raises(Refused, match="size budget"):
        decode_full(f, CLAP_SPEC, Limits(max_bytes=100))


async def test_service_records_why_odd_files_were_skipped(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    write_wav(music / "ok.wav", 3.0)
    write_wav(music / "big.wav", 30.0)
    os.mkfifo(music / "song.mp3")
    (music / "x.flac").symlink_to("/dev/zero")
    (music / "loop.ogg").symlink_to(music / "loop.ogg")
    settings = make_settings(
        tmp_path / "data",
        tiny_model_dir,
        watcher={"folders": [str(music)], "scan_interval_s": 0, "max_file_mb": 0.5},
    )
    r = await start_running(settings)
    try:
        w: WatcherService = r.app.services.watcher
        outcomes = {p.name: await w.process(Job(p, music)) for p in sorted(music.iterdir())}
        assert outcomes == {
            "big.wav": "refused",
            "loop.ogg": "failed",
            "ok.wav": "analyzed",
            "song.mp3": "refused",
            "x.flac": "refused",
        }
        errors = {Path(f["path"]).name: f["error"] for f in w.failures()}
        assert errors["song.mp3"] == "skipped: not a regular file: it is a FIFO"
        assert errors["x.flac"] == "skipped: not a regular file: it is a character device"
        assert errors["big.wav"].startswith("skipped: larger than the size budget: 0.9 MB > 0.5")
        assert "cannot read" in errors["loop.ogg"]
        status = w.status()
        assert (status.done, status.failed) == (1, 4)
        assert {Path(f.path).name for f in status.recent_failures} == set(errors)
        # known failures are not retried while the file is unchanged
        assert await w.process(Job(music / "song.mp3", music)) == "skipped"
    finally:
        await stop_running(r)


# --- folders -------------------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
24 22 0:22 / /srv/kernel rw shared:13 - sysfs sysfs rw
25 22 0:5 / /data rw - devtmpfs udev rw,size=100k
26 25 8:2 / /data/music rw - ext4 /dev/sdb1 rw
27 22 0:23 / /mnt/my\\040disk rw - proc proc rw
28 22 8:3 / /media/usb rw master:4 - vfat /dev/sdc1 rw
"""


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[:2] == [Mount("/", "ext4"), Mount("/proc", "proc")]
    assert Mount("/mnt/my disk", "proc") in mounts
    assert mount_of("/data/music/a", mounts) == Mount("/data/music", "ext4")
    assert mount_of("/data/other", mounts) == Mount("/data", "devtmpfs")
    assert mount_of("/datax", mounts) == Mount("/", "ext4")
    real = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    found = mount_of("/proc/self", real)
    assert found is not None and found.fstype == "proc"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/", "/ is a system root (watch a music folder below it)"),
        ("/home", "/home is a system root (watch a music folder below it)"),
        ("/var", "/var is a system root (watch a music folder below it)"),
        ("/etc", "/etc is a system folder (/etc)"),
        ("/etc/ssl/", "/etc/ssl is a system folder (/etc)"),
        ("/usr/share/sounds", "/usr/share/sounds is a system folder (/usr)"),
        ("/proc/self/fd", "/proc/self/fd is a system folder (/proc)"),
        ("/run/user/1000", "/run/user/1000 is a system folder (/run)"),
        ("/srv/kernel/x", "/srv/kernel/x is on a sysfs pseudo filesystem (mounted at /srv/kernel)"),
        ("/data/other", "/data/other is on a devtmpfs pseudo filesystem (mounted at /data)"),
        (
            "/mnt/my disk/a",
            "/mnt/my disk/a is on a proc pseudo filesystem (mounted at /mnt/my disk)",
        ),
        ("/data/music", None),
        ("/media/usb/Music", None),
        ("/home/alice/Music", None),
        ("/var/lib/mpd/music", None),
        ("/etcetera", None),
    ],
)
def test_folder_refusal(path: str, why: str | None) -> None:
    assert folder_refusal(Path(path), parse_mountinfo(MOUNTINFO)) == why


def test_api_and_config_refuse_system_folders(tmp_path: Path) -> None:
    for bad in ("/etc", "/proc", "/", "~/../../sys"):
        with pytest.raises(BadRequest) as info:
            normalise_folder(bad)
        assert info.value.code == "FOLDER_REFUSED"
        assert "is refused" in info.value.message
    assert normalise_folder(str(tmp_path)) == tmp_path.resolve()
    link = tmp_path / "sneaky"
    link.symlink_to("/etc")
    with pytest.raises(BadRequest, match="/etc is a system folder"):
        normalise_folder(str(link))
    with pytest.raises(ConfigError) as cfg:
        load_settings(watcher={"folders": [str(tmp_path), str(link)]})
    assert (
        str(cfg.value)
        .splitlines()[1]
        .strip()
        .startswith(
            f"INSIGHT_WATCHER__FOLDERS: Value error, watch folder {link} is refused: "
            "/etc is a system folder (/etc)"
        )
    )
    assert load_settings(watcher={"folders": [str(tmp_path)]}).watcher.folders == [tmp_path]


async def test_saved_system_folder_is_dropped_at_load(tmp_path: Path, tiny_model_dir: Path) -> None:
    state = WatcherState(tmp_path / "data" / "watcher.db")
    state.add_folder("/etc", True, None, True)
    state.add_folder(str(tmp_path), True, "mine", True)
    state.close()
    r = await start_running(make_settings(tmp_path / "data", tiny_model_dir))
    try:
        w: WatcherService = r.app.services.watcher
        assert list(w.folders) == [str(tmp_path)]
        assert w.folders[str(tmp_path)].label == "mine"
    finally:
        await stop_running(r)


def test_folder_symlink_loop_is_a_clear_400(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(BadRequest, match="does not exist or is not a directory"):
        normalise_folder(str(loop))


def test_cli_scan_refuses_a_system_folder(tmp_path: Path) -> None:
    env = {**os.environ, "INSIGHT_STORAGE__DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "insight.cli", "scan", "/etc"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "insight: watch folder /etc is refused: /etc is a system folder (/etc)"
    )
    assert not (tmp_path / "data" / "watcher.db").exists()  # refused before opening anything


def test_walk_does_not_enter_pseudo_filesystem_mounts(tmp_path: Path) -> None:
    assert pseudo_mount_points(parse_mountinfo(MOUNTINFO)) == {
        "/proc",
        "/srv/kernel",
        "/data",
        "/mnt/my disk",
    }
    assert "/proc" in pseudo_mount_points()  # this machine's own mountinfo
    (tmp_path / "proc-bind" / "1").mkdir(parents=True)
    (tmp_path / "proc-bind" / "1" / "a.mp3").write_bytes(b"x")
    (tmp_path / "Music").mkdir()
    (tmp_path / "Music" / "b.mp3").write_bytes(b"x")
    exts = frozenset({".mp3"})
    everything = [p.relative_to(tmp_path).as_posix() for p in walk(tmp_path, exts)]
    assert everything == ["Music/b.mp3", "proc-bind/1/a.mp3"]
    skip = frozenset({str(tmp_path / "proc-bind")})
    assert [p.name for p in walk(tmp_path, exts, skip=skip)] == ["b.mp3"]


async def test_remove_folder_with_a_symlink_loop_is_a_404(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    r = await start_running(make_settings(tmp_path / "data", tiny_model_dir))
    try:
        loop = tmp_path / "loop"
        loop.symlink_to(loop)
        status, body = await r.api.call("DELETE", f"/watcher/folders{loop}")
        assert status == 404 and body["error"]["code"] == "NOT_FOUND", body
    finally:
        await stop_running(r)
