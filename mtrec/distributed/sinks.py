"""Where a worker loop's checkpoints go: a directory shared by the ranks (one machine), or Ray Train's storage."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch.distributed as dist

LATEST = "latest"
METRICS = "metrics.jsonl"


class CheckpointSink(Protocol):
    """Saves named checkpoints (every rank calls save) and finds the one to resume from."""

    def latest(self) -> contextlib.AbstractContextManager[Path | None]:
        """The last complete checkpoint as a local directory (None for a fresh run)."""

    def save(self, name: str, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        """Collective: every rank's `write(dir)` writes its part of checkpoint `name`; `metrics` go with it."""


class DirectorySink:
    """Checkpoints as subdirectories of one directory every rank can read (single machine or shared disk)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def latest(self) -> Iterator[Path | None]:
        """The checkpoint named by the `latest` pointer (written only after every rank finished writing)."""
        pointer = self.root / LATEST
        yield self.root / pointer.read_text().strip() if pointer.is_file() else None

    def save(self, name: str, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        """Write into root/name, wait for every rank, then move the pointer and log the metrics (rank 0)."""
        write(self.root / name)
        if dist.is_initialized():
            dist.barrier()
        if not dist.is_initialized() or dist.get_rank() == 0:
            tmp = self.root / f".{LATEST}.tmp"
            tmp.write_text(name)
            tmp.replace(self.root / LATEST)
            with open(self.root / METRICS, "a") as fh:
                fh.write(json.dumps({"checkpoint": name, **metrics}) + "\n")

    def path_of(self, name: str) -> Path:
        """Where checkpoint `name` lives."""
        return self.root / name
