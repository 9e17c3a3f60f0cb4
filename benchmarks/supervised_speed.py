"""Inference speed of the RNN and CNN classifiers, and how it scales with light-curve length.

1. Throughput (light curves per second, 2 CPU threads) on real light curves: a random sample of
   asas_acvs (V) and eros_lmc (R); clean + model input + forward pass + softmax, as ``predict`` does.
   Weights do not change the cost, so the models are freshly initialised at the published sizes
   (RNN: 2 x GRU 64; the FS-1 budget RNN: 2 x GRU 32; CNN: 64/32 filters, kernel 42, dense 128).
2. Scaling: seconds per light curve against the number of observations (100 ... 10,000) for the
   RNN (whole sequence), the CNN (first 500 points) and feature extraction
   (``starcurve.models.forest.extract_features``: light-curve with the BENCHMARK.md periodogram grid,
   and the numpy fallback), with log-log slopes fitted for N >= 500.

    python benchmarks/supervised_speed.py [--threads 2] [--sample 2000]

Writes benchmarks/results/supervised_speed.json and supervised_speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from starcurve.data.clean import clean
from starcurve.data.io import from_arrays, read
from starcurve.eval.fewshot import machine
from starcurve.train import supervised as sup

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = [f"c{i}" for i in range(9)]
MODELS = {
    "rnn": ("rnn", {}),
    "rnn_fs1": ("rnn", sup.FS1_MODEL["rnn"]),
    "cnn": ("cnn", {}),
}
LENGTHS = [100, 200, 500, 1000, 2000, 5000, 10000]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def classify(model, table: pa.Table) -> None:
    clean_t, _ = clean(table)
    sup.network_proba(model, clean_t)


def synthetic(n_obs: int, count: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = [np.cumsum(rng.exponential(1.0, n_obs)) for _ in range(count)]
    m = [
        15 + 0.3 * np.sin(2 * np.pi * ti / rng.uniform(0.3, 30)) + rng.normal(0, 0.02, n_obs)
        for ti in t
    ]
    return from_arrays(t, m, [np.full(n_obs, 0.02) for _ in range(count)], band="V")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", type=int, default=2000, help="real light curves per dataset")
    ap.add_argument("--batch", type=int, default=32, help="light curves per length (scaling)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        k: sup.build(kind, classes=CLASSES, **opts).eval() for k, (kind, opts) in MODELS.items()
    }
    out = {
        "machine": machine(), "threads": args.threads, "torch": torch.__version__,
        "command": f"python benchmarks/supervised_speed.py --threads {args.threads} "
                   f"--sample {args.sample} --batch {args.batch} --repeats {args.repeats}",
        "load_average_at_start": os.getloadavg(),
        "throughput": {}, "scaling": {"lengths": LENGTHS, "seconds_per_lc": {}, "slope_n_ge_500": {}},
    }  # fmt: skip

    rng = np.random.default_rng(0)
    for name, band in (("asas_acvs", "V"), ("eros_lmc", "R")):
        table = read(DATA / f"{name}.parquet", band=band)
        table = table.take(
            pa.array(
                np.sort(rng.choice(table.num_rows, min(args.sample, table.num_rows), replace=False))
            )
        )
        lens = np.diff(table.column("time").combine_chunks().offsets.to_numpy())
        res = {"light_curves": table.num_rows, "median_obs": float(np.median(lens))}
        for key, model in models.items():
            sec = best_of(lambda m=model, tb=table: classify(m, tb), args.repeats)
            res[key] = {
                "lc_per_second": table.num_rows / sec,
                "seconds_per_lc": sec / table.num_rows,
            }
            print(name, key, f"{table.num_rows / sec:.0f} LC/s", flush=True)
        out["throughput"][name] = res

    from starcurve.models.forest import extract_features, light_curve_available

    extractors = {k: (lambda tb, m=m: classify(m, tb)) for k, m in models.items()}
    backends = (["light-curve"] if light_curve_available() else []) + ["numpy"]
    for b in backends:
        extractors[f"features_{b}"] = lambda tb, b=b: extract_features(
            clean(tb)[0], backend=b, n_jobs=args.threads
        )
    per = {k: [] for k in extractors}
    for n in LENGTHS:
        table = synthetic(n, args.batch, seed=n)
        for k, fn in extractors.items():
            sec = best_of(lambda fn=fn, tb=table: fn(tb), args.repeats) / args.batch
            per[k].append(sec)
            print(f"N={n} {k}: {sec * 1e3:.3f} ms/LC", flush=True)
    sel = np.array(LENGTHS) >= 500
    for k, v in per.items():
        out["scaling"]["seconds_per_lc"][k] = v
        out["scaling"]["slope_n_ge_500"][k] = float(
            np.polyfit(np.log(np.array(LENGTHS)[sel]), np.log(np.array(v)[sel]), 1)[0]
        )
    out["load_average_at_end"] = os.getloadavg()  # the CPU is shared: say how busy it was
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "supervised_speed.json").write_text(json.dumps(out, indent=2))
    plot(out, RESULTS / "supervised_speed.png")
    print(json.dumps(out["scaling"]["slope_n_ge_500"], indent=1))


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    n = np.array(out["scaling"]["lengths"])
    for k, v in out["scaling"]["seconds_per_lc"].items():
        ax.loglog(
            n,
            np.array(v) * 1e3,
            "o-",
            label=f"{k} (slope {out['scaling']['slope_n_ge_500'][k]:.2f})",
        )
    ax.loglog(n, n / n[0] * 0.01, "k:", lw=1, label="slope 1 (linear)")
    ax.set_xlabel("observations per light curve")
    ax.set_ylabel("ms per light curve")
    ax.set_title(f"Inference time vs length ({out['threads']} CPU threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
