"""Read user data: a DataFrame as it is, or a Parquet/CSV path (a Parquet directory or glob too)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd

from mtrec.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq", ".parquet.brotli", ".parquet.snappy", ".parquet.gz")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")


def read_frame(source: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    """A DataFrame (passed through, not copied) or one read from a Parquet/CSV file, Parquet directory or glob."""
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"expected a DataFrame or a Parquet/CSV path, got {type(source).__name__}")
    path = Path(source)
    text = str(source)
    if any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(glob.glob(text))
        if not files:
            raise DataError(f"no files match {text!r}")
        bad = [f for f in files if not f.lower().endswith(PARQUET_SUFFIXES)]
        if bad:
            raise DataError(f"a glob may only match Parquet files; {bad[0]!r} is not one")
        return pd.concat([_read(Path(f), "parquet") for f in files], ignore_index=True)
    if path.is_dir():
        return _read(path, "parquet")
    if not path.exists():
        raise DataError(f"no such file: {text!r}")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return _read(path, "parquet")
    if name.endswith(CSV_SUFFIXES):
        return _read(path, "csv")
    raise DataError(f"cannot tell the format of {text!r}: use a .parquet/.pq or .csv file, or a Parquet directory")


def _read(path: Path, fmt: str) -> pd.DataFrame:
    """Read one Parquet file/directory or CSV file, turning any reader failure into a DataError."""
    try:
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception as e:  # the readers raise many unrelated types (ArrowInvalid, OSError, ParserError, ...)
        raise DataError(f"cannot read {fmt} data from {str(path)!r}: {type(e).__name__}: {e}") from e

