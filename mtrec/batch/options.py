"""Batch scoring's choices and defaults, named once: the driver, the scorer, `mtrec predict` and jobs.predict
read them (nothing here loads torch, so an argument parser can use them)."""

from __future__ import annotations

from mtrec.data.stream import BAD_ROWS

PRECISIONS = ("auto", "fp32", "fp16", "int8", "int4")
BATCH_SIZE = 8192
WORKERS = 1
PRECISION = "auto"
ON_BAD_ROWS = "fail"

__all__ = ["BAD_ROWS", "BATCH_SIZE", "ON_BAD_ROWS", "PRECISION", "PRECISIONS", "WORKERS"]
