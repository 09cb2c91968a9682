"""The one Ray session starter: an embedded node listens on loopback only and goes away with its directory; a
Ray this process already runs is used as it is and left up."""

from __future__ import annotations

import os
import time

import ray
from test_distributed_training import _is_loopback, _our_listeners, _ray_processes

from mtrec.ray_session import RaySession, start_session, stop_session


def test_embedded_session_listens_on_loopback_only_and_leaves_nothing():
    session = start_session(num_cpus=1, dashboard=True)
    try:
        assert session.started and not session.connected and os.path.isdir(session.temp_dir)
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        listening = _our_listeners()
        assert listening and all(_is_loopback(addr) for addr in listening), listening
        inner = start_session()  # Ray is up already: use it, and leave it up
        assert inner == RaySession()
        stop_session(inner)
        assert ray.is_initialized()
    finally:
        temp_dir = session.temp_dir
        stop_session(session)
    assert not ray.is_initialized() and not os.path.exists(temp_dir)
    deadline = time.time() + 30
    while _ray_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_processes() and not _our_listeners()
