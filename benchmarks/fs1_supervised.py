"""FS-1 macro F1 of the end-to-end classifiers (rnn, cnn) next to the feature forest.

Runs (or resumes: finished cells are kept) ``starcurve benchmark --method rnn|cnn`` on asas_acvs (V)
and eros_lmc (R) into ``--runs`` (model folders stay there, outside git), copies each run's
results.json / report.md / plots into ``benchmarks/results/fs1_<method>_<dataset>/``, and draws
F1 against labels per class for rnn, cnn and forest (``benchmarks/results/fs1_forest_<dataset>/``).

    OMP_NUM_THREADS=1 python benchmarks/fs1_supervised.py [--runs runs/fs1]

Writes benchmarks/results/fs1_supervised.json and fs1_supervised.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from starcurve.eval import fewshot as fs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = {"asas_acvs": "V", "eros_lmc": "R"}
METHODS = ("rnn", "cnn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/fs1")
    ap.add_argument("--no-run", action="store_true", help="only collect finished runs")
    ap.add_argument("--only", default=None, help="run only these, e.g. rnn_eros_lmc,cnn_asas_acvs")
    args = ap.parse_args()
    summary = {}
    for ds, band in DATASETS.items():
        for m in METHODS:
            run_dir = Path(args.runs) / f"{m}_{ds}"
            if not args.no_run and (args.only is None or f"{m}_{ds}" in args.only.split(",")):
                cmd = (
                    f"starcurve benchmark --data {DATA / ds}.parquet --band {band} --method {m} "
                    f"--output {run_dir} --n 20,100,500 --folds 3 --seed 0"
                )
                fs.run(DATA / f"{ds}.parquet", band, m, run_dir, command=cmd, progress=False)
            if not (run_dir / "results.json").exists():
                continue
            res = json.loads((run_dir / "results.json").read_text())
            dest = RESULTS / f"fs1_{m}_{ds}"
            dest.mkdir(parents=True, exist_ok=True)
            for f in run_dir.iterdir():
                if f.is_file() and f.suffix in (".json", ".md", ".png") and f.name != "cells.json":
                    shutil.copy2(f, dest / f.name)
            summary[f"{m}_{ds}"] = _row(res)
        forest = RESULTS / f"fs1_forest_{ds}" / "results.json"
        if forest.exists():
            summary[f"forest_{ds}"] = _row(json.loads(forest.read_text()))
    (RESULTS / "fs1_supervised.json").write_text(json.dumps(summary, indent=2))
    plot(summary, RESULTS / "fs1_supervised.png")
    for k, v in summary.items():
        cells = " | ".join(f"{v['f1'][n]:.3f} ± {v['f1_std'][n]:.3f}" for n in v["f1"])
        print(f"| {k} | {cells} | {v['seconds_per_lc']:.4f} |")


def _row(res: dict) -> dict:
    r = res["results"]
    return {
        "f1": {n: r[n]["f1_mean"] for n in r},
        "f1_std": {n: r[n]["f1_std"] for n in r},
        "acc": {n: r[n]["acc_mean"] for n in r},
        "seconds_per_lc": res["seconds_per_lc"],
        "classes": res["classes"],
        "machine": res["machine"],
        "command": res.get("command"),
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x_of(n: str) -> float:  # n = all at the right of 500 (twice the largest n shown)
        return float(n) if n != fs.ALL else 1000.0

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(10, 4), sharey=True)
    for ax, ds in zip(axes, DATASETS):
        for m in ("forest", *METHODS):
            v = summary.get(f"{m}_{ds}")
            if v is None:
                continue
            ns = fs.sort_ns(v["f1"])
            ax.errorbar(
                [x_of(n) for n in ns],
                [v["f1"][n] for n in ns],
                yerr=[v["f1_std"][n] for n in ns],
                marker="o",
                capsize=3,
                label=m,
            )
        ax.set_xscale("log")
        ax.minorticks_off()
        shown = fs.sort_ns(
            {n for m in ("forest", *METHODS) for n in summary.get(f"{m}_{ds}", {}).get("f1", {})}
        )
        ax.set_xticks([x_of(n) for n in shown], shown)
        ax.set_title(f"{ds} ({DATASETS[ds]})")
        ax.set_xlabel("labels per class")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FS-1 macro F1 (3 folds)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
