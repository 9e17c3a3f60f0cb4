"""Simulator speed and memory: light curves per second, and peak memory of sharded writing.

    python benchmarks/sim_speed.py            # -> benchmarks/results/sim_speed.json

1. ``simulate("asas", 20480, n_obs=500)`` (all 15 classes, 500 points each), best of 3 runs, with 1
   and with 2 threads (blocks of 1024 objects run in parallel threads; results are identical);
   light curves per second of wall-clock time and per CPU second.
2. Every survey with its own calibrated number of points (1 thread), light curves and points per second.
3. ``write_shards`` of 50,000 and of 400,000 ZTF-like light curves (100 points, shards of 50,000), each
   in a fresh subprocess: peak RSS should not grow with the number of objects (flat memory).
The load average is recorded before and after (the machine may be shared).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import starcurve.data.simulate as sim
from starcurve.data import schema as S
from starcurve.files import atomic_json

OUT = Path(__file__).resolve().parent / "results" / "sim_speed.json"


def best_rate(fn, n: int, repeats: int = 3) -> dict:
    """Best wall-clock and CPU-time rates (light curves / s) over ``repeats`` runs.

    CPU time (all threads of this process) is what the work costs; wall time also contains the time
    other jobs on this shared machine held the cores.
    """
    wall, cpu, pts = 0.0, 0.0, 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        table = fn()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        wall, cpu = max(wall, n / dt), max(cpu, n / dc)
        pts = float(S.lengths(table).mean())
    return {"lc_per_s_wall": round(wall), "lc_per_cpu_s": round(cpu), "points_per_lc": pts}


def shard_peak_rss(n: int) -> dict:
    code = f"""
import resource, time, tempfile
from starcurve.data.simulate import write_shards
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    write_shards(d + "/out", "ztf", {n}, seed=0, shard_size=50_000, n_obs=100, progress=False)
    dt = time.perf_counter() - t0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, dt)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, dt = map(float, out.stdout.split())
    return {
        "objects": n,
        "points": n * 100,
        "peak_rss_mb": round(rss, 1),
        "seconds": round(dt, 2),
        "lc_per_s_with_parquet_write": round(n / dt),
    }


def main() -> None:
    sim.simulate("asas", 10, seed=0)  # load the package data once
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU (see the load averages)",
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "block": sim.BLOCK,
    }
    n = 20 * sim.BLOCK
    fixed = {}
    for workers in (1, 2):
        sim.WORKERS = workers
        fixed[f"threads_{workers}"] = r = best_rate(
            lambda: sim.simulate("asas", n, seed=1, n_obs=500), n
        )
        print(
            f"asas, 500 points, {workers} thread(s): {r['lc_per_s_wall']:,} light curves / s "
            f"(wall), {r['lc_per_cpu_s']:,} per CPU second"
        )
    res["asas_500_points_all_classes"] = fixed
    sim.WORKERS = 1
    per_survey = {}
    for survey in sim.surveys():
        m = 8 * sim.BLOCK
        r = best_rate(lambda s=survey, m=m: sim.simulate(s, m, seed=2), m, 2)
        r["points_per_s_wall"] = round(r["lc_per_s_wall"] * r["points_per_lc"])
        per_survey[survey] = r
        print(
            f"{survey}: {r['lc_per_s_wall']:,} light curves / s (wall), {r['lc_per_cpu_s']:,} per "
            f"CPU second, {r['points_per_lc']:.0f} points each (1 thread)"
        )
    res["surveys_own_cadence_1_thread"] = per_survey
    sim.WORKERS = min(4, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory():
        res["sharded_writing_ztf_100_points"] = [shard_peak_rss(50_000), shard_peak_rss(400_000)]
    for r in res["sharded_writing_ztf_100_points"]:
        print(f"write_shards {r['objects']:,}: peak RSS {r['peak_rss_mb']} MB, {r['seconds']} s")
    res["load_average_after"] = os.getloadavg()
    atomic_json(res, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
