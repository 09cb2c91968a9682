"""Where a worker computes and how ranks meet: CUDA + nccl when a GPU is there, else CPU + gloo.

On one machine ranks rendezvous through a FileStore and gloo is pinned to the loopback interface, so nothing
listens beyond 127.0.0.1 (a TCPStore listens on every interface). Across machines the caller uses TCP instead.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

LOOPBACK_INTERFACE = "lo"


def pick_device(local_rank: int = 0, use_gpu: bool | None = None) -> torch.device:
    """cuda:<local_rank> when GPUs are used (default: when present), else cpu."""
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("use_gpu=True but this worker sees no CUDA device")
    if use_gpu:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def backend_for(device: torch.device) -> str:
    """The collective backend for a device: nccl for CUDA, gloo for CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def pin_gloo_to_loopback() -> None:
    """Make gloo bind its sockets to 127.0.0.1 unless the user chose an interface."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", LOOPBACK_INTERFACE)


def init_local_process_group(store_file: str | Path, rank: int, world_size: int, backend: str = "gloo",
                             timeout_s: float = 600.0) -> dist.ProcessGroup:
    """Join a single-machine process group through a FileStore (no TCP listener); returns the default group."""
    if backend == "gloo":
        pin_gloo_to_loopback()
    store = dist.FileStore(str(store_file), world_size)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    return dist.group.WORLD


def destroy_process_group() -> None:
    """Leave the default process group if one is initialized."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def local_process_group(store_file: str | Path, rank: int, world_size: int, backend: str = "gloo",
                        timeout_s: float = 600.0) -> Iterator[dist.ProcessGroup]:
    """Be in a single-machine process group for the body. After a body that raised nothing, every rank meets at a
    barrier before leaving: a rank that closes its gloo sockets while a peer still reads from them aborts the peer
    (SIGABRT from gloo's event loop), so nobody leaves before everyone is done."""
    group = init_local_process_group(store_file, rank, world_size, backend, timeout_s)
    try:
        yield group
        if world_size > 1:
            dist.barrier()
    finally:
        destroy_process_group()


class _DropTBEChatter(logging.Filter):
    """Drops FBGEMM TBE's informational records (their messages start with "[TBE=")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and str(record.msg).startswith("[TBE="))


def quiet_worker_logs() -> None:
    """Silence library chatter that repeats on every rank and step (deprecation notices, per-table info)."""
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated", category=FutureWarning)
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    # FBGEMM's TBE logs its constructor arguments through the root logger, ~10 lines per table group and rank.
    root = logging.getLogger()
    if not any(isinstance(f, _DropTBEChatter) for f in root.filters):
        root.addFilter(_DropTBEChatter())
    # The replicated (data_parallel) tables' dense TBE op has no registered autograd kernel; its gradients are
    # checked against the unsharded model in tests/mtrec/test_distributed_equivalence.py.
    warnings.filterwarnings("ignore", message=r"fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel")
