"""Helpers for scale-out tests: inference worker processes and a loopback NATS cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from insight.bus.embedded import free_port, nats_server_binary
from insight.scale import protocol as p
from insight.scale.remote import RemoteInference


class InferenceProcess:
    """``insight worker --role inference`` in a child process (SIGKILL = a crash)."""

    def __init__(self, nats_url: str, data_dir: Path, model_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "INSIGHT_STORAGE__DATA_DIR": str(data_dir),
            "INSIGHT_MODEL__PATH": str(model_dir),
            "INSIGHT_MODEL__NAME": "insight/tiny-clap",
            "INSIGHT_MODEL__AUTO_DOWNLOAD": "false",
            "INSIGHT_MODEL__THREADS": "1",
            "INSIGHT_NATS__URL": nats_url,
            "INSIGHT_INFERENCE__HEARTBEAT_S": "0.5",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> InferenceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "insight.cli", "worker", "--role", "inference"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"inference worker exited: {err[-2000:]}")


async def wait_workers(
    remote: RemoteInference,
    model_id: str,
    n: int,
    procs: list[InferenceProcess],
    timeout: float = 60.0,
) -> list[str]:
    """Until the dispatcher knows ``n`` workers of ``model_id``; returns their ids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for proc in procs:
            proc.check_alive()
        peers = remote.workers(model_id)
        if len(peers) >= n:
            return [peer.hello.worker_id for peer in peers]
        await remote.nc.publish(p.DISCOVER, b"")
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{len(remote.workers(model_id))} of {n} inference workers joined")


def cosine_rows(a: Any, b: Any) -> Any:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class NatsCluster:
    """``n`` nats-server processes (JetStream each) routed to one another on loopback."""

    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        self.client_ports = [free_port() for _ in range(n)]
        self.route_ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.client_ports]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def conf(self, i: int) -> Path:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{port}"' for j, port in enumerate(self.route_ports) if j != i
        )
        d = self.root / f"n{i}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "nats.conf"
        conf.write_text(
            f"server_name: n{i}\n"
            f"listen: 127.0.0.1:{self.client_ports[i]}\n"
            "max_payload: 8MB\n"
            f'jetstream {{ store_dir: "{d / "js"}" }}\n'
            "cluster {\n"
            "  name: insight\n"
            f"  listen: 127.0.0.1:{self.route_ports[i]}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )
        return conf

    def start_node(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.conf(i))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self, timeout: float = 60.0) -> None:
        """Start every node; wait until an R3 stream can be made (JetStream has a leader)."""
        import nats

        for i in range(len(self.procs)):
            self.start_node(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Exception | None = None
        while loop.time() < deadline:
            try:
                nc = await nats.connect(servers=self.urls, connect_timeout=2)
                try:
                    js = nc.jetstream()
                    await js.add_stream(name="PROBE", subjects=["probe"], num_replicas=3)
                    await js.delete_stream("PROBE")
                    return
                finally:
                    await nc.close()
            except Exception as exc:
                last = exc
                await asyncio.sleep(0.5)
        raise TimeoutError(f"the NATS cluster did not elect a JetStream leader: {last!r}")

    def index_of(self, url: Any) -> int:
        """The node a client is connected to (``nc.connected_url``)."""
        return self.client_ports.index(int(url.port))

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(i)
