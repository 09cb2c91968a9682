"""Start and stop the prediction service: a local Ray cluster on loopback, Serve's HTTP proxy on host:port.

The cluster comes from mtrec.ray_session (127.0.0.1 as its node address, servers on loopback, DESIGN §6; its own
temporary directory, so its processes are told apart from any other Ray cluster and `stop()` removes it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import ray
from ray import serve

from mtrec.serve.deployment import BATCH_WAIT_S, MAX_BATCH_SIZE, PredictorServer
from mtrec.checkpoint import read_manifest
from mtrec.ray_session import LOCAL, LOOPBACK, RaySession, start_session, stop_session

APP_NAME = "mtrec"
HOST, PORT = LOOPBACK, 8000  # the HTTP proxy's default address: loopback only


_session = RaySession()  # what `start` set up, so `stop` undoes exactly that


def start(checkpoint: str | Path, replicas: int = 1, port: int = PORT, host: str = HOST, threads: int = 1,
          max_batch_size: int = MAX_BATCH_SIZE, batch_wait_s: float = BATCH_WAIT_S) -> str:
    """Deploy `checkpoint` with `replicas` replicas and return the service URL. Starts a local loopback Ray
    cluster unless this process is already connected to one (which `stop()` then leaves running)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    path = Path(checkpoint).resolve()
    read_manifest(path)
    global _session
    if not ray.is_initialized():
        _session = start_session(LOCAL, num_cpus=max(replicas, os.cpu_count() or 1), dashboard=False,
                                 log_to_driver=False, namespace="mtrec-serve")
    serve.start(http_options={"host": host, "port": port})
    app = PredictorServer.options(num_replicas=replicas).bind(str(path), threads, max_batch_size, batch_wait_s)
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop() -> None:
    """Shut Serve down, then the Ray cluster `start` started (and its temporary directory)."""
    try:
        if ray.is_initialized():
            with contextlib.suppress(Exception, KeyboardInterrupt):  # Ctrl-C may already have stopped Serve's actors
                serve.shutdown()
    finally:
        stop_session(_session)


def cluster_temp_dir() -> str | None:
    """The temporary directory of the Ray cluster `start` started (None when it did not start one)."""
    return _session.temp_dir


def serve_forever(checkpoint: str | Path, replicas: int = 1, port: int = PORT, host: str = HOST,
                  threads: int = 1) -> None:
    """Start the service and block until Ctrl-C or SIGTERM, then stop it (the cluster too)."""
    try:
        url = start(checkpoint, replicas=replicas, port=port, host=host, threads=threads)
        signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which installs its own abrupt handler
        print(f"serving {checkpoint} at {url} (POST /predict, GET /health); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C so the service and its cluster are stopped cleanly."""
    raise KeyboardInterrupt(f"signal {signum}")
