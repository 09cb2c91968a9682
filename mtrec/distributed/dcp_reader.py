"""Reading torch.distributed.checkpoint (DCP) directories without executing anything they contain.

DCP itself unpickles `.metadata` with plain `pickle.load` and loads non-tensor items with `weights_only=False`, so a
crafted checkpoint runs code on load. Here `.metadata` goes through an unpickler that admits only DCP's metadata
dataclasses and the torch/builtin values they hold (anything else is refused before it is constructed), non-tensor
items load with `weights_only=True`, and `.metadata` and every data file it references are checked against the
sha256 the manifest lists before a byte of them is parsed. We keep DCP's format (resharding on load, Ray Train's
per-rank merging) rather than writing a second, weights_only copy of every sharded checkpoint.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint._traverse import set_element

from mtrec.checkpoint import CheckpointError, verified_file

DCP_METADATA = ".metadata"

_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    *((_METADATA_MODULE, name) for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorStorageMetadata", "BytesStorageMetadata",
        "ChunkStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING")),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a dict lookup of torch.layout constants by name
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
}
_TORCH_VALUES = (torch.dtype, torch.layout, torch.memory_format)


class _MetadataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only DCP metadata types and torch dtype/layout constants."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), _TORCH_VALUES):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a DCP metadata type")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not part of DCP metadata")


def read_metadata(file: Path) -> Metadata:
    """A DCP `.metadata` file parsed by the restricted unpickler; CheckpointError for anything else in it."""
    try:
        with open(file, "rb") as fh:
            metadata = _MetadataUnpickler(fh).load()
    except Exception as exc:  # UnpicklingError for refused types; EOFError, ValueError... for damaged files
        raise CheckpointError(f"sharded checkpoint {file.parent}: {file.name} is not DCP metadata ({exc})") from exc
    if not isinstance(metadata, Metadata) or not isinstance(metadata.storage_data, dict):
        raise CheckpointError(f"sharded checkpoint {file.parent}: {file.name} is not DCP metadata "
                              f"(holds {type(metadata).__name__})")
    return metadata


def verified_metadata(path: str | Path, manifest: dict[str, Any]) -> Metadata:
    """The checkpoint's DCP metadata, after `.metadata` and every data file it references were checked against the
    manifest's sha256 (CheckpointError naming the first file that is unlisted, missing or altered)."""
    metadata = read_metadata(verified_file(path, manifest, DCP_METADATA))
    for relative in sorted({getattr(info, "relative_path", None) for info in metadata.storage_data.values()}):
        if not isinstance(relative, str) or Path(relative).name != relative:
            raise CheckpointError(f"sharded checkpoint {path}: {DCP_METADATA} references a file outside the "
                                  f"checkpoint ({relative!r})")
        verified_file(path, manifest, relative)
    return metadata


class _VerifiedReader(dcp.FileSystemReader):
    """A FileSystemReader that hands DCP metadata verified in advance (never DCP's own pickle.load)."""

    def __init__(self, path: str | Path, metadata: Metadata) -> None:
        super().__init__(path)
        self._metadata = metadata

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:
            raise CheckpointError("per-rank DCP metadata is not read")
        if self._metadata.storage_meta is None:
            self._metadata.storage_meta = StorageMeta()
        self._metadata.storage_meta.load_id = self.load_id
        return self._metadata


class _WeightsOnlyPlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that non-tensor items load with `weights_only=True`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def safe_load(state: dict[str, Any], path: str | Path, manifest: dict[str, Any], no_dist: bool = False) -> None:
    """dcp.load of `state` (in place) from checkpoint `path`, verified against `manifest` first and parsing nothing
    but restricted metadata and weights_only items; every failure is a one-line CheckpointError."""
    metadata = verified_metadata(path, manifest)
    try:
        dcp.load(state, storage_reader=_VerifiedReader(path, metadata), planner=_WeightsOnlyPlanner(),
                 no_dist=no_dist)
    except (Exception, CheckpointException) as exc:  # CheckpointException is a BaseException with per-rank causes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"sharded checkpoint {path} does not fit this model ({type(exc).__name__}: {first})"
                              ) from exc
