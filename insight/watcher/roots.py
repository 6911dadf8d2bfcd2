"""Folders the watcher refuses: system roots and pseudo filesystems.

Watching ``/``, ``/etc`` or ``/proc`` would walk the whole machine (or kernel files that never
end) and put system paths in the library. A folder is refused when its resolved path is one of
``SYSTEM_ROOTS``, lies under one of ``SYSTEM_TREES``, or sits on a mount whose filesystem type is
in ``PSEUDO_FS`` (read from ``/proc/self/mountinfo``, so a bind mount of ``/proc`` elsewhere is
caught too). No third-party imports: the settings validate ``INSIGHT_WATCHER__FOLDERS`` with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from insight.errors import BadRequest

# Refused themselves (their sub-folders are fine: /home/alice/Music, /var/lib/mpd/music).
SYSTEM_ROOTS = frozenset({"/", "/home", "/root", "/var"})
# Refused with everything under them.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lock",
    "/var/run",
)
PSEUDO_FS = frozenset(
    {
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)
MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def parse_mountinfo(text: str) -> list[Mount]:
    """Mount points and filesystem types, in mount order (see proc(5))."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if "-" not in parts[6:] or len(parts) < 5:
            continue
        sep = parts.index("-", 6)
        if sep + 1 >= len(parts):
            continue
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), parts[4])
        out.append(Mount(point, parts[sep + 1]))
    return out


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount ``path`` is on: the longest mount point above it (the later one on a tie)."""
    best: Mount | None = None
    for m in mounts:
        point = m.point.rstrip("/") or "/"
        above = point == "/" or path == point or path.startswith(point + "/")
        if above and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = m
    return best


def _mounts() -> list[Mount]:
    try:
        return parse_mountinfo(MOUNTINFO.read_text())
    except OSError:  # no /proc (not Linux): the path rules still apply
        return []


def pseudo_mount_points(mounts: list[Mount] | None = None) -> frozenset[str]:
    """Mount points of pseudo filesystems (a walk must not enter them)."""
    return frozenset(
        m.point for m in (_mounts() if mounts is None else mounts) if m.fstype in PSEUDO_FS
    )


def folder_refusal(path: Path, mounts: list[Mount] | None = None) -> str | None:
    """Why the watcher must not watch ``path`` (resolved by the caller), or None."""
    p = os.path.normpath(str(path))
    if p in SYSTEM_ROOTS:
        return f"{p} is a system root (watch a music folder below it)"
    for tree in SYSTEM_TREES:
        if p == tree or p.startswith(tree + "/"):
            return f"{p} is a system folder ({tree})"
    mount = mount_of(p, _mounts() if mounts is None else mounts)
    if mount is not None and mount.fstype in PSEUDO_FS:
        return f"{p} is on a {mount.fstype} pseudo filesystem (mounted at {mount.point})"
    return None


def resolved(path: str | Path) -> Path:
    """``path`` with ``~`` expanded and symlinks resolved (as far as it exists); a symlink
    loop or an unreadable parent leaves it normalised only."""
    p = Path(os.path.expanduser(str(path)))
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.normpath(p))


def normalise_folder(path: str) -> Path:
    """Absolute, resolved, existing directory that is no system folder; ``BadRequest`` else."""
    if "\0" in path:
        raise BadRequest("watch folder path contains a NUL byte")
    if not Path(os.path.expanduser(path)).is_absolute():
        raise BadRequest(f"watch folder {path!r} must be an absolute path")
    p = resolved(path)
    why = folder_refusal(p)
    if why is not None:
        raise BadRequest(f"watch folder {p} is refused: {why}", code="FOLDER_REFUSED")
    if not p.is_dir():
        raise BadRequest(f"watch folder {p} does not exist or is not a directory")
    return p
