"""Build report.md, report.html and charts/ of a suite run from its results.json.

python -m benchmarks.report reports/<run>            # rebuild the report of a finished (or partial) run
python -m benchmarks.report reports/<run> --headline # print the headline table (Markdown) for the README
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.charts import draw_all
from benchmarks.document import Block, Bullets, Heading, Image, Key, Para, Table, to_html, to_markdown
from benchmarks.sections import SECTIONS, generic, multitask_table

TITLES = {"multitask": "Multi-task models: per-task test AUC", "new_task": "Adding a task: methods compared",
          "throughput": "Training throughput", "time_to_quality": "Time to quality (adult)", "inference": "Inference precisions (INT8 and friends)",
          "scaling": "Distributed scaling", "serve_load": "Serving under load",
          "batch_predict": "Batch scoring on Ray Data", "ingest": "Training on files bigger than memory"}
CHART_ALT = {"multitask": "per-task AUC by model and dataset",
             "new_task": "new-task AUC vs trainable share and vs wall time, one point per method",
             "continual": "new-task AUC and the older tasks' AUC change after each addition, one line per method",
             "inference": "INT8 size, speed and AUC against the other precisions",
             "scaling": "training throughput vs workers",
             "batch_predict": "batch-scoring throughput vs workers"}


def headline(results: dict[str, Any]) -> Table | None:
    """The headline table: per-task test AUC of every model on the first dataset of the multitask benchmark."""
    bench = results["benchmarks"].get("multitask")
    if not bench or bench["status"] != "done" or not bench["results"]["summary"]:
        return None
    return multitask_table(next(iter(bench["results"]["summary"].values())))


def setup(results: dict[str, Any]) -> list[Block]:
    """Where, when and how the numbers were made."""
    env, suite = results["environment"], results["suite"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    dirty = " (with uncommitted changes)" if env.get("git_dirty") else ""
    loads = [x for b in results["benchmarks"].values() for x in b.get("load_average", [])]
    busy = [f"**the machine was busy**: the 1-minute load average reached {max(loads):.1f} on {env['cpu_count']} "
            "cores during the run, so times and speeds are inflated and their ratios noisy; AUCs are unaffected"] \
        if loads and env["cpu_count"] and max(loads) > 1.25 * env["cpu_count"] else []
    commits = {n: b["environment"]["git_commit"][:12] for n, b in results["benchmarks"].items() if b["environment"]}
    mixed = ["**benchmarks ran at different commits**: " + ", ".join(f"{n} `{c}`" for n, c in commits.items())] \
        if len(set(commits.values())) > 1 else []
    return [Bullets(busy + mixed + [f"profile `{suite['profile']}`: {suite['profile_description']}",
                     f"git commit `{env['git_commit'][:12]}`{dirty}; started {suite['created']}, finished "
                     f"{suite['finished']}; {suite['wall_seconds'] / 60:.1f} min of benchmark wall time over "
                     f"{suite['attempts']} attempt(s)",
                     f"CPU {env['cpu']}, {env['cpu_count']} logical cores, torch threads {env['torch_threads']}, "
                     f"OMP_NUM_THREADS {env.get('omp_num_threads') or 'unset'}",
                     f"versions: {versions}",
                     "tables: mean ± std over the seeds listed below (population std; with one seed std is 0); "
                     "**bold** marks the best value of each column (highest AUC or speed, lowest size or time)"])]


def runs_table(results: dict[str, Any]) -> Table:
    """One row per benchmark: status, time, seeds, config hash, arguments."""
    rows = [[name, b["status"], f"{b['seconds']:.0f}",
             " → ".join(f"{x:.1f}" for x in b["load_average"]) if "load_average" in b else "–",
             " ".join(map(str, b["seeds"])), f"`{b['config_hash']}`", f"`{' '.join(b['argv']) or '(defaults)'}`"]
            for name, b in results["benchmarks"].items()]
    return Table(["benchmark", "status", "seconds", "load before → after", "seeds", "config hash", "arguments"],
                 rows, [None] * 7)


def blocks(results: dict[str, Any], charts: dict[str, str]) -> list[Block]:
    """The whole report as blocks."""
    suite = results["suite"]
    out: list[Block] = [Heading(f"mtrec benchmark report ({suite['profile']} profile)", 1), *setup(results)]
    top = headline(results)
    if top is not None:
        dataset = next(iter(results["benchmarks"]["multitask"]["results"]["summary"]))
        out += [Heading(f"Headline: {dataset}, per-task test AUC", 2), top]
    body: list[Block] = []
    for name, bench in results["benchmarks"].items():
        body.append(Heading(TITLES.get(name, f"{name} ({bench['module']})"), 2))
        if bench["status"] != "done":
            body.append(Para(f"Not finished (exit {bench.get('returncode')}); see parts/{name}.log and rerun with "
                             f"`mtrec bench --resume <this run>`."))
            continue
        body += SECTIONS.get(name, generic)(bench["results"])
        if name in charts:
            body.append(Image(charts[name], CHART_ALT[name]))
    keys = [b.text for b in body if isinstance(b, Key)]
    if keys:
        out += [Heading("Key findings", 2), Bullets(keys)]
    return out + [Heading("Benchmarks run", 2), runs_table(results), *body]


def write_report(run_dir: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Draw the charts and write report.md and report.html (images inlined) into run_dir."""
    charts = draw_all(results, run_dir)
    doc = blocks(results, charts)
    md, page = run_dir / "report.md", run_dir / "report.html"
    md.write_text(to_markdown(doc))
    page.write_text(to_html(doc, f"mtrec benchmark report ({results['suite']['profile']})", run_dir))
    return md, page


def main(argv: list[str] | None = None) -> int:
    """Rebuild a run's report from its results.json, or print its headline table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--headline", action="store_true", help="print the headline table as Markdown and exit")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    if args.headline:
        top = headline(results)
        print(to_markdown([top]) if top is not None else "no multitask results in this run")
        return 0
    md, page = write_report(run_dir, results)
    print(f"wrote {md} and {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
