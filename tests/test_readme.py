"""README stays true: the config table is generated, and the walk-through works."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

from insight import settings_doc
from insight.bus.embedded import free_port
from tests.conftest import start_serve, wait_for_health

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_config_table_is_generated_and_complete() -> None:
    assert settings_doc.render(README) == README, "run `python -m insight.settings_doc`"
    for env, _default, desc in settings_doc.settings_rows():
        assert desc, f"{env} has no description"
        assert f"`{env}`" in README


def test_two_commands_are_documented() -> None:
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def walkthrough_curls() -> list[list[str]]:
    """The curl commands of the README's walk-through that need no hub access."""
    block = README.split("## First steps", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    cmds = [
        shlex.split(line.strip()) for line in joined.splitlines() if line.strip().startswith("curl")
    ]
    return [c for c in cmds if not any("models" in part for part in c)]


def test_walkthrough_commands_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    proc = start_serve(
        tmp_path / "data",
        tiny_model_dir,
        port,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(port, timeout=15)
        outputs = []
        for cmd in walkthrough_curls():
            cmd = [part.replace("localhost:8096", f"127.0.0.1:{port}") for part in cmd]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
            outputs.append(json.loads(out.stdout))
        health, stored, found = outputs
        assert health["status"] == "healthy"
        assert stored["stored"] is True and "deadmau5 - Strobe" in stored["text"]
        assert found["results"][0]["track_id"] == "library://track/1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
