"""Bind a Serve replica's inter-deployment gRPC server to the node's address instead of every interface.

Ray 2.60 starts that server in every replica with `add_port_to_grpc_server(server, "[::]:0")`
(ray/serve/_private/replica.py, `_on_initialized`): a hard-coded wildcard with no Serve option, environment
setting or newer patch release that changes it (upstream moved Ray core's servers from 0.0.0.0 to the node IP, not
this one). Serve's own clients reach a replica at its node IP (127.0.0.1 in mtrec's loopback cluster), so binding
exactly there keeps the service working and stops it listening on other interfaces. The replica looks the helper
up in its module at call time, after the deployment's constructor ran, so rebinding that module attribute from
the constructor takes effect; a test lists every socket the service's processes listen on.
"""

from __future__ import annotations

from typing import Any, Callable

WILDCARD = "[::]:"


def bind_replica_grpc_to_node_ip() -> None:
    """In this replica process, make Serve's `[::]:PORT` gRPC bind use the node's IP (idempotent)."""
    import ray
    from ray.serve._private import replica

    original: Callable[[Any, str], int] = replica.add_port_to_grpc_server
    if getattr(original, "binds_node_ip", False):
        return
    node_ip = ray.util.get_node_ip_address()
    host = f"[{node_ip}]" if ":" in node_ip else node_ip

    def add_port(server: Any, address: str) -> int:
        if address.startswith(WILDCARD):
            address = host + ":" + address[len(WILDCARD):]
        return original(server, address)

    add_port.binds_node_ip = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port
