"""Cost per added observation of the RNN update, against re-running the network and recomputing the
features of the light curve (issue 14: new observations, "at least 100x below the features").

1. A small RNN (the ``starcurve train rnn`` default network: 2 x GRU 64) is trained quickly on
   labeled light curves: eros_lmc R from ``../shared/data`` (the source's train split, 100 per
   class) if it is there, else simulated ASAS light curves (``NetworkClassifier.fit_table``,
   ``--steps`` steps). Weights hardly change the costs measured; they only make the answers real.
2. ``--n`` light curves (eros_lmc R test split, at least 40 points; else simulated) are cleaned; for
   k = 1 and 10, each light curve's first N - k points become its stored state and its last k points
   are added, timed (best of ``--repeats``):
   (a) seconds per added point, three ways: the public path ``NetworkClassifier.update(table of new
       points, state_dir)`` (cleaning the new points, reading and writing each object's state file);
       ``RNNClassifier.update(state, new_obs)`` in memory (the state held by the caller; the new
       points are cleaned); ``RNNClassifier.advance`` (already clean points: the network's own cost);
   (b) seconds per light curve to re-run the network on the whole light curve (``network_proba``:
       all light curves in one call, and one light curve per call);
   (c) seconds per light curve to recompute the 35 light-curve features
       (``starcurve.models.forest.extract_features``: light-curve if installed, else numpy; one job).
   The ratios (c)/(a) and (b)/(a) are reported for every (a); the update's answers are checked
   against the network on the whole light curves (largest difference in the JSON).

    OMP_NUM_THREADS=1 python benchmarks/rnn_update.py [--n 200] [--steps 300]

One thread throughout. Writes benchmarks/results/rnn_update.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from starcurve.data import schema as S
from starcurve.data.clean import clean
from starcurve.data.io import from_arrays, read
from starcurve.eval.fewshot import machine
from starcurve.models.estimators import NetworkClassifier
from starcurve.models.forest import extract_features, light_curve_available
from starcurve.train.supervised import FitConfig, network_proba

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
KS = (1, 10)


def best_of(fn, repeats: int, setup=None) -> float:
    """The smallest wall time of ``fn()`` over ``repeats`` runs (``setup()`` before each, untimed)."""
    times = []
    for _ in range(repeats):
        args = (setup(),) if setup else ()
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def datasets(n: int, per_class: int) -> tuple[pa.Table, np.ndarray, pa.Table, str]:
    """(training table, labels, benchmark light curves (clean), where they come from)."""
    path = DATA / "eros_lmc.parquet"
    if path.exists():
        table, _ = clean(read(path, band="R"))
        split = np.asarray(table.column(S.SPLIT).to_pylist(), dtype=object)
        labels = np.asarray(table.column(S.LABEL).to_pylist(), dtype=object)
        rng = np.random.default_rng(0)
        train = []
        for c in sorted(set(labels[split == "train"])):
            rows = np.flatnonzero((split == "train") & (labels == c))
            train += rng.choice(rows, min(per_class, len(rows)), replace=False).tolist()
        test = np.flatnonzero((split == "test") & (S.lengths(table) >= 40))
        test = np.sort(rng.choice(test, min(n, len(test)), replace=False))
        source = f"eros_lmc.parquet band R (train split: {len(train)} for training; test split: {len(test)})"
        return table.take(pa.array(train)), labels[train], table.take(pa.array(test)), source
    from starcurve.data.simulate import ASAS_CLASSES, simulate

    train = clean(simulate("asas", per_class * len(ASAS_CLASSES), ASAS_CLASSES, seed=1))[0]
    bench = clean(simulate("asas", 2 * n, ASAS_CLASSES, seed=2))[0]
    bench = bench.filter(pa.array(S.lengths(bench) >= 40)).slice(0, n)
    labels = np.asarray(train.column(S.LABEL).to_pylist(), dtype=object)
    return train, labels, bench, "simulated asas (no ../shared/data)"


def split_last(table: pa.Table, k: int) -> tuple[pa.Table, pa.Table]:
    """(every point but the last k, the last k points) of each light curve of a clean table."""
    t, off = S.flat(table, S.TIME)
    m, e = S.flat(table, S.MAG)[0], S.flat(table, S.ERR)[0]
    ids = table.column(S.ID).to_pylist()
    band = table.column(S.BAND)[0].as_py()
    cut = off[1:] - k
    head = [slice(a, b) for a, b in zip(off[:-1], cut)]
    tail = [slice(a, b) for a, b in zip(cut, off[1:])]

    def build(parts):
        return from_arrays([t[s] for s in parts], [m[s] for s in parts], [e[s] for s in parts],
                           ids=ids, band=band)  # fmt: skip

    return build(head), build(tail)


def measure(est, bench, k, work, repeats, recompute, full_proba) -> dict:
    """Timings of adding the last ``k`` points of each light curve of ``bench`` to its state."""
    net, n = est.net_, bench.num_rows
    head, tail = split_last(bench, k)
    t_tail, off = S.flat(tail, S.TIME)
    m_tail, e_tail = S.flat(tail, S.MAG)[0], S.flat(tail, S.ERR)[0]
    new_points = [(t_tail[a:b], m_tail[a:b], e_tail[a:b]) for a, b in itertools.pairwise(off)]
    t_head, hoff = S.flat(head, S.TIME)
    m_head, e_head = S.flat(head, S.MAG)[0], S.flat(head, S.ERR)[0]
    states = [
        net.advance(net.init_state(), t_head[a:b], m_head[a:b], e_head[a:b])
        for a, b in itertools.pairwise(hoff)
    ]
    pairs = list(zip(states, new_points))
    # in memory: RNNClassifier.update (cleans the new points) and advance (already clean)
    memory_update = best_of(lambda: [net.update(s, p) for s, p in pairs], repeats)
    memory_advance = best_of(lambda: [net.advance(s, *p) for s, p in pairs], repeats)
    # the public path: a folder of state files, one per light curve, read and written
    counter = itertools.count()

    def fresh_states():
        folder = work / f"states_k{k}_{next(counter)}"
        est.update(head, folder)  # the first N - k points, untimed
        return folder

    public = best_of(lambda folder: est.update(tail, folder), repeats, fresh_states)
    folder = fresh_states()
    answers = est.update(tail, folder)
    state_bytes = [p.stat().st_size for p in folder.rglob("*.safetensors")]
    memory_proba = np.stack([net.update(s, p).proba for s, p in pairs])
    per_point = {
        "public_update": public / (n * k),
        "memory_update": memory_update / (n * k),
        "memory_advance": memory_advance / (n * k),
    }
    features, rerun_single = recompute["features"], recompute["rerun_single"]
    return {
        "added_points_per_light_curve": k,
        "update_seconds_per_added_point": per_point,
        "features_over_update": {w: features / s for w, s in per_point.items()},
        "rerun_network_over_update": {w: rerun_single / s for w, s in per_point.items()},
        "rerun_network_batched_over_update": {
            w: recompute["rerun_batch"] / s for w, s in per_point.items()
        },
        "features_per_added_point_over_update": {w: features / k / s for w, s in per_point.items()},
        "max_abs_diff_vs_whole_light_curve": {
            "public_update": float(np.nanmax(np.abs(answers.proba - full_proba))),
            "memory_update": float(np.nanmax(np.abs(memory_proba - full_proba))),
        },
        "state_file_bytes_median": int(np.median(state_bytes)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="light curves to update")
    ap.add_argument("--per-class", type=int, default=100, help="training light curves per class")
    ap.add_argument("--steps", type=int, default=300, help="training steps")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--context", action="store_true", help="a model with the context input")
    ap.add_argument("--out", default=None, help="default: results/rnn_update[_context].json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    train, labels, bench, source = datasets(args.n, args.per_class)
    work = Path(tempfile.mkdtemp(prefix="starcurve_rnn_update_"))
    cfg = FitConfig(steps=args.steps, batch_size=64, lr=2e-3, eval_every=100, patience=0)
    t0 = time.perf_counter()
    options = {"context": True} if args.context else None
    est = NetworkClassifier(
        "rnn", cfg, options, out_dir=work / "model", desc="train rnn"
    ).fit_table(train, labels)
    train_s = time.perf_counter() - t0
    net = est.net_
    n = bench.num_rows
    lens = S.lengths(bench)
    backend = "light-curve" if light_curve_available() else "numpy"
    extract_features(bench.slice(0, 2), backend=backend, n_jobs=1)  # warm-up (imports, first call)

    # (b) and (c): recomputing from the whole light curves
    rerun_batch = best_of(lambda: network_proba(net, bench), args.repeats) / n
    one = [bench.slice(i, 1) for i in range(n)]
    rerun_single = best_of(lambda: [network_proba(net, lc) for lc in one], args.repeats) / n
    features = (
        best_of(lambda: extract_features(bench, backend=backend, n_jobs=1), min(args.repeats, 3))
        / n
    )
    full_proba = network_proba(net, bench)[0]

    recompute = {"features": features, "rerun_single": rerun_single, "rerun_batch": rerun_batch}
    rows = {f"k={k}": measure(est, bench, k, work, args.repeats, recompute, full_proba) for k in KS}

    result = {
        "what": "RNN update cost per added observation vs recomputing from the whole light curve",
        "command": "OMP_NUM_THREADS=1 python benchmarks/rnn_update.py "
        f"--n {args.n} --per-class {args.per_class} --steps {args.steps} --repeats {args.repeats}"
        + (" --context" if args.context else ""),
        "data": source,
        "light_curves": n,
        "points_per_light_curve": {
            "min": int(lens.min()),
            "median": float(np.median(lens)),
            "max": int(lens.max()),
        },
        "model": {
            "config": {k: v for k, v in vars(net.cfg).items() if k != "classes"},
            "classes": list(net.cfg.classes),
            "train_steps": est.meta_["train"]["steps"],
            "train_seconds": round(train_s, 1),
        },
        "feature_backend": backend,
        "seconds_per_light_curve": {
            "rerun_network_one_per_call": rerun_single,
            "rerun_network_batched": rerun_batch,
            "features": features,
        },
        "results": rows,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {"torch": torch.__version__, **_lc_version()},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "notes": (
            "(a) per added point, best of repeats; (b), (c) per light curve. public_update = "
            "NetworkClassifier.update(table, state_dir): clean the new points, read, advance and "
            "write each object's state file; memory_update = RNNClassifier.update(state, new_obs) "
            "with the state in memory (cleans the new points); memory_advance = the network step "
            "on clean points only. The ratios divide (b) or (c) by (a)."
        ),
    }
    out = Path(args.out or RESULTS / f"rnn_update{'_context' if args.context else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds_per_light_curve", "results")}, indent=2))
    print(f"wrote {out} ({result['wall_seconds']} s)")


def _lc_version() -> dict:
    try:
        import light_curve

        return {"light-curve": light_curve.__version__}
    except ImportError:
        return {}


if __name__ == "__main__":
    main()
