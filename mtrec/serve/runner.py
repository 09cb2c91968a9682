"""Start and stop the prediction service: a local Ray cluster on loopback, Serve's HTTP proxy on host:port.

`mtrec.serve` sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported, so a cluster started here takes
127.0.0.1 as its node address and its servers listen on loopback (DESIGN §6). The cluster gets its own temporary
directory, so its processes are told apart from any other Ray cluster on the machine and `stop()` removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from mtrec.serve.deployment import BATCH_WAIT_S, MAX_BATCH_SIZE, PredictorServer
from mtrec.checkpoint import read_manifest

APP_NAME = "mtrec"
HOST, PORT = "127.0.0.1", 8000  # the HTTP proxy's default address: loopback only


@dataclass
class _Session:
    """What `start` set up, so `stop` undoes exactly that."""

    started_ray: bool = False
    temp_dir: str | None = None


_SESSION = _Session()


def start(checkpoint: str | Path, replicas: int = 1, port: int = PORT, host: str = HOST, threads: int = 1,
          max_batch_size: int = MAX_BATCH_SIZE, batch_wait_s: float = BATCH_WAIT_S) -> str:
    """Deploy `checkpoint` with `replicas` replicas and return the service URL. Starts a local loopback Ray
    cluster unless this process is already connected to one (which `stop()` then leaves running)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    path = Path(checkpoint).resolve()
    read_manifest(path)
    if not ray.is_initialized():
        _SESSION.temp_dir = tempfile.mkdtemp(prefix="mtrec-ray-")
        ray.init(include_dashboard=False, num_cpus=max(replicas, os.cpu_count() or 1), log_to_driver=False,
                 namespace="mtrec-serve", _temp_dir=_SESSION.temp_dir)
        _SESSION.started_ray = True
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
            if _SESSION.started_ray:
                ray.shutdown()
    finally:
        if _SESSION.temp_dir is not None:
            shutil.rmtree(_SESSION.temp_dir, ignore_errors=True)
        _SESSION.started_ray, _SESSION.temp_dir = False, None


def cluster_temp_dir() -> str | None:
    """The temporary directory of the Ray cluster `start` started (None when it did not start one)."""
    return _SESSION.temp_dir


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
