"""Exact against approximate search: recall@10, query latency and memory at 10^4, 10^5, 10^6 vectors.

Vectors: the shipped model's embeddings of 10,000 simulated ASAS light curves (``simulate('asas',
10_000, seed=7)``, every class); for 10^5 and 10^6, vectors drawn from a 32-component Gaussian
mixture fitted to those embeddings (same dimension, clustered like them), since embedding a million
light curves on 2 cores would take a week. 1,000 queries are drawn from the same mixture (not
indexed). Both indexes are built by ``starcurve.search.build`` (standardised vectors, L2):

- exact: ``IndexFlatL2``; it is also the ground truth of recall@10;
- ivf: ``IndexIVFFlat`` with ``default_nlist(n)`` cells, recall@10 and latency per ``nprobe``.

Latency: one query per call, one thread (median and 95th percentile of 200 calls); throughput: all
1,000 queries in one call. Memory: the serialised index (what ``index.faiss`` holds, and about what
it occupies in memory: 4 bytes per number, plus the cell lists of IVF) and the process's peak resident
memory so far (it includes the vectors themselves, the queries and the previous sizes).

    OMP_NUM_THREADS=1 python benchmarks/search_speed.py   # -> benchmarks/results/search_speed.json, .md
    python benchmarks/search_speed.py --table             # the table of the last run
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from starcurve.eval.fewshot import machine
from starcurve.files import atomic_json

OUT = Path(__file__).resolve().parent / "results" / "search_speed.json"
CACHE = Path(os.environ.get("STARCURVE_CACHE") or "/tmp/starcurve-search-cache")
SIZES = (10**4, 10**5, 10**6)
NPROBES = (1, 4, 8, 16, 32, 64, 128)
N_QUERIES, N_SINGLE, K = 1000, 200, 10


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sim_embeddings() -> np.ndarray:
    path = CACHE / "sim_asas_10000_seed7.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    import torch

    from starcurve import clean, load_model
    from starcurve.data.simulate import simulate

    torch.set_num_threads(1)
    table, _ = clean(simulate("asas", 10_000, seed=7))
    X = load_model().embed_table(table, progress=True)
    X = X[np.isfinite(X).all(1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, X, allow_pickle=False)
    return X


def latency(idx, Z: np.ndarray, nprobe=None) -> dict:
    times = []
    for q in Z[:N_SINGLE]:
        t = time.perf_counter()
        idx.search(q[None], K, nprobe)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    idx.search(Z, K, nprobe)
    batch = time.perf_counter() - t
    ms = 1000 * np.array(times)
    return {
        "p50_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "batch_queries_per_s": round(len(Z) / batch, 1),
    }


def measure(X: np.ndarray, kind: str) -> tuple[object, dict]:
    from starcurve import search as se

    ids = pa.table({"object_id": pa.array(np.arange(len(X)).astype(str)), "band": ["sim"] * len(X)})
    t = time.perf_counter()
    idx = se.build(X, ids, kind=kind, seed=0)
    build_s = time.perf_counter() - t
    size = len(se.faiss().serialize_index(idx.index)) / 2**20
    info = {
        "build_s": round(build_s, 2),
        "index_mb": round(size, 1),
        "process_peak_rss_mb": round(peak_rss_mb()),
    }
    if kind == "ivf":
        info["nlist"] = idx.meta["nlist"]
    return idx, info


def table_md(res: dict) -> str:
    """One row per size: exact, then IVF at the default nprobe and its neighbours."""
    from starcurve.search import NPROBE

    rows = [
        (
            "| vectors | index | build [s] | index [MB] | recall@10 | latency p50 / p95 [ms] | "
            "queries/s (batch) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in res["sizes"].items():
        e = r["exact"]
        rows.append(
            f"| {int(n):,} | exact (Flat) | {e['build_s']} | {e['index_mb']} | 1 | "
            f"{e['p50_ms']} / {e['p95_ms']} | {e['batch_queries_per_s']:,.0f} |"
        )
        i = r["ivf"]
        for p, v in i["nprobe"].items():
            if int(p) in (8, 16, NPROBE, 64):
                mark = " (default)" if int(p) == NPROBE else ""
                rows.append(
                    f"| {int(n):,} | IVF {i['nlist']}, nprobe {p}{mark} | {i['build_s']} | "
                    f"{i['index_mb']} | {v['recall_at_10']} | {v['p50_ms']} / {v['p95_ms']} | "
                    f"{v['batch_queries_per_s']:,.0f} |"
                )
    return "\n".join(rows) + "\n"


def main() -> None:
    import sys

    if "--table" in sys.argv:  # the table of the last run's JSON
        import json

        print(table_md(json.loads(OUT.read_text())))
        return
    from sklearn.mixture import GaussianMixture

    E = sim_embeddings()
    gmm = GaussianMixture(32, covariance_type="full", reg_covar=1e-4, random_state=0).fit(E)
    res = {
        "machine": machine(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
        "dim": int(E.shape[1]),
        "queries": N_QUERIES,
        "k": K,
        "sizes": {},
    }
    for n in SIZES:
        X = E if n == SIZES[0] else gmm.sample(n)[0].astype(np.float32)
        Q = gmm.sample(N_QUERIES)[0].astype(np.float32)
        rng = np.random.default_rng(n)
        X = X[rng.permutation(len(X))]  # the mixture's samples come sorted by component
        exact, e_info = measure(X, "exact")
        Zq = exact.prepare(Q)
        _, truth = exact.search(Zq, K)
        e_info.update(latency(exact, Zq))
        del exact
        ivf, i_info = measure(X, "ivf")
        Zq = ivf.prepare(Q)
        i_info["nprobe"] = {}
        for p in NPROBES:
            if p > ivf.meta["nlist"]:
                continue
            _, got = ivf.search(Zq, K, p)
            recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(got, truth)])
            i_info["nprobe"][p] = {"recall_at_10": round(float(recall), 4), **latency(ivf, Zq, p)}
        del ivf
        res["sizes"][n] = {
            "n": len(X),
            "vectors": "simulated-light-curve embeddings"
            if n == SIZES[0]
            else "Gaussian-mixture samples",
            "exact": e_info,
            "ivf": i_info,
        }
        print(n, res["sizes"][n], flush=True)
        atomic_json(res, OUT)
    OUT.with_suffix(".md").write_text(table_md(res))
    print(table_md(res))
    print(f"wrote {OUT} and {OUT.with_suffix('.md')}")


if __name__ == "__main__":
    main()
