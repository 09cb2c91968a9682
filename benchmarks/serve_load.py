"""Load test of the prediction service on loopback: N concurrent clients for a fixed time, then the numbers.

Starts `mtrec serve`'s deployment (a local Ray cluster bound to 127.0.0.1) for a checkpoint, runs `--clients`
threads that each POST /predict back to back over a keep-alive connection (rows drawn from the adult test split,
`--rows` per request) for `--duration` seconds, stops the service and reports requests/s, rows/s, latency
percentiles and errors. Without --checkpoint it trains mptrec on adult and quantizes it with the automatic plan.

python -m benchmarks.serve_load [--checkpoint DIR] [--duration 30] [--clients 8] [--rows 1] [--replicas 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import tempfile
import threading
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import mtrec
from benchmarks.common import write_results

LABELS = ("income", "married", "education")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bodies(rows: int, count: int, seed: int) -> list[bytes]:
    """`count` JSON bodies of `rows` adult test rows each."""
    test = mtrec.datasets.load("adult").test.drop(columns=list(LABELS))
    rng = np.random.default_rng(seed)
    records = test.to_dict(orient="records")
    return [json.dumps([records[i] for i in rng.integers(0, len(records), rows)]).encode() for _ in range(count)]


def client(port: int, bodies: list[bytes], stop_at: float, out: list[tuple[float, int]]) -> None:
    """POST bodies back to back until `stop_at`; append (latency seconds, HTTP status or -1 on failure)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while time.perf_counter() < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            out.append((time.perf_counter() - start, resp.status))
        except (OSError, http.client.HTTPException):
            out.append((time.perf_counter() - start, -1))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def run_load(port: int, bodies: list[bytes], clients: int, duration: float) -> dict[str, Any]:
    """Drive the service with `clients` threads for `duration` seconds and summarize."""
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    started = time.perf_counter()
    stop_at = started + duration
    threads = [threading.Thread(target=client, args=(port, bodies[i::clients] or bodies, stop_at, results[i]),
                                daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    with tqdm(total=int(duration), desc="serve load", unit="s") as bar:
        while time.perf_counter() < stop_at:
            time.sleep(1)
            bar.update(1)
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - started
    samples = [s for r in results for s in r]
    ok = np.array([lat for lat, status in samples if status == 200])
    statuses: dict[str, int] = {}
    for _, status in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    pct = (lambda q: float(np.percentile(ok, q) * 1e3)) if len(ok) else (lambda q: float("nan"))
    return {"seconds": elapsed, "requests": len(samples), "ok": int(len(ok)), "errors": len(samples) - len(ok),
            "statuses": statuses, "requests_per_second": len(ok) / elapsed,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "mean_ms": float(ok.mean() * 1e3) if len(ok) else None}


def default_checkpoint(directory: str) -> str:
    """mptrec trained on adult (3 epochs) and quantized with the automatic plan, saved under `directory`."""
    data = mtrec.datasets.load("adult")
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    mtrec.train(model, data.train, valid=data.valid, epochs=3, seed=0, progress=False)
    return str(mtrec.save(mtrec.quantize(model, data.valid, max_auc_drop=0.001), f"{directory}/auto"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the load test and write reports/<out>/serve_load.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="an mtrec checkpoint, fp32 or quantized (default: train + quantize)")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    from mtrec.serve import start, stop

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or default_checkpoint(tmp)
        bodies = request_bodies(args.rows, 512, args.seed)
        port = _free_port()
        try:
            start(checkpoint, replicas=args.replicas, port=port, threads=args.threads)
            run_load(port, bodies[:16], 2, 2.0)
            summary = run_load(port, bodies, args.clients, args.duration)
        finally:
            stop()
    results = {"checkpoint": args.checkpoint or "adult mptrec, automatic plan", "clients": args.clients,
               "rows_per_request": args.rows, "replicas": args.replicas, "threads_per_replica": args.threads,
               "duration_s": args.duration, **summary, "rows_per_second": summary["requests_per_second"] * args.rows}
    md = "\n".join([
        "# Serving load test (loopback, Ray Serve)", "",
        f"{args.clients} concurrent clients, {args.rows} row(s) per request, {args.replicas} replica(s) x "
        f"{args.threads} thread(s), {args.duration:.0f} s after a 2 s warm-up.", "",
        "| requests/s | rows/s | p50 ms | p95 ms | p99 ms | requests | errors |", "|---|---|---|---|---|---|---|",
        f"| {results['requests_per_second']:.1f} | {results['rows_per_second']:.1f} | {results['p50_ms']:.1f} | "
        f"{results['p95_ms']:.1f} | {results['p99_ms']:.1f} | {results['requests']} | {results['errors']} |", ""])
    write_results(args.out, "serve_load", results, md)
    return results


if __name__ == "__main__":
    main()
