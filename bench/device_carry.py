"""Build what ``bench/device_gpu.sh`` needs on a lent GPU machine (no registry, 64 MiB a call).

    .venv/bin/python bench/device_carry.py [--work /tmp/device-carry] [--out .devcarry]

* onnxruntime-gpu and the runtime dependencies that machine's image lacks, as wheels for its
  Python (3.12), installed into one folder, packed as tar.xz and split in two parts
  (``<out>/p1``, ``<out>/p2``): call 1 copies p1 to ``/tmp/parts``, call 2 carries p2 and runs
  the script (a fresh machine needs both calls again);
* to fit, the CUDA provider keeps only the cubins of ``--sm`` (90: H100/H200): the others are
  zeroed in its ``.nv_fatbin`` (never loaded on that GPU; the kept code is the wheel's own),
  and the TensorRT provider and the C-API library, which Python does not load, are left out;
* ``<out>/p2/gpt2.tiktoken`` (RoBERTa's BPE for the full-size source) and ``<out>/p2/model``:
  our export's towers without their weights (``bench/onnx_skeleton.py``), from
  ``bench/inference.py``'s work folder.

``<out>`` must be git-ignored (``.git/info/exclude``): carried paths travel only when ignored.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.onnx_skeleton import strip

WHEELS = [
    "onnxruntime-gpu==1.31.1",
    "av==18.1.0",
    "soxr==1.1.0",
    "usearch==2.26.6",
    "numkong==7.8.6",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions==4.16.0",
    "nats-py==2.16.0",
    "mutagen==1.48.1",
    "watchdog==7.1.0",
]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64"]
PLATFORMS += ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "any"]
FATBIN_MAGIC = 0xBA55ED50
PART = 56 << 20


def keep_one_sm(lib: Path, sm: int) -> tuple[int, int]:
    """Zero the cubins of other SM versions in ``lib``'s ``.nv_fatbin`` (bytes kept, zeroed);
    a fat binary without a cubin for ``sm`` is left whole."""
    data = bytearray(lib.read_bytes())
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    entsize, count, names_at = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
    names = sections[names_at][4]

    def name(sec: tuple[int, ...]) -> bytes:
        start = names + sec[0]
        return bytes(data[start : data.index(b"\0", start)])

    fat = next(sec for sec in sections if name(sec) == b".nv_fatbin")
    pos, end = fat[4], fat[4] + fat[5]
    kept = zeroed = 0
    while pos < end:
        magic, _, header, size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:  # alignment padding between fat binaries
            pos += 8
            continue
        entries, e = [], pos + header
        while e < pos + header + size:
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", data, e)
            entries.append((e + entry_header, payload, struct.unpack_from("<I", data, e + 28)[0]))
            e += entry_header + payload
        has_sm = any(s == sm for _, _, s in entries)
        for at, payload, s in entries:
            if has_sm and s != sm:
                data[at : at + payload] = bytes(payload)
                zeroed += payload
            else:
                kept += payload
        pos += header + size
    lib.write_bytes(bytes(data))
    return kept, zeroed


def site(work: Path, sm: int) -> Path:
    wheels, target = work / "whl", work / "site"
    pip = [sys.executable, "-m", "pip"]
    plat = [arg for p in PLATFORMS for arg in ("--platform", p)]
    py = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", *plat]
    subprocess.run(
        [*pip, "download", "-q", "--no-deps", *py, "-d", str(wheels), *WHEELS], check=True
    )
    shutil.rmtree(target, ignore_errors=True)
    files = [str(w) for w in sorted(wheels.glob("*.whl"))]
    install = [*pip, "install", "-q", "--no-deps", "--no-compile", "--target", str(target), *py]
    subprocess.run(install + files, check=True)
    capi = target / "onnxruntime" / "capi"
    for left_out in [
        *capi.glob("libonnxruntime.so.*"),
        capi / "libonnxruntime_providers_tensorrt.so",
    ]:
        left_out.unlink(missing_ok=True)
    kept, zeroed = keep_one_sm(capi / "libonnxruntime_providers_cuda.so", sm)
    print(f"CUDA provider: sm_{sm} cubins {kept >> 20} MiB kept, others {zeroed >> 20} MiB zeroed")
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/device-carry"))
    ap.add_argument("--out", type=Path, default=Path(".devcarry"))
    ap.add_argument("--bench-work", type=Path, default=Path("/tmp/insight-bench"))
    ap.add_argument("--sm", type=int, default=90)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    packed = args.work / "site.tar.xz"
    with packed.open("wb") as fh:
        tar = subprocess.Popen(
            ["tar", "-C", site(args.work, args.sm), "-cf", "-", "."], stdout=subprocess.PIPE
        )
        subprocess.run(["xz", "-T0", "-6"], stdin=tar.stdout, stdout=fh, check=True)
        tar.wait()
    p1, p2 = args.out / "p1", args.out / "p2"
    for part in (p1, p2):
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
    (p2 / "model").mkdir()
    blob = packed.read_bytes()
    if len(blob) > 2 * PART:
        raise SystemExit(f"{len(blob) >> 20} MiB packed: more than two calls can carry")
    (p1 / "site.part-0").write_bytes(blob[:PART])
    (p2 / "site.part-1").write_bytes(blob[PART:])
    shutil.copy(args.bench_work / "gpt2" / "gpt2.tiktoken", p2)
    onnx = args.bench_work / "onnx"
    for tower in ("audio", "text"):
        strip(str(onnx / f"{tower}_model.onnx"), str(p2 / "model" / f"{tower}_skel.onnx"))
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "export.json"):
        shutil.copy(onnx / name, p2 / "model")
    for part in (p1, p2):
        size = sum(f.stat().st_size for f in part.rglob("*") if f.is_file())
        print(f"{part}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
