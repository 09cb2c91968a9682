"""Checkpoints: a directory with manifest.json (format, versions, recipe, schema, vocabularies, tasks) and weights.pt.

Written to a temporary sibling directory and renamed into place, so a crash never leaves half a checkpoint.
Weights load with `weights_only=True`; a corrupt, truncated or incompatible checkpoint raises CheckpointError.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT = "mtrec-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read: missing, corrupt, truncated or written by an incompatible version."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("mtrec", "torch", "torchrec", "fbgemm-gpu-cpu", "ray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checkpoint(path: str | Path, manifest: dict[str, Any], tensors: dict[str, Any],
                     extra_files: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Atomically write manifest + tensors (+ extra files written by callbacks) as directory `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        torch.save(tensors, tmp / WEIGHTS)
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions(),
                **manifest, "weights_sha256": _sha256(tmp / WEIGHTS)}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, default=str))
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a checkpoint directory, checked for format and version."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST}: not an mtrec checkpoint") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is corrupt ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is not an mtrec manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {manifest.get('format_version')} is not supported "
                              f"(this mtrec reads version {FORMAT_VERSION})")
    return manifest


def read_tensors(path: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Load weights.pt safely (weights_only) after checking its size and hash against the manifest."""
    weights = Path(path) / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is missing")
    expected = manifest.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is corrupt or truncated (checksum mismatch)")
    try:
        return torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors... for damaged files
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} cannot be read ({type(exc).__name__}: {exc})") from exc
