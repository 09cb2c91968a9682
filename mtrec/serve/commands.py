"""`mtrec serve`: the command-line side of mtrec.serve."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mtrec.errors import UsageError
from mtrec.serve.protocol import MAX_REQUEST_BYTES
from mtrec.serve.runner import HOST, PORT, ServiceDown


def add_parser(sub: Any) -> None:
    """Register `mtrec serve` on the CLI's subparsers."""
    p = sub.add_parser("serve", help="serve a checkpoint over HTTP with Ray Serve (POST /predict, GET /health)")
    p.add_argument("--checkpoint", required=True, help="an mtrec checkpoint, fp32 or quantized")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--host", default=HOST, help=f"address the HTTP proxy binds (default {HOST}, loopback)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    p.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES,
                   help=f"largest request body accepted; larger ones are answered 413 (default {MAX_REQUEST_BYTES})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Serve until Ctrl-C; exit 1 when the service goes down underneath (its Ray cluster died)."""
    from mtrec.serve import serve_forever

    for name in ("replicas", "threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        serve_forever(args.checkpoint, replicas=args.replicas, port=args.port, host=args.host, threads=args.threads,
                      max_request_bytes=args.max_request_bytes)
    except ServiceDown as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
