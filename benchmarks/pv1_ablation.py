"""Ablation of the period-aware encoder (views x objectives x readout), FS-1 on eros_lmc R and
asas_acvs V, every row at the same pretraining CPU budget. Runs (or resumes) one FS-1 `embed`
benchmark per (row, dataset) and writes benchmarks/results/pv1_ablation.json and a markdown table.

    STARCURVE_CACHE=runs/cache OMP_NUM_THREADS=1 python benchmarks/pv1_ablation.py \
        --rows benchmarks/pv1_ablation_rows.json --runs runs/fs1

A rows file lists {"name", "model" (folder; null = shipped default), "layers" (null = the model's
readout), "readout" (its description in the table), "views", "objectives", "pretrain_cpu_s",
"command"}. Rows with "fs1" pointing at existing
result folders reuse them (e.g. the sc1 reference rows).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from starcurve.eval import fewshot
from starcurve.files import atomic_json

DATASETS = {"eros_lmc": "R", "asas_acvs": "V"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--runs", default="runs/fs1")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--datasets", default="eros_lmc,asas_acvs")
    ap.add_argument("--out", default="benchmarks/results/pv1_ablation.json")
    ap.add_argument("--no-run", action="store_true", help="Only tabulate existing result folders.")
    args = ap.parse_args()
    rows = json.loads(Path(args.rows).read_text())
    table = []
    for row in rows:
        scores = {}
        for ds in args.datasets.split(","):
            folder = Path(row.get("fs1", {}).get(ds) or Path(args.runs) / f"{row['name']}_{ds}")
            if not (folder / "results.json").exists():
                if args.no_run:
                    continue
                fewshot.run(
                    Path(args.shared) / f"{ds}.parquet",
                    DATASETS[ds],
                    "embed",
                    folder,
                    model=row["model"],
                    layers=row.get("layers"),
                    progress=True,
                    command=f"(benchmarks/pv1_ablation.py row {row['name']})",
                )
            res = json.loads((folder / "results.json").read_text())
            scores[ds] = {
                n: [round(v["f1_mean"], 3), round(v["f1_std"], 3)]
                for n, v in res["results"].items()
            } | {"s_per_lc": round(res["seconds_per_lc"], 4), "folder": str(folder)}
        table.append({**row, "scores": scores})
        atomic_json(table, Path(args.out))
    lines = [
        "| row | views | objectives | readout | pretrain CPU-h | "
        + " | ".join(f"{d} n=20 | n=100 | n=500" for d in args.datasets.split(","))
        + " |",
        "|---|---|---|---|---|" + "---|---|---|" * len(args.datasets.split(",")),
    ]
    for r in table:
        cells = []
        for ds in args.datasets.split(","):
            s = r["scores"].get(ds)
            cells += [
                f"{s[n][0]:.3f} ± {s[n][1]:.3f}" if s else "not run" for n in ("20", "100", "500")
            ]
        cpu = r.get("pretrain_cpu_s")
        readout = r.get("readout") or r.get("layers") or "last layer, mean of states"
        lines.append(
            f"| {r['name']} | {r['views']} | {r['objectives']} | {readout} | "
            + (f"{cpu / 3600:.2f} | " if cpu is not None else "- | ")
        )
        lines[-1] += " | ".join(cells) + " |"
    md = Path(args.out).with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
