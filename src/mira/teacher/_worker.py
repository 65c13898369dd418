"""Process entry point of the local model server: ``python -m mira.teacher._worker ...``.

Runs xllamacpp's embedded llama.cpp HTTP server (OpenAI-compatible ``/v1/chat/completions``,
``/health``) until SIGTERM/SIGINT, or until no lease holder has been alive for a while (the runs
that used it were killed without cleaning up), so an orphaned server never lingers.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from pathlib import Path

ORPHAN_GRACE_S = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mira.teacher._worker")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx-size", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--alias", default="local")
    parser.add_argument("--poll", type=int, default=50)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--leases", type=Path, required=True)
    parser.add_argument("--lock", type=Path, required=True)
    args = parser.parse_args(argv)

    import xllamacpp as xlc

    from mira.teacher.local import _locked, live_leases

    params = xlc.CommonParams()
    params.model.path = args.model_path
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    # n_ctx is shared by the slots: each of the `parallel` slots gets ctx-size / parallel.
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.cpuparams.poll = args.poll
    params.cpuparams_batch.poll = args.poll
    server = xlc.Server(params)  # loads the model and starts listening
    print(f"mira teacher server {args.alias} listening on {server.listening_address}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    last_seen = time.monotonic()
    while not stop.wait(5.0):
        if live_leases(args.leases):
            last_seen = time.monotonic()
            continue
        if time.monotonic() - last_seen < ORPHAN_GRACE_S:
            continue
        with _locked(args.lock):  # a client cannot take a lease while we decide to leave
            if not live_leases(args.leases):
                with contextlib.suppress(FileNotFoundError):
                    args.state.unlink()
                print("no live lease holders; exiting", flush=True)
                break
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
