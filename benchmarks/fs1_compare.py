"""Two FS-1 runs of the same dataset cell by cell: per-fold differences of macro F1, their mean, and
whether a target gain is met (issue 14: simulator pretraining against training from scratch).

    python benchmarks/fs1_compare.py runs/fs1/cnn_sim_eros/results.json \\
        benchmarks/results/fs1_cnn_eros_lmc/results.json --target 0.10 \\
        --out benchmarks/results/fs1_cnn_sim_eros_lmc/comparison.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from starcurve.files import atomic_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("new", help="results.json of the method under test")
    ap.add_argument("base", help="results.json it is compared with (same dataset, same folds)")
    ap.add_argument("--target", type=float, default=0.10, help="gain to reach in every cell")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    new, base = (json.loads(Path(p).read_text()) for p in (args.new, args.base))
    if (new["dataset"], new["band"]) != (base["dataset"], base["band"]):
        raise SystemExit("the two runs are on different datasets")
    cells = {}
    for n, cell in new["results"].items():
        if n not in base["results"]:
            continue
        a, b = cell["f1_folds"], base["results"][n]["f1_folds"][: len(cell["f1_folds"])]
        diff = [round(x - y, 4) for x, y in zip(a, b)]
        mean = round(sum(diff) / len(diff), 4)
        cells[n] = {
            f"{new['method']}_f1_folds": [round(x, 4) for x in a],
            f"{base['method']}_f1_folds": [round(x, 4) for x in b],
            "difference_folds": diff,
            "difference_mean": mean,
            "target_met": mean >= args.target,
        }
        print(n, cells[n])
    out = {"new": args.new, "base": args.base, "target": args.target,
           "dataset": new["dataset"], "band": new["band"], "cells": cells}  # fmt: skip
    atomic_json(out, Path(args.out))


if __name__ == "__main__":
    main()
