"""The Ray Serve deployment: one replica holds a Predictor; requests are validated one by one, then batched.

Each request's rows are validated and encoded on arrival (a DataError answers 400 at once, touching no other
request); `@serve.batch` then gathers the encoded requests that arrive within a few milliseconds and scores
them in one pass of the network. Every exception is turned into a response, so a replica never dies of input.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from mtrec.data.batches import EncodedFrame
from mtrec.errors import DataError
from mtrec.serve.grpc_bind import bind_replica_grpc_to_node_ip
from mtrec.serve.protocol import MAX_REQUEST_BYTES, RequestTooLarge, error_body, parse_rows, predictions, read_body

logger = logging.getLogger("mtrec.serve")


def load_predictor(checkpoint: str) -> tuple[Any, dict[str, Any]]:
    """(Predictor, description) of a checkpoint: a QuantizedModel as saved, a fp32 model through FBGEMM tables."""
    import mtrec
    from mtrec.quant import QuantizedModel

    model = mtrec.load(checkpoint)
    quantized = model if isinstance(model, QuantizedModel) else QuantizedModel.from_model(model, {})
    precisions = sorted(set(quantized.plan.values()))
    info = {"model": quantized.name, "tasks": quantized.tasks, "precisions": precisions,
            "checkpoint": str(checkpoint)}
    return quantized.predictor, info


MAX_BATCH_SIZE = 64  # requests merged into one network pass
BATCH_WAIT_S = 0.002  # how long the first request of a micro-batch waits for others


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=128)
class PredictorServer:
    """GET /health and POST /predict for one checkpoint."""

    def __init__(self, checkpoint: str, threads: int = 1, max_batch_size: int = MAX_BATCH_SIZE,
                 batch_wait_s: float = BATCH_WAIT_S, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        bind_replica_grpc_to_node_ip()
        torch.set_num_threads(threads)
        self.max_request_bytes = max_request_bytes
        self.predictor, self.info = load_predictor(checkpoint)
        self.score.set_max_batch_size(max_batch_size)
        self.score.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def score(self, parts: list[EncodedFrame]) -> list[np.ndarray]:
        """Probabilities of every request in the micro-batch, from one pass of the network."""
        return self.predictor.predict_many(parts)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/") or "/"
        try:
            if path == "/health" and request.method == "GET":
                return JSONResponse({"status": "ok", **self.info})
            if path == "/predict" and request.method == "POST":
                return await self._predict(request)
            return JSONResponse({"error": f"no route {request.method} {path}; use GET /health or POST /predict"},
                                status_code=404)
        except RequestTooLarge as exc:
            return JSONResponse(error_body(exc), status_code=413)
        except DataError as exc:
            return JSONResponse(error_body(exc), status_code=400)
        except Exception as exc:  # a bug, not bad input: answer and keep the replica serving
            logger.exception("prediction failed")
            return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    async def _predict(self, request: Request) -> JSONResponse:
        body = await read_body(request.stream(), self.max_request_bytes, request.headers.get("content-length"))
        rows = parse_rows(body)
        encoded = self.predictor.encode(self.predictor.frame_of_rows(rows))
        probs = await self.score(encoded)
        return JSONResponse({"model": self.info["model"], "tasks": self.info["tasks"],
                             "predictions": predictions(self.info["tasks"], probs)})
