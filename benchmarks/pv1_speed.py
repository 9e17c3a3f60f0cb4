"""Embedding cost per light curve of a multi-view model against a reference model, one thread, in one
run (ratios are what to compare across machines): the periodogram view timed on its own, and the
model again under bfloat16 CPU autocast (its speed-up and its accuracy cost: the largest and mean
absolute change of the embedding, relative to the embedding's mean absolute value).

    python benchmarks/pv1_speed.py --model runs/pv1 --data ../shared/data/eros_lmc.parquet --band R

Writes benchmarks/results/pv1_speed.json. No periodogram cache is used (STARCURVE_CACHE unset).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from starcurve import clean, read
from starcurve.data import schema as S
from starcurve.data.views import periods
from starcurve.eval.fewshot import machine
from starcurve.models.hub import DEFAULT_MODEL, load_model, use_bf16


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--reference", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", default="../shared/data/eros_lmc.parquet")
    ap.add_argument("--band", default="R")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/pv1_speed.json")
    args = ap.parse_args()
    os.environ.pop("STARCURVE_CACHE", None)
    torch.set_num_threads(1)
    table = read(args.data, band=args.band)
    table = table.filter(pc.equal(table.column(S.BAND), args.band)).slice(0, args.n)
    table, _ = clean(table)
    n = table.num_rows
    model, ref = load_model(args.model), load_model(args.reference)
    res = {
        "machine": machine(),
        "threads": 1,
        "light_curves": n,
        "data": args.data,
        "band": args.band,
        "model": args.model,
        "reference": args.reference,
        "load_average_before": os.getloadavg()[0],
        "s_per_lc_periodogram": timed(lambda: periods(table), args.repeats) / n,
        "s_per_lc_model_total": timed(lambda: model.embed_table(table), args.repeats) / n,
        "s_per_lc_reference": timed(lambda: ref.embed_table(table), args.repeats) / n,
    }
    # --bf16 (use_bf16: the network under bfloat16 autocast; pays on CPUs with AMX); the
    # periodogram is the same either way
    p = periods(table)
    fp32 = model._view_vectors(table, p, model.default_layers)
    use_bf16(True)
    res["s_per_lc_model_bf16"] = timed(lambda: model.embed_table(table), args.repeats) / n
    res["s_per_lc_reference_bf16"] = timed(lambda: ref.embed_table(table), args.repeats) / n
    bf16 = model._view_vectors(table, p, model.default_layers)
    use_bf16(False)
    diff, scale = np.abs(bf16 - fp32), np.abs(fp32).mean()
    res.update(
        bf16_speedup=res["s_per_lc_model_total"] / res["s_per_lc_model_bf16"],
        bf16_max_abs_diff_rel=float(diff.max() / scale),
        bf16_mean_abs_diff_rel=float(diff.mean() / scale),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        amx=bool(torch.cpu._is_amx_tile_supported()),
        load_average_after=os.getloadavg()[0],
    )
    res["ratio_to_reference"] = res["s_per_lc_model_total"] / res["s_per_lc_reference"]
    res["ratio_to_reference_bf16_vs_float32"] = (
        res["s_per_lc_model_bf16"] / res["s_per_lc_reference"]
    )
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
