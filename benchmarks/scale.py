"""Survey-scale figures (issue 13): writes benchmarks/results/scale.json (sections kept and updated).

Sections (``--sections``, comma separated):
- ``throughput``: ``embed`` of simulated ZTF-like light curves with the shipped model: in process,
  Dask with 1 and 2 single-thread workers, and the same through onnxruntime (``starcurve export``);
  objects/s, objects per core-second, the 2-worker / 1-worker ratio, all in one run.
- ``memory``: peak RSS of ``starcurve embed --workers 0`` (one process) for growing inputs.
- ``kill``: a Dask embed killed with SIGKILL (a worker, then the client and its cluster) midway and
  re-run with the same command: same rows and vectors as an uninterrupted run, and only the
  missing partitions computed.
- ``roofline``: matmul GFLOP/s (float32, bfloat16) beside the encoder's windows/s
  (``encoder_speed.embed_speed``), in one run, one thread: the fraction of the roofline. Also the
  ceiling that PyTorch's fused CPU attention kernel sets: that kernel alone at the encoder's shape
  (``attention_seconds``), plus the other matrix products at the matmul rate, is the least time a
  batch can take, whatever else is fused or removed.

Usage: nice -n 15 python benchmarks/scale.py --sections throughput,memory,kill,roofline
       [--n 2000] [--rounds 2] [--memory-sizes 2000,10000,100000] [--kill-n 2000] [--kill-obs 60]
Run with OMP_NUM_THREADS=1 on a shared machine. The machine and its load average are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "scale.json"
sys.path.insert(0, str(HERE))

from encoder_speed import embed_speed, flops_per_window, synthetic_windows

from starcurve.data.io import partitions
from starcurve.data.simulate import write_shards
from starcurve.data.windows import BATCH
from starcurve.files import atomic_json
from starcurve.models.hub import EmbedJob, load_model
from starcurve.parts import run

CLI = [sys.executable, "-m", "starcurve.cli"]


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "")
    flags = next((ln for ln in info if ln.startswith("flags")), "")
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_tile" in flags, "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_before": os.getloadavg()}  # fmt: skip


def sims(folder: Path, n: int, shard: int, n_obs: int | None = None) -> Path:
    write_shards(folder, "ztf", n, seed=13, shard_size=shard, n_obs=n_obs, progress=False)
    return folder


CONFIGS = {  # name: (model: None = the shipped folder, or the ONNX export; Dask workers, 0 = none)
    "torch_in_process": (None, 0), "torch_dask_1_worker": (None, 1),
    "torch_dask_2_workers": (None, 2), "onnx_in_process": ("onnx", 0),
    "onnx_dask_1_worker": ("onnx", 1), "onnx_dask_2_workers": ("onnx", 2),
}  # fmt: skip


def section_throughput(args, res: dict, tmp: Path) -> None:
    """Every configuration ``--rounds`` times, interleaved (the other jobs' load drifts); the best
    round of each is compared (the least disturbed), every round is kept."""
    data = sims(tmp / "tp", args.n, args.chunk)
    parts = partitions(data, rows=args.chunk)
    onnx = tmp / "model.onnx"
    subprocess.run([*CLI, "export", "--output", onnx], check=True)
    layers = load_model().default_layers
    runs = {name: [] for name in CONFIGS}
    for k in range(args.rounds):
        for name, (model, workers) in CONFIGS.items():
            job = EmbedJob(None if model is None else str(onnx), layers, threads=1)
            t0 = time.time()
            out = tmp / f"{name}.parquet"
            s = run(job, parts, out, {"bench": name, "round": k}, workers=workers, threads=1)
            wall = time.time() - t0
            runs[name].append({**s.to_dict(), "wall_s": round(wall, 2),
                               "objects_per_s": round(s.written / wall, 2),
                               "loadavg": os.getloadavg()})  # fmt: skip
            print(name, runs[name][-1], flush=True)
    ref = pq.read_table(tmp / "torch_in_process.parquet")
    diff = np.abs(
        np.array(ref.column("embedding").to_pylist())
        - np.array(pq.read_table(tmp / "onnx_in_process.parquet").column("embedding").to_pylist())
    )
    best = {name: max(r["objects_per_s"] for r in rs) for name, rs in runs.items()}

    def r(a: str, b: str) -> float:
        return round(best[a] / best[b], 3)

    res["throughput"] = {
        "objects": args.n,
        "partitions": len(parts),
        "survey": "ztf (simulated, seed 13)",
        "model": f"shipped {load_model().config.name}",
        "rounds": args.rounds,
        "best_objects_per_s": best,
        "runs": runs,
        "ratio_2_workers_over_1": r("torch_dask_2_workers", "torch_dask_1_worker"),
        "ratio_onnx_over_torch_in_process": r("onnx_in_process", "torch_in_process"),
        "ratio_onnx_2_workers_over_1": r("onnx_dask_2_workers", "onnx_dask_1_worker"),
        "ratio_dask_1_worker_over_in_process": r("torch_dask_1_worker", "torch_in_process"),
        "onnx_max_abs_diff": float(diff.max()),
    }


def peak_rss_mb(cmd: list) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of a command run as a child process."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"{cmd} failed ({status})")
    return usage.ru_maxrss / 1024, time.time() - t0


def section_memory(args, res: dict, tmp: Path) -> None:
    """Peak RSS of one ``starcurve embed`` process per input size (``--memory-model``: None = the
    shipped model; results kept per model under ``memory`` / ``memory_<folder name>``)."""
    key = "memory" if args.memory_model is None else f"memory_{Path(args.memory_model).name}"
    out = res.setdefault(key, {})
    out["note"] = (
        f"ztf sims with n_obs={args.memory_obs}, shards of {args.chunk * 4}, one process, one thread, "
        f"model {args.memory_model or 'shipped ' + load_model().config.name}"
    )
    model = [] if args.memory_model is None else ["--model", args.memory_model]
    for n in (int(x) for x in args.memory_sizes.split(",")):
        data = sims(tmp / f"mem{n}", n, args.chunk * 4, n_obs=args.memory_obs)
        cmd = [*CLI, "embed", *model, "--input", data, "--output", tmp / f"mem{n}.parquet"]
        rss, sec = peak_rss_mb(
            [*cmd, "--workers", "0", "--threads", "1", "--chunk-rows", str(args.chunk)]
        )
        out[str(n)] = {"peak_rss_mb": round(rss, 1), "seconds": round(sec, 1),
                       "objects_per_s": round(n / sec, 1), "loadavg_after": os.getloadavg()}  # fmt: skip
        shutil.rmtree(data)
        print("memory", n, out[str(n)], flush=True)
        atomic_json(res, OUT)


def _done_parts(folder: Path) -> int:
    return len(list(folder.glob("part-*.json"))) if folder.exists() else 0


def _workers(pid: int) -> list[int]:
    """Dask worker processes of a local cluster (spawned children of the client)."""
    import psutil

    return [
        c.pid
        for c in psutil.Process(pid).children(recursive=True)
        if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())
    ]


def section_kill(args, res: dict, tmp: Path) -> None:
    data = sims(tmp / "kill", args.kill_n, args.kill_chunk, n_obs=args.kill_obs)
    n_parts = len(partitions(data, rows=args.kill_chunk))
    base = [
        "embed",
        "--input",
        str(data),
        "--chunk-rows",
        str(args.kill_chunk),
        "--workers",
        "2",
        "--threads",
        "1",
    ]
    ref_out, out = tmp / "ref.parquet", tmp / "killed.parquet"
    t0 = time.time()
    subprocess.run([*CLI, *base, "--output", ref_out], check=True, capture_output=True)
    ref_s = time.time() - t0
    # the interrupted run, in its own process group: the client, its scheduler and its workers
    t0 = time.time()
    proc = subprocess.Popen(
        [*CLI, *base, "--output", out],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = out.with_name(out.name + ".parts")
    killed_worker = None
    while proc.poll() is None:
        done = _done_parts(parts)
        if killed_worker is None and done >= n_parts // 4:
            workers = _workers(proc.pid)
            killed_worker = workers[-1] if workers else -1
            if killed_worker > 0:
                os.kill(killed_worker, signal.SIGKILL)  # one worker dies: Dask reschedules its task
        if done >= n_parts // 2:
            os.killpg(proc.pid, signal.SIGKILL)  # the client and everything it started
            break
        time.sleep(0.2)
    proc.wait()
    killed_s, done_at_kill = time.time() - t0, _done_parts(parts)
    t0 = time.time()
    rerun = subprocess.run(
        [*CLI, *base, "--output", out], check=True, capture_output=True, text=True
    )
    rerun_s = time.time() - t0
    a, b = pq.read_table(ref_out), pq.read_table(out)
    same_rows = a.column("object_id").equals(b.column("object_id"))
    va, vb = (np.array(t.column("embedding").to_pylist()) for t in (a, b))
    summary = next(ln for ln in rerun.stdout.splitlines() if ln.startswith("summary:"))
    res.setdefault("kill", {})[str(args.kill_n)] = {
        "objects": args.kill_n,
        "n_obs": args.kill_obs,
        "partitions": n_parts,
        "uninterrupted_s": round(ref_s, 1),
        "killed_worker_pid": killed_worker,
        "client_killed_after_s": round(killed_s, 1),
        "parts_done_at_kill": done_at_kill,
        "rerun_s": round(rerun_s, 1),
        "rerun_summary": summary,
        "same_rows": bool(same_rows),
        "identical_vectors": bool(np.array_equal(va, vb)),
        "max_abs_diff": float(np.abs(va - vb).max()),
    }
    print("kill", res["kill"][str(args.kill_n)], flush=True)


def matmul_gflops(dtype, n: int = 1024, seconds: float = 1.0, repeats: int = 3) -> float:
    """Sustained n x n matmul GFLOP/s: the best of ``repeats`` loops of about ``seconds`` each."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.2:  # warm-up, and how many calls fill one loop
        torch.mm(a, b)
        calls += 1
    calls = max(1, int(calls * seconds / (time.perf_counter() - t0)))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        best = max(best, calls * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def attention_seconds(cfg, batch: int, dtype, t: int = 200, repeats: int = 5) -> float:
    """Seconds of ``F.scaled_dot_product_attention`` for one batch of full windows through every
    layer, at the encoder's shape and with its key mask (the call ``encoder.Attention`` makes)."""
    q, k, v = (torch.randn(batch, cfg.n_heads, t, cfg.d_model // cfg.n_heads).to(dtype)
               for _ in range(3))  # fmt: skip
    keys = torch.ones(batch, 1, 1, t, dtype=torch.bool)
    att = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys)
    with torch.inference_mode():
        att()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            att()
            best = min(best, time.perf_counter() - t0)
    return best * cfg.n_layers


def section_roofline(args, res: dict, tmp: Path) -> None:
    model = load_model(args.roofline_model).encoder
    w = synthetic_windows(args.windows)
    gflop = flops_per_window(model.config) / 1e9
    out = {"threads": torch.get_num_threads(), "gflop_per_window": round(gflop, 3),
           "windows": args.windows}  # fmt: skip
    for name, dtype, bf16 in (
        ("float32", torch.float32, False),
        ("bfloat16", torch.bfloat16, True),
    ):
        peak = matmul_gflops(dtype)
        sub = w if not bf16 else {k: v[: max(args.windows // 4, 16)] for k, v in w.items()}
        wps, vec = embed_speed(model, sub, BATCH, bf16=bf16)  # the batch size embed uses
        out[name] = {"matmul_gflops": round(peak, 1), "windows_per_s": round(wps, 1),
                     "encoder_gflops": round(wps * gflop, 1),
                     "fraction_of_matmul": round(wps * gflop / peak, 3)}  # fmt: skip
        # the ceiling: the attention kernel as it is, every other matrix product at the matmul rate
        att = attention_seconds(model.config, BATCH, dtype)
        linear_gflop = flops_per_window(model.config, attention=False) / 1e9
        best = BATCH / (att + BATCH * linear_gflop / peak)
        out[name].update(attention_s_per_batch=round(att, 5), ceiling_windows_per_s=round(best, 1),
                         ceiling_fraction_of_matmul=round(best * gflop / peak, 3))  # fmt: skip
        if bf16:
            ref = embed_speed(model, sub, BATCH, repeats=1)[1]
            out[name]["max_abs_diff_vs_float32"] = float(np.abs(vec - ref).max())
        print("roofline", name, out[name], flush=True)
    out["bfloat16_over_float32_windows"] = round(
        out["bfloat16"]["windows_per_s"] / out["float32"]["windows_per_s"], 3
    )
    out["bfloat16_ceiling_over_float32_windows"] = round(
        out["bfloat16"]["ceiling_windows_per_s"] / out["float32"]["windows_per_s"], 3
    )
    out["model"] = args.roofline_model or f"shipped {model.config.name}"
    res[
        "roofline" if args.roofline_model is None else f"roofline_{Path(args.roofline_model).name}"
    ] = out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sections", default="throughput,memory,kill,roofline")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--memory-sizes", default="2000,10000,100000")
    p.add_argument("--memory-obs", type=int, default=60)
    p.add_argument("--memory-model", default=None, help="model folder for --sections memory")
    p.add_argument("--roofline-model", default=None, help="model folder for --sections roofline")
    p.add_argument("--kill-n", type=int, default=2000)
    p.add_argument("--kill-chunk", type=int, default=100)
    p.add_argument("--kill-obs", type=int, default=None, help="n_obs of the kill test's sims")
    p.add_argument("--windows", type=int, default=512)
    args = p.parse_args()
    torch.set_num_threads(1)
    res = json.loads(OUT.read_text()) if OUT.exists() else {}
    res["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections.split(","):
            globals()[f"section_{name}"](args, res, Path(tmp))
            atomic_json(res, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
