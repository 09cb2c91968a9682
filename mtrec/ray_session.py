"""The one Ray session starter: join a given cluster, or start an embedded local Ray that listens on loopback only.

Training, batch scoring and serving start Ray here. An embedded node takes 127.0.0.1 as its address, its servers
(GCS, raylet, object manager, dashboard when asked for) bind loopback, and it gets its own temporary directory, so
its processes are told apart from any other Ray cluster on the machine and stopping it removes that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

LOOPBACK = "127.0.0.1"
CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL = "local"  # the address that always starts an embedded Ray, even with $RAY_ADDRESS set


@dataclass
class RaySession:
    """What `start_session` did, so `stop_session` undoes exactly that: started a node (with its temporary
    directory), connected to a cluster, or found Ray already initialized (then it leaves it alone)."""

    started: bool = False
    connected: bool = False
    temp_dir: str | None = None
    loopback: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, compare=False, repr=False)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make a Ray node started in this process bind to loopback only.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 once, at import; set after `import ray` it has no effect and
    the node's servers listen on every interface. So the flag Ray derived from it is set too (and both restored).
    """
    from ray._private import ray_constants

    env_before = os.environ.get(CLUSTER_ENV)
    flag_before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag_before
        if env_before is None:
            os.environ.pop(CLUSTER_ENV, None)
        else:
            os.environ[CLUSTER_ENV] = env_before


def start_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True,
                  **init_options: Any) -> RaySession:
    """Use the Ray this process is already connected to; else connect to `address` / $RAY_ADDRESS; else (or with
    address="local") start an embedded node on loopback with `num_cpus`, a loopback dashboard when `dashboard`
    (Ray Train's state queries need one; without it, ~270 MiB less, enough for batch scoring and serving), and
    `init_options` for ray.init (namespace, log_to_driver, ...). The loopback setting holds until stop_session."""
    import ray

    if ray.is_initialized():
        return RaySession()
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != LOCAL:
        ray.init(address=address, **init_options)
        return RaySession(connected=True)
    session = RaySession(started=True, temp_dir=tempfile.mkdtemp(prefix="mtrec-ray-"))
    ports = {"dashboard_host": LOOPBACK, "dashboard_port": free_loopback_port()} if dashboard else {}
    try:
        session.loopback.enter_context(loopback_only())
        ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=dashboard, num_cpus=num_cpus,
                 _temp_dir=session.temp_dir, **ports, **init_options)
    except BaseException:
        stop_session(session)
        raise
    return session


def stop_session(session: RaySession) -> None:
    """Disconnect from the cluster `start_session` joined, or stop the node it started and remove its directory."""
    import ray

    try:
        if session.started or session.connected:
            ray.shutdown()
    finally:
        session.loopback.close()
        if session.temp_dir is not None:
            shutil.rmtree(session.temp_dir, ignore_errors=True)
        session.started, session.connected, session.temp_dir = False, False, None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True,
                **init_options: Any) -> Iterator[RaySession]:
    """`start_session` for the duration of a block, `stop_session` after it."""
    session = start_session(address, num_cpus, dashboard, **init_options)
    try:
        yield session
    finally:
        stop_session(session)
