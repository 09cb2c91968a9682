"""The HTTP contract of the prediction service, free of Ray: parse a request body, shape responses.

POST /predict takes a JSON list of row objects (feature -> value) and answers
{"model", "tasks", "predictions": [{task: probability, ...} per row, in order]}. Bad input of any kind
(not JSON, JSON nested too deeply, not a list of objects, too many rows, a missing feature, a value of the wrong
type) is a DataError and answers 400 {"error": message, "column", "row"}; a body above the size limit answers 413
as soon as its declared length or the bytes read so far pass it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from mtrec.errors import DataError

MAX_ROWS = 10_000
MAX_REQUEST_BYTES = 8 * 2**20  # 10,000 rows of a few hundred bytes each fit


class RequestTooLarge(DataError):
    """A request body above the service's size limit (answered 413, Payload Too Large)."""


async def read_body(chunks: AsyncIterator[bytes], limit: int = MAX_REQUEST_BYTES, declared: str | None = None
                    ) -> bytes:
    """A request body read chunk by chunk, refused (RequestTooLarge) once its declared Content-Length or the bytes
    received pass `limit`, so an oversized body is never held whole."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {int(declared)} bytes is above the limit of {limit} bytes; "
                              f"split the request")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"request body is above the limit of {limit} bytes; split the request")
    return bytes(body)


def parse_rows(body: bytes, max_rows: int = MAX_ROWS) -> list[dict[str, Any]]:
    """The row objects of a /predict body; DataError for anything that is not a non-empty JSON list of objects."""
    try:
        rows = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"request body is not valid JSON ({exc}); send a JSON list of row objects") from None
    except RecursionError:
        raise DataError("request body is JSON nested too deeply; send a JSON list of flat row objects") from None
    if not isinstance(rows, list) or not rows:
        kind = "an empty list" if rows == [] else f"a JSON {type(rows).__name__}"
        raise DataError(f"expected a non-empty JSON list of row objects, got {kind}")
    if len(rows) > max_rows:
        raise DataError(f"{len(rows)} rows in one request; at most {max_rows} are accepted, split the request")
    return rows


def predictions(tasks: list[str], probs: np.ndarray) -> list[dict[str, float]]:
    """One {task: probability} object per row."""
    return [dict(zip(tasks, map(float, row))) for row in probs]


def error_body(exc: DataError) -> dict[str, Any]:
    """The 400 body of a DataError: its message plus the column and row it names."""
    row = exc.row.item() if isinstance(exc.row, np.generic) else exc.row
    return {"error": str(exc), "column": exc.column, "row": row if isinstance(row, (int, str, float)) else None}
