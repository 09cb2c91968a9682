"""The HTTP contract of the prediction service, free of Ray: parse a request body, shape responses.

POST /predict takes a JSON list of row objects (feature -> value) and answers
{"model", "tasks", "predictions": [{task: probability, ...} per row, in order]}. Bad input of any kind
(not JSON, not a list of objects, too many rows, a missing feature, a value of the wrong type) is a DataError
and answers 400 {"error": message, "column", "row"}.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mtrec.errors import DataError

MAX_ROWS = 10_000


def parse_rows(body: bytes, max_rows: int = MAX_ROWS) -> list[dict[str, Any]]:
    """The row objects of a /predict body; DataError for anything that is not a non-empty JSON list of objects."""
    try:
        rows = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"request body is not valid JSON ({exc}); send a JSON list of row objects") from None
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
