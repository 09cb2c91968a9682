"""Serving: a Ray Serve deployment of a (quantized) model on loopback, `POST /predict` and `GET /health`."""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: node IP = loopback

from mtrec.serve.runner import cluster_temp_dir, serve_forever, start, stop  # noqa: E402

__all__ = ["start", "stop", "serve_forever", "cluster_temp_dir"]
