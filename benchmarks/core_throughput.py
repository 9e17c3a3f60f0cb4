"""Issue 2 figures: read + clean + encoder windows throughput, padded-tensor conversion rate, and
flat memory when streaming a large file.

    python benchmarks/core_throughput.py [--data ../shared/data/asas_acvs.parquet] [--big-repeats 30]

Writes benchmarks/results/core_throughput.json. Single thread for the per-core figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import torch

from starcurve import clean, read
from starcurve.data.loader import window_tensors
from starcurve.data.windows import windows
from starcurve.files import atomic_json

HERE = Path(__file__).resolve().parent


def best_of(fn, k=3):
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared/data/asas_acvs.parquet"))
    ap.add_argument("--big-repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    out: dict = {
        "data": args.data,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
    }

    n_lc = pq.ParquetFile(args.data).metadata.num_rows
    t_read = best_of(lambda: read(args.data))
    table = read(args.data)
    t_clean = best_of(lambda: clean(table, min_obs=10))
    cleaned, _ = clean(table, min_obs=10)
    t_win = best_of(lambda: window_tensors(cleaned, 200))
    n_win = len(windows(cleaned, 200))
    total = t_read + t_clean + t_win
    out["read_clean_windows"] = {
        "light_curves": n_lc,
        "points": int(pa.compute.list_value_length(table.column("time")).to_numpy().sum()),
        "windows": n_win,
        "seconds": {
            "read": round(t_read, 3),
            "clean": round(t_clean, 3),
            "windows_to_tensors": round(t_win, 3),
        },
        "light_curves_per_second": round(n_lc / total),
    }
    # Arrow list columns -> padded [B, 200] tensors, one light curve = one 200-point window.
    one = cleaned.filter(
        pa.compute.greater_equal(pa.compute.list_value_length(cleaned.column("time")), 200)
    )
    t = best_of(lambda: window_tensors(one, 200, mode="random", rng=np.random.default_rng(0)), 5)
    out["arrow_to_padded_200"] = {
        "light_curves": one.num_rows,
        "seconds": round(t, 4),
        "light_curves_per_second_per_core": round(one.num_rows / t),
    }
    out["peak_rss_mb_in_memory_path"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )

    # Streaming: a file `big_repeats` times larger; `starcurve inspect` must keep memory flat.
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.parquet"
        with pq.ParquetWriter(big, table.schema, compression="zstd") as w:
            for _ in range(args.big_repeats):
                w.write_table(table, row_group_size=4096)
        rss = {}
        for name, path in [("1x", args.data), (f"{args.big_repeats}x", str(big))]:
            code = (
                "import resource,sys; from starcurve.data.inspect import summarise; "
                f"s=summarise({path!r}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss//1024, s['rows'])"
            )
            t0 = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            mb, rows = res.stdout.split()
            rss[name] = {
                "file_mb": round(Path(path).stat().st_size / 2**20),
                "rows": int(rows),
                "in_memory_mb": round(int(rows) / n_lc * table.nbytes / 2**20),
                "peak_rss_mb": int(mb),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        out["streaming_inspect"] = rss
    dest = HERE / "results" / "core_throughput.json"
    dest.parent.mkdir(exist_ok=True)
    atomic_json(out, dest)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
