"""Deployment files: nats.conf (run for real), the compose files, the Dockerfiles.

No Docker engine here: ``docker compose config`` runs when the client has the compose plugin,
otherwise the compose files are checked structurally (what compose itself would reject, plus
what our deployment relies on).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
import yaml
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.connection import flush_subscriptions
from insight.bus.embedded import free_port, nats_server_binary

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"INSIGHT_NATS_PASSWORD": "insight-secret", "MA_NATS_PASSWORD": "ma-secret"}
HEALTH_PATH = "/api/v1/health"


def compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


# --- nats.conf ------------------------------------------------------------------------------


def test_nats_conf_is_valid_and_needs_the_passwords() -> None:
    binary = str(nats_server_binary())
    env = {**os.environ, **PASSWORDS}
    ok = subprocess.run(
        [binary, "-t", "-c", str(ROOT / "nats.conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    bare = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    missing = subprocess.run(
        [binary, "-t", "-c", str(ROOT / "nats.conf")],
        env=bare,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0
    assert "INSIGHT_NATS_PASSWORD" in missing.stderr + missing.stdout


def test_nats_conf_settings() -> None:
    conf = (ROOT / "nats.conf").read_text()
    active = "\n".join(ln for ln in conf.splitlines() if not ln.lstrip().startswith("#"))
    assert re.search(r"^max_payload:\s*8MB", active, re.M)
    assert re.search(r"^http:\s*8222", active, re.M)
    assert re.search(r'store_dir:\s*"/data/jetstream"', active)
    assert "max_file_store" in active and "max_memory_store" in active
    assert "$INSIGHT_NATS_PASSWORD" in active and "$MA_NATS_PASSWORD" in active
    assert re.search(r"^#\s*tls \{", conf, re.M) and "tls {" not in active  # documented, off


class NatsConf:
    """The real nats.conf on free ports, its JetStream store moved to a tmp dir."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.http_port, self.tmp = free_port(), free_port(), tmp
        self.proc: asyncio.subprocess.Process | None = None

    def url(self, user: str, password: str) -> str:
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        original = (ROOT / "nats.conf").read_text()
        text = original.replace('store_dir: "/data/jetstream"', f'store_dir: "{self.tmp}/js"')
        assert text != original
        conf = self.tmp / "nats.conf"
        conf.write_text(text)
        self.proc = await asyncio.create_subprocess_exec(
            str(nats_server_binary()),
            "-c",
            str(conf),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.http_port),
            env={**os.environ, **PASSWORDS},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(200):
            if self.proc.returncode is not None:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"nats-server exited: {err.decode()}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError("nats-server with nats.conf did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@pytest_asyncio.fixture
async def conf_server(tmp_path: Path) -> AsyncIterator[NatsConf]:
    server = NatsConf(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def connect(url: str, errors: list[str]) -> NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, allow_reconnect=False)


async def test_nats_conf_users_and_permissions(
    conf_server: NatsConf, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A real worker runs as `insight`; `music_assistant` can do its job and nothing else."""
    from conftest import make_settings  # the shared test settings: free ports, tiny model

    from insight.runtime import Stack

    # The insight user: a whole worker + bridge (streams, consumers, KV, micro service).
    settings = make_settings(
        tmp_path / "data",
        tiny_model_dir,
        nats={
            "url": f"nats://127.0.0.1:{conf_server.port}",
            "user": "insight",
            "password": PASSWORDS["INSIGHT_NATS_PASSWORD"],
        },
    )
    stack = Stack(settings)
    await stack.start()
    ma_errors: list[str] = []
    ma = await connect(conf_server.url("music_assistant", PASSWORDS["MA_NATS_PASSWORD"]), ma_errors)
    try:
        # Requests to the service, replies on _INBOX.
        reply = await ma.request("insight.v1.health", b"", timeout=5)
        assert reply.data
        # JetStream publish of an event (ack comes back on _INBOX) and the worker applies it.
        from insight.codec import pack

        event = {
            "event": "media_item_added",
            "object_id": "library://track/conf-1",
            "data": {"name": "Conf Song", "artists": ["NATS"], "uri": "library://track/conf-1"},
        }
        ack = await ma.jetstream().publish(
            subjects.TRACK_ADDED, pack(event), headers={"Nats-Msg-Id": "conf-1"}
        )
        assert ack.stream == subjects.EVENTS_STREAM
        assert stack.worker is not None
        store = stack.worker.app.require_store()
        for _ in range(200):
            if await store.exists("tracks_text", "library://track/conf-1"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker (user insight) did not apply the MA user's event")
        # Notifications reach the MA user.
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_notify(msg: Any) -> None:
            await got.put(msg.data)

        notify_sub = await ma.subscribe("insight.notify.>", cb=on_notify)
        await flush_subscriptions(ma)
        assert stack.worker.app.nc is not None
        await stack.worker.app.nc.publish(subjects.TRACK_ANALYZED, b"x")
        assert await asyncio.wait_for(got.get(), 5) == b"x"
        await notify_sub.unsubscribe()

        # What the MA user must not do: serve/eavesdrop insight.v1, write the DLQ, admin JS.
        await ma.subscribe("insight.v1.>")
        await ma.publish("insight.dlq.library.track.added", b"x")
        await ma.publish("$JS.API.STREAM.DELETE.INSIGHT_EVENTS", b"")
        await ma.subscribe("$KV.insight_sessions.>")
        await flush_subscriptions(ma)
        await asyncio.sleep(0.3)
        joined = "\n".join(ma_errors).lower()
        assert 'subscription to "insight.v1.>"' in joined
        assert 'publish to "insight.dlq.library.track.added"' in joined
        assert 'publish to "$js.api.stream.delete.insight_events"' in joined
        assert 'subscription to "$kv.insight_sessions.>"' in joined
        info = await stack.worker.app.js.stream_info(subjects.EVENTS_STREAM)  # type: ignore[union-attr]
        assert info.config.name == subjects.EVENTS_STREAM  # still there

        # Wrong password: refused. Monitoring endpoint answers.
        with pytest.raises(Exception):  # noqa: B017 - nats.py raises its own auth errors
            await connect(conf_server.url("music_assistant", "wrong"), [])
        healthz = f"http://127.0.0.1:{conf_server.http_port}/healthz"
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(healthz).status) == 200
    finally:
        await ma.close()
        await stack.stop()


# --- compose --------------------------------------------------------------------------------

NAMED_VOLUME = re.compile(r"^([A-Za-z0-9][\w.-]*):")


def test_compose_services_and_profiles() -> None:
    doc = compose()
    svc = doc["services"]
    assert set(svc) == {"nats", "qdrant", "insight", "worker", "ma-bridge"} | CLUSTER
    assert "profiles" not in svc["insight"] and svc["worker"]["profiles"] == ["scale"]
    assert svc["ma-bridge"]["profiles"] == ["music-assistant"]
    # worker + bridge in one container, against the compose NATS, Qdrant storage.
    assert svc["insight"]["command"] == ["serve", "--nats-url", NATS_URLS]
    assert svc["worker"]["command"] == ["worker", "--nats-url", NATS_URLS]
    for name in ("insight", "worker"):
        env = svc[name]["environment"]
        assert env["INSIGHT_STORAGE__MODE"] == "qdrant"
        assert env["INSIGHT_STORAGE__URL"] == "http://qdrant:6334"
        assert env["INSIGHT_NATS__USER"] == "insight"
        assert any(v.endswith(":/data") for v in svc[name]["volumes"])
        assert svc[name]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert svc["ma-bridge"]["environment"]["INSIGHT_NATS__USER"] == "music_assistant"
    assert "ports" not in svc["worker"]  # scaled replicas must not fight over a host port
    # nats runs our nats.conf; its password variables are passed in.
    assert svc["nats"]["command"] == ["-c", "${NATS_CONFIG:-/etc/nats/nats.conf}"]
    assert "./nats.conf:/etc/nats/nats.conf:ro" in svc["nats"]["volumes"]
    assert set(PASSWORDS) <= set(svc["nats"]["environment"])
    # Every named volume is declared.
    used = {
        m.group(1)
        for s in svc.values()
        for v in s.get("volumes", [])
        if (m := NAMED_VOLUME.match(v)) and not v.startswith(".")
    }
    assert used <= set(doc["volumes"]) and {"nats-data", "qdrant-data", "insight-data"} <= used


CLUSTER = {"nats-2", "nats-3", "inference"}
NATS_URLS = "${INSIGHT_NATS_URLS:-nats://nats:4222}"


def test_compose_cluster_profile() -> None:
    """3 NATS nodes (the base one with NATS_CONFIG set) and stateless inference workers."""
    svc = compose()["services"]
    assert all(svc[name]["profiles"] == ["cluster"] for name in CLUSTER)
    for name in ("nats-2", "nats-3"):
        assert svc[name]["command"] == ["-c", "/etc/nats/cluster/node.conf"]
        assert svc[name]["environment"]["NATS_SERVER_NAME"] == name
        assert set(PASSWORDS) <= set(svc[name]["environment"])
    assert svc["nats"]["environment"]["NATS_SERVER_NAME"] == "nats"
    assert "./deploy/nats-cluster:/etc/nats/cluster:ro" in svc["nats"]["volumes"]
    inference = svc["inference"]
    assert inference["command"] == ["worker", "--role", "inference", "--nats-url", NATS_URLS]
    assert "ports" not in inference and inference["environment"]["INSIGHT_NATS__USER"] == "insight"
    example = (ROOT / ".env.example").read_text()
    assert (
        "INSIGHT_NATS_REPLICAS=3" in example
        and "NATS_CONFIG=/etc/nats/cluster/node.conf" in example
    )


def test_cluster_node_conf_is_valid_and_has_nats_confs_users() -> None:
    binary = str(nats_server_binary())
    node = ROOT / "deploy" / "nats-cluster" / "node.conf"
    env = {**os.environ, **PASSWORDS, "NATS_SERVER_NAME": "nats-2"}
    ok = subprocess.run([binary, "-t", "-c", str(node)], env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    bare = {k: v for k, v in env.items() if k != "NATS_SERVER_NAME"}
    bad = subprocess.run([binary, "-t", "-c", str(node)], env=bare, capture_output=True, timeout=30)
    assert bad.returncode != 0 and b"NATS_SERVER_NAME" in bad.stdout + bad.stderr
    accounts = (ROOT / "deploy" / "nats-cluster" / "accounts.conf").read_text()
    main = (ROOT / "nats.conf").read_text()
    block = main[main.index("# One account holds") : main.index("system_account: SYS")]
    assert block in accounts  # the same users and permissions as the single node


def test_compose_healthchecks() -> None:
    svc = compose()["services"]
    test = svc["insight"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and HEALTH_PATH in test[-1]
    assert "curl" not in (ROOT / "docker-compose.yml").read_text()
    assert svc["worker"]["healthcheck"] == {"disable": True}
    assert "healthz" in " ".join(svc["nats"]["healthcheck"]["test"])


def test_compose_cuda_override_matches_spec() -> None:
    override = compose("docker-compose.cuda.yml")["services"]
    spec_devices = [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for name in ("insight", "worker"):
        assert override[name]["deploy"]["resources"]["reservations"]["devices"] == spec_devices
        assert override[name]["environment"]["INSIGHT_MODEL__ENABLE_CUDA"] == "true"
        assert override[name]["build"]["dockerfile"] == "Dockerfile.cuda"
    assert set(override) <= set(compose()["services"])


def test_compose_variables_are_documented() -> None:
    text = (ROOT / "docker-compose.yml").read_text() + (
        ROOT / "docker-compose.cuda.yml"
    ).read_text()
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (ROOT / ".env.example").read_text()
    assert names and all(n in example for n in names), names - set(re.findall(r"[A-Z_]+", example))
    for ref in re.findall(r"\$\{[^}]+\}", text):  # every variable has a default or a message
        assert ":-" in ref or ":?" in ref, ref


def test_build_contexts_exist() -> None:
    for name in ("docker-compose.yml", "docker-compose.cuda.yml"):
        for svc in compose(name)["services"].values():
            build = svc.get("build")
            if build:
                assert (ROOT / build["context"] / build["dockerfile"]).is_file()


# The Compose Specification's JSON schema (compose-spec/compose-spec, schema/compose-spec.json,
# commit 170098b, Apache-2.0), what `docker compose config` validates against.
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg if op == "-" else ""

    return VARIABLE.sub(sub, value)


def test_compose_files_match_the_compose_specification() -> None:
    import jsonschema_rs

    validator = jsonschema_rs.validator_for(json.loads(COMPOSE_SCHEMA.read_text()))
    for name in ("docker-compose.yml", "docker-compose.cuda.yml"):
        doc = interpolate(compose(name), PASSWORDS)
        errors = [
            f"{'/'.join(map(str, e.instance_path))}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
        assert not errors, (name, errors)
    broken = interpolate(compose("docker-compose.yml"), PASSWORDS)
    broken["services"]["insight"]["healthcheck"]["interval"] = ["15s"]
    assert not validator.is_valid(broken)  # the schema does catch mistakes
    with pytest.raises(AssertionError, match="INSIGHT_NATS_PASSWORD"):
        interpolate(compose("docker-compose.yml"), {})
    # Where the docker compose plugin exists (not on this project's machines), ask it too.
    if (
        shutil.which("docker")
        and not subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
    ):
        env = {**os.environ, **PASSWORDS}
        for files in (
            ["-f", "docker-compose.yml"],
            ["-f", "docker-compose.yml", "-f", "docker-compose.cuda.yml"],
        ):
            for profile in ([], ["--profile", "scale", "--profile", "music-assistant"]):
                run = subprocess.run(
                    ["docker", "compose", *files, *profile, "config", "-q"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                assert run.returncode == 0, run.stderr


# --- Dockerfiles ----------------------------------------------------------------------------


def healthcheck_cmd(name: str) -> list[str]:
    [hc] = [rest for op, rest in dockerfile(name) if op == "HEALTHCHECK"]
    return yaml.safe_load(hc.split(" CMD ", 1)[1])  # the JSON (exec) form


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_basics(name: str) -> None:
    ins = dockerfile(name)
    ops = [op for op, _ in ins]
    assert ops.count("FROM") >= 2  # build stage + runtime stage
    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("EXPOSE", "8096") in ins
    assert ("VOLUME", '["/data"]') in ins
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert "INSIGHT_STORAGE__DATA_DIR=/data" in env and "HF_HOME=/data/" in env
    cmd = healthcheck_cmd(name)
    assert cmd[0] == "python" and HEALTH_PATH in cmd[-1] and "curl" not in " ".join(cmd)
    assert ("ENTRYPOINT", '["insight"]') in ins
    # What COPY takes from the context exists and is not excluded by .dockerignore.
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for op, rest in ins:
        if op == "COPY" and not rest.startswith("--from"):
            for src in shlex.split(rest)[:-1]:
                assert (ROOT / src).exists(), src
                assert src.rstrip("/") not in ignored, src


def test_cpu_and_cuda_installs() -> None:
    cpu = " ".join(rest for op, rest in dockerfile("Dockerfile") if op == "RUN")
    assert 'pip install ".[qdrant,watcher]"' in cpu
    assert dockerfile("Dockerfile")[0] == ("FROM", "python:3.11-slim AS build")
    cuda = " ".join(rest for op, rest in dockerfile("Dockerfile.cuda") if op == "RUN")
    assert 'pip install ".[gpu,qdrant,watcher]"' in cuda
    # pip keeps onnxruntime next to onnxruntime-gpu (the extra marker cannot drop it).
    assert "pip uninstall -y onnxruntime" in cuda and "--force-reinstall" in cuda
    assert "CUDAExecutionProvider" in cuda


async def test_image_healthcheck_command_hits_the_real_path(running: Any) -> None:
    """The HEALTHCHECK command itself, pointed at a running bridge, exits 0."""
    for name in ("Dockerfile", "Dockerfile.cuda"):
        cmd = healthcheck_cmd(name)
        code = cmd[-1].replace("127.0.0.1:8096", f"127.0.0.1:{running.stack.bridge.port}")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    compose_cmd = compose()["services"]["insight"]["healthcheck"]["test"][-1]
    assert compose_cmd == healthcheck_cmd("Dockerfile")[-1]
