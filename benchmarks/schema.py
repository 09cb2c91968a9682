"""Validate a suite's results.json against benchmarks/results_schema.json (JSON Schema 2020-12, via jsonschema).

python -m benchmarks.schema reports/<run>/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).with_name("results_schema.json")


class ResultsError(ValueError):
    """results.json does not match the schema; the message lists every violation with its JSON path."""


def load_schema() -> dict[str, Any]:
    """The schema as a dict."""
    return json.loads(SCHEMA_PATH.read_text())


def errors(results: dict[str, Any]) -> list[str]:
    """Every schema violation as 'path: message' (empty when valid)."""
    validator = Draft202012Validator(load_schema())
    found = sorted(validator.iter_errors(results), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]


def check(results: dict[str, Any]) -> None:
    """Raise ResultsError when `results` does not validate."""
    problems = errors(results)
    if problems:
        raise ResultsError("results.json does not match benchmarks/results_schema.json:\n  " + "\n  ".join(problems))


def main(argv: list[str] | None = None) -> int:
    """Validate each given results.json; exit 1 if any is invalid."""
    paths = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in paths:
        problems = errors(json.loads(Path(path).read_text()))
        print(f"{path}: " + ("valid" if not problems else "INVALID\n  " + "\n  ".join(problems)))
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
