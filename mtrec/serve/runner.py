"""Start and stop the prediction service: a local Ray cluster on loopback, Serve's HTTP proxy on host:port.

The cluster comes from mtrec.ray_session (127.0.0.1 as its node address, servers on loopback, DESIGN §6; its own
temporary directory, so its processes are told apart from any other Ray cluster and `stop()` removes it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import ray
from ray import serve

from mtrec.errors import UsageError
from mtrec.serve.deployment import BATCH_WAIT_S, MAX_BATCH_SIZE, PredictorServer
from mtrec.serve.protocol import MAX_REQUEST_BYTES
from mtrec.checkpoint import read_manifest
from mtrec.ray_session import LOCAL, LOOPBACK, RaySession, start_session, stop_session

APP_NAME = "mtrec"
HOST, PORT = LOOPBACK, 8000  # the HTTP proxy's default address: loopback only


_session = RaySession()  # what `start` set up, so `stop` undoes exactly that
WATCH_S, WATCH_MISSES = 2.0, 3  # serve_forever checks the port this often, and exits after this many refusals


class ServiceDown(RuntimeError):
    """The service stopped accepting connections while `serve_forever` ran (its Ray cluster died)."""


def _loopback_of(host: str) -> str:
    """An address that reaches a server bound to `host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _require_free(host: str, port: int) -> None:
    """UsageError when something already listens on host:port (Serve's proxy shares a port with SO_REUSEPORT, so a
    second service would start and silently split the traffic)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no listener
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"port {port} on {host} is already in use ({exc.strerror}): another service listens "
                             f"there; stop it or choose another --port") from None


def accepts_connections(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a server listens on host:port (a TCP connect succeeds)."""
    try:
        with socket.create_connection((_loopback_of(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def start(checkpoint: str | Path, replicas: int = 1, port: int = PORT, host: str = HOST, threads: int = 1,
          max_batch_size: int = MAX_BATCH_SIZE, batch_wait_s: float = BATCH_WAIT_S,
          max_request_bytes: int = MAX_REQUEST_BYTES) -> str:
    """Deploy `checkpoint` with `replicas` replicas and return the service URL. Starts a local loopback Ray
    cluster unless this process is already connected to one (which `stop()` then leaves running). Refuses a
    port something already listens on; bodies above `max_request_bytes` are answered 413."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if max_request_bytes < 1:
        raise UsageError(f"max_request_bytes must be >= 1, got {max_request_bytes}")
    path = Path(checkpoint).resolve()
    read_manifest(path)
    global _session
    _require_free(host, port)
    if not ray.is_initialized():
        _session = start_session(LOCAL, num_cpus=max(replicas, os.cpu_count() or 1), dashboard=False,
                                 log_to_driver=False, namespace="mtrec-serve")
    serve.start(http_options={"host": host, "port": port})
    app = PredictorServer.options(num_replicas=replicas).bind(str(path), threads, max_batch_size, batch_wait_s,
                                                              max_request_bytes)
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop(serve_alive: bool = True) -> None:
    """Shut Serve down (unless its cluster is known dead), then the Ray cluster `start` started (and its temporary
    directory)."""
    try:
        if ray.is_initialized() and serve_alive:
            with contextlib.suppress(Exception, KeyboardInterrupt):  # Ctrl-C may already have stopped Serve's actors
                serve.shutdown()
    finally:
        stop_session(_session)


def cluster_temp_dir() -> str | None:
    """The temporary directory of the Ray cluster `start` started (None when it did not start one)."""
    return _session.temp_dir


def serve_forever(checkpoint: str | Path, replicas: int = 1, port: int = PORT, host: str = HOST,
                  threads: int = 1, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
    """Start the service and block until Ctrl-C or SIGTERM, then stop it (the cluster too). Raises ServiceDown
    when the port stops accepting connections (the Ray cluster died), instead of claiming to serve."""
    alive = True
    try:
        url = start(checkpoint, replicas=replicas, port=port, host=host, threads=threads,
                    max_request_bytes=max_request_bytes)
        signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which installs its own abrupt handler
        print(f"serving {checkpoint} at {url} (POST /predict, GET /health); Ctrl-C stops", flush=True)
        misses = 0
        while misses < WATCH_MISSES:
            time.sleep(WATCH_S)
            misses = 0 if accepts_connections(host, port) else misses + 1
        alive = False
        raise ServiceDown(f"{url} stopped accepting connections (its Ray cluster is gone); the service is down")
    except KeyboardInterrupt:
        pass
    finally:
        stop(serve_alive=alive)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C so the service and its cluster are stopped cleanly."""
    raise KeyboardInterrupt(f"signal {signum}")
