"""A scikit-learn Pipeline (Embedder + the FS-1 MLP probe) against the FS-1 ``embed`` cells.

    python benchmarks/pipeline_fs1.py --results runs/repro/embed_eros [--data ../shared/data/eros_lmc.parquet --band R]

For each (fold, n) cell of an FS-1 ``embed`` run of the shipped model (``starcurve benchmark --method
embed``, results in ``--results``), fits ``make_pipeline(Embedder(), MLP probe)`` on the cell's training
light curves and predicts the test light curves, then compares its macro F1 with the cell's. Writes
benchmarks/results/pipeline_fs1.json. Run it with the same thread count as the benchmark (the MLP
probe's BLAS depends on it at the 0.01 level).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.pipeline import make_pipeline

from starcurve.eval import fewshot as fs
from starcurve.files import atomic_json
from starcurve.models.estimators import Embedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="runs/repro/embed_eros")
    ap.add_argument("--data", default="../shared/data/eros_lmc.parquet")
    ap.add_argument("--band", default="R")
    ap.add_argument("--ns", default="20,100")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--output", default="benchmarks/results/pipeline_fs1.json")
    args = ap.parse_args()
    cells = json.loads((Path(args.results) / "cells.json").read_text())["cells"]
    data = fs.prepare(args.data, args.band)
    test = data.table.filter(pa.array(data.test))
    rows_out = []
    for f in range(args.folds):
        for n in (int(x) for x in args.ns.split(",")):
            rows = np.sort(data.rows(fs.training_ids(data, f, n)))
            pipe = make_pipeline(Embedder(min_obs=fs.FS1_MIN_OBS), fs.PROBES["mlp"](f))
            pipe.fit(data.table.take(pa.array(rows)), data.labels[rows])
            f1 = fs._score(data.labels[data.test], pipe.predict(test), data.classes)["f1"]
            fs1 = cells[f"f{f}_n{n}"]["f1"]
            rows_out.append(
                {"fold": f, "n": n, "pipeline_f1": f1, "fs1_f1": fs1, "equal": f1 == fs1}
            )
            print(rows_out[-1])
    atomic_json(
        {
            "data": args.data,
            "band": args.band,
            "results": args.results,
            "machine": fs.machine(),
            "cells": rows_out,
            "all_equal": all(r["equal"] for r in rows_out),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
