"""The report's PNG charts (matplotlib, Agg): one function per chart, each skipped when its benchmark did not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110


def auc_by_model(res: dict[str, Any]) -> plt.Figure | None:
    """Per-task test AUC by model, one panel per dataset, bars with std over seeds."""
    summary = res["summary"]
    if not summary:
        return None
    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4), squeeze=False)
    for ax, (dataset, models) in zip(axes[0], summary.items()):
        names = list(models)
        tasks = [k for k in next(iter(models.values())) if k not in ("parameters", "seconds")]
        width = 0.8 / len(names)
        x = np.arange(len(tasks))
        lows = []
        for i, model in enumerate(names):
            means = [models[model][t]["mean"] for t in tasks]
            stds = [models[model][t]["std"] for t in tasks]
            lows += [m - s for m, s in zip(means, stds)]
            ax.bar(x + (i - (len(names) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=model)
        top = max(models[m][t]["mean"] + models[m][t]["std"] for m in names for t in tasks)
        ax.set_ylim(max(0.0, min(lows) - 0.02), min(1.0, top + 0.01))
        ax.set_xticks(x, tasks)
        ax.set_ylabel("test AUC")
        ax.set_title(f"{dataset}: per-task AUC by model")
        ax.legend(fontsize=7, ncol=3)
    return fig


def _method_label(key: str) -> str:
    backbone, method = key.split("/", 1)
    return method if backbone == "mptrec" else key


def new_task(res: dict[str, Any]) -> plt.Figure | None:
    """New-task AUC against trainable share and against wall time, one point per method (std as error bars)."""
    summary = res["summary"]
    if not summary:
        return None
    fig, axes = plt.subplots(len(summary), 2, figsize=(11, 4 * len(summary)), squeeze=False)
    for row, (dataset, entries) in zip(axes, summary.items()):
        methods = {k: v for k, v in entries.items() if "/" in k}
        for ax, (xkey, xlabel, scale) in zip(row, [("trainable_share", "trainable parameters (% of model)", 100.0),
                                                   ("seconds", "wall time (s, log scale)", 1.0)]):
            for key, e in methods.items():
                ax.errorbar(e[xkey]["mean"] * scale, e["new_auc"]["mean"], xerr=e[xkey]["std"] * scale,
                            yerr=e["new_auc"]["std"], fmt="o", capsize=3, label=_method_label(key))
                ax.annotate(_method_label(key), (e[xkey]["mean"] * scale, e["new_auc"]["mean"]), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("new-task test AUC")
            ax.set_title(f"{dataset}: new-task AUC vs {xlabel.split(' (')[0]}")
            if xkey == "seconds":
                ax.set_xscale("log")
    return fig


def continual(res: dict[str, Any]) -> plt.Figure | None:
    """Per dataset, against the number of additions: the added task's test AUC and the mean change of every older
    task's AUC since it was learned (forgetting), one line per method (std over seeds as error bars)."""
    summary = res["summary"]
    if not summary:
        return None
    fig, axes = plt.subplots(len(summary), 2, figsize=(12, 4 * len(summary)), squeeze=False)
    for row, (dataset, entry) in zip(axes, summary.items()):
        tasks = entry["tasks"]
        x = np.arange(1, len(tasks) + 1)
        for method, steps in entry["methods"].items():
            style = "o-" if method.split(":")[0] in ("cnf", "task_embedding") else "o--"
            row[0].errorbar(x, [s["new_auc"]["mean"] for s in steps], yerr=[s["new_auc"]["std"] for s in steps],
                            fmt=style, capsize=3, label=method)
            row[1].errorbar(x, [s["mean_change"]["mean"] for s in steps],
                            yerr=[s["mean_change"]["std"] for s in steps], fmt=style, capsize=3, label=method)
        row[0].plot(x, [entry["logistic"][t]["mean"] for t in tasks], "k:", label="logistic regression")
        row[1].axhline(0.0, ls=":", c="grey", lw=1)
        for ax, label in zip(row, ["new-task test AUC", "old tasks' mean Δ test AUC since learned"]):
            ax.set_xticks(x, [f"{k}: {t}" for k, t in zip(x, tasks)])
            ax.set_xlabel("addition")
            ax.set_ylabel(label)
            ax.set_title(f"{dataset}: {label} after each addition")
        row[0].legend(fontsize=7, ncol=3)
    return fig


def precision(res: dict[str, Any]) -> plt.Figure:
    """Inference precisions: weight bytes (% of fp32), model examples/s (x fp32 eager), per-task AUC."""
    configs = res["configs"]
    names = list(configs)
    batch = f"b{max(res['batch_sizes'])}"
    base = configs["fp32 eager"]["speed"][batch]["model_eps"]
    colors = ["tab:orange" if n == "int8" else "tab:blue" for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar(names, [100 * configs[n]["bytes_ratio"] for n in names], color=colors)
    axes[0].axhline(35, ls="--", c="grey", lw=1)
    axes[0].set_ylabel("weight bytes (% of fp32)")
    axes[0].set_title("size")
    axes[1].bar(names, [configs[n]["speed"][batch]["model_eps"] / base for n in names], color=colors)
    axes[1].axhline(1.0, ls="--", c="grey", lw=1)
    axes[1].set_ylabel(f"model examples/s at batch {batch[1:]} (x fp32 eager)")
    axes[1].set_title("speed")
    tasks = list(configs["fp32 eager"]["auc"])
    width = 0.8 / len(tasks)
    x = np.arange(len(names))
    values = [configs[n]["auc"][t] for n in names for t in tasks]
    shades = plt.get_cmap("Greens")(np.linspace(0.45, 0.85, len(tasks)))
    for i, t in enumerate(tasks):
        axes[2].bar(x + (i - (len(tasks) - 1) / 2) * width, [configs[n]["auc"][t] for n in names], width, label=t,
                    color=shades[i])
    axes[2].set_ylim(min(values) - 0.01, min(1.0, max(values) + 0.005))
    axes[2].set_xticks(x, names)
    axes[2].set_ylabel("test AUC")
    axes[2].set_title("accuracy")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle("INT8 and the other inference precisions (int8 in orange)")
    return fig


def _lines(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """One line per series over integer x (workers), y from 0."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in series.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
    ax.set_xticks(sorted({p[0] for points in series.values() for p in points}))
    ax.set_xlabel(xlabel)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def workers(res: dict[str, Any]) -> plt.Figure:
    """Training examples/s against the number of workers, one line per sharding type."""
    rows = res["results"]
    single = [(r["workers"], r["examples_per_second"]) for r in rows if r["workers"] == 1]
    kinds = list(dict.fromkeys(r["sharding"] for r in rows if r["workers"] > 1)) or \
        [r["sharding"] for r in rows if r["workers"] == 1]
    series = {kind: single + [(r["workers"], r["examples_per_second"]) for r in rows
                              if r["sharding"] == kind and r["workers"] > 1] for kind in kinds}
    return _lines(series, "workers", "training examples/s", "Throughput vs workers (1 worker: all tables local)")


def scoring_workers(res: dict[str, Any]) -> plt.Figure:
    """Batch-scoring rows/s against the number of workers, one line per (input size, precision)."""
    series = {f"{size['rows']:,} rows, {precision}": [(r["workers_requested"], r["rows_per_s"]) for r in size["runs"]
                                                      if r["precision"] == precision]
              for size in res["sizes"] for precision in dict.fromkeys(r["precision"] for r in size["runs"])}
    return _lines(series, "workers (Ray Data actors)", "rows/s", "Batch scoring throughput vs workers")


CHARTS: dict[str, tuple[Callable[[dict[str, Any]], plt.Figure | None], str]] = {
    "multitask": (auc_by_model, "auc_by_model.png"),
    "new_task": (new_task, "new_task.png"),
    "continual": (continual, "continual.png"),
    "inference": (precision, "precision.png"),
    "scaling": (workers, "throughput_vs_workers.png"),
    "batch_predict": (scoring_workers, "scoring_vs_workers.png"),
}


def draw_all(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Draw every chart whose benchmark finished into out_dir/charts/; {benchmark: path relative to out_dir}."""
    charts = out_dir / "charts"
    charts.mkdir(exist_ok=True)
    drawn = {}
    for bench, (draw, filename) in CHARTS.items():
        entry = results["benchmarks"].get(bench)
        fig = draw(entry["results"]) if entry and entry["status"] == "done" else None
        if fig is not None:
            fig.tight_layout()
            fig.savefig(charts / filename, dpi=DPI)
            plt.close(fig)
            drawn[bench] = f"charts/{filename}"
    return drawn
