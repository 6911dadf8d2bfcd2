"""Deployment files: the compose files and the Dockerfiles.

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
from typing import Any

import pytest
import yaml
from test_deploy import PASSWORDS, ROOT

from insight.bus.embedded import nats_server_binary

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
