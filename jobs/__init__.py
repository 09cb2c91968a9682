"""Thin Ray job entrypoints over the mtrec API: `python -m jobs.<name> --config FILE` locally, or
`ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.<name> --config FILE`.

Each job's `--config` is a YAML/JSON mapping of its options (jobs.train: the model recipe itself, with an optional
`distributed:` section); flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; keys of the `--config` file become defaults first (unknown keys are an error naming them)."""
    from pretrain_stack.config import read_file

    known, _ = parser.parse_known_args(argv)
    if getattr(known, "config", None):
        values = read_file(known.config)
        dests = {a.dest for a in parser._actions}
        unknown = sorted(k for k in values if k.replace("-", "_") not in dests)
        if unknown:
            parser.error(f"{known.config}: unknown option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(d for d in dests if d != 'help'))})")
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
    return parser.parse_args(argv)


@contextlib.contextmanager
def user_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """A user's mistake (mtrec.workflows.user_error_types) ends the job like a parser error: one line, exit 2."""
    from mtrec.workflows import user_error_types

    try:
        yield
    except user_error_types() as exc:
        parser.error(str(exc))
