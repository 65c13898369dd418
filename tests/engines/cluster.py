"""A real multi-node Ray cluster on this machine, started with ``ray start`` and torn down for sure.

Each node is one ``ray start --block`` process in a session of its own, with its own temp dir and
its own ports (two nodes on one host would otherwise collide on the agents' fixed default ports).
``--block`` keeps the command in the foreground so that it is the parent of the node's processes:
SIGTERM to it stops them, and whatever survives is found by its session id and killed. Never
``ray stop``: it stops every Ray process of the user on the machine, other people's included.

Token authentication with a token of this cluster only (``RAY_AUTH_TOKEN``), for the nodes and for
the driver that connects (:meth:`RayCluster.driver_env`): a shared ``~/.ray/auth_token`` is neither
read nor written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_processes(sid: int) -> list[int]:
    """Every live process of session `sid` (Linux: /proc/<pid>/stat field 6)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


class NodeExited(RuntimeError):
    """A node's ``ray start`` ended while the cluster was starting."""


class RayCluster:
    """Nodes joined to one head; ``address`` is what ``engine.address`` takes."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mira-ray-", dir="/tmp"))  # short: socket paths max 107 chars
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", **self.driver_env()}
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.node_ids: list[str] = []  # Ray's node ids, head first
        # Stops the nodes if this process dies without running stop() (SIGKILL, os._exit).
        self.watchdog = subprocess.Popen([sys.executable, __file__, str(os.getpid()), str(self.root)],
                                         start_new_session=True, stdin=subprocess.DEVNULL)

    def driver_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def add_node(self, *, num_cpus: int = 1, num_gpus: int = 0, resources: dict[str, float] | None = None,
                 attempts: int = 3) -> None:
        """Start the head (first call) or a node joining it; return once the cluster counts it.

        ``ray start`` gives a node 30 s (hard-coded) to register; on a loaded 2-core machine it can
        miss that and exit, so a node that exits while starting is stopped and started again."""
        for attempt in range(1, attempts + 1):
            self._start_node(num_cpus, num_gpus, resources or {}, attempt)
            try:
                self._wait_for_nodes(len(self.nodes))
                return
            except NodeExited:
                if attempt == attempts:
                    raise
                stop_sessions([self.nodes.pop().pid])

    def _start_node(self, num_cpus: int, num_gpus: int, resources: dict[str, float], attempt: int) -> None:
        head = not self.nodes
        name = f"node{len(self.nodes) + 1}-{attempt}"
        temp_dir = self.root / name
        temp_dir.mkdir()
        args = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", f"--num-cpus={num_cpus}",
                f"--num-gpus={num_gpus}", f"--temp-dir={temp_dir}", "--object-store-memory=100000000",
                "--disable-usage-stats", f"--resources={json.dumps(resources)}"]
        for option in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                       "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port"):
            args.append(f"--{option}={free_port()}")
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
        else:
            args += [f"--address={self.address}"]
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the node writes it until teardown
        self.nodes.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()
        (self.root / "sessions").write_text(" ".join(str(node.pid) for node in self.nodes))

    def _wait_for_nodes(self, n: int, timeout: float = 240.0) -> None:
        probe = ("import json, ray\n"
                 f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR')\n"
                 "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))\n")
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if node.poll() is not None:
                    raise NodeExited(f"a ray node exited with {node.returncode}: {self.logs()}")
            try:
                done = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True,
                                      timeout=max(10.0, deadline - time.monotonic()))
                error = done.stderr[-2000:]
                alive = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []
            except subprocess.TimeoutExpired:  # a loaded machine: the probe's own ray.init waits too
                alive, error = [], "the probe timed out"
            if len(alive) == n:
                self.node_ids += [node for node in alive if node not in self.node_ids]  # in the order they joined
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach {n} nodes: {error} {self.logs()}")
            time.sleep(1.0)

    def logs(self) -> str:
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in sorted(self.root.glob("node*.log"))[-2:])

    def processes(self) -> list[int]:
        return [pid for node in self.nodes for pid in session_processes(node.pid)]

    def stop(self) -> None:
        """Stop every node (see :func:`stop_sessions`), then the watchdog."""
        stop_sessions([node.pid for node in reversed(self.nodes)])  # joined nodes first: the head last
        for node in self.nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        self.watchdog.kill()
        self.watchdog.wait()


def stop_sessions(leaders: list[int], timeout: float = 20.0) -> None:
    """SIGTERM each node's ``ray start --block`` (the leader of its session; it stops the node's
    processes), then SIGKILL whatever of those sessions is left."""
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(session_processes(sid) for sid in leaders) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in [pid for sid in leaders for pid in session_processes(sid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _watch(parent: int, root: Path) -> None:
    """The watchdog: once `parent` is gone, stop the sessions listed in ``root/sessions``."""
    while root.exists():
        try:
            state = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            state = "gone"
        if state in ("Z", "gone"):
            sessions = root / "sessions"
            stop_sessions([int(pid) for pid in sessions.read_text().split()] if sessions.exists() else [])
            shutil.rmtree(root, ignore_errors=True)
            return
        time.sleep(0.5)


@contextmanager
def ray_cluster(*nodes: dict[str, Any], env: dict[str, str] | None = None) -> Iterator[RayCluster]:
    """A cluster of `nodes` (keyword arguments of :meth:`RayCluster.add_node`, the head first),
    stopped when the block ends, whatever way it ends."""
    cluster = RayCluster(env)
    try:
        for node in nodes:
            cluster.add_node(**node)
        yield cluster
    finally:
        cluster.stop()


if __name__ == "__main__":
    _watch(int(sys.argv[1]), Path(sys.argv[2]))
