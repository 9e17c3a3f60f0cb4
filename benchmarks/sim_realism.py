"""How real is the simulator? Train the feature forest on simulated ASAS-like light curves, test on
real ones.

    python benchmarks/sim_realism.py [--per-class 1500] [--seed 0]
    # -> benchmarks/results/sim_realism.json

Test set: the FS-1 test objects (``starcurve.eval.fewshot.prepare``, BENCHMARK.md rule 3) of
``../shared/data/asas_acvs.parquet`` (V) in the seven classes the simulator shares with it: RRab, RRc,
DSCT, EB_contact, EB_detached, EB_semidetached, Mira. Two forests, the same features
(``starcurve.models.forest.extract_features``, BENCHMARK.md list) and the same classifier
(``RandomForestClassifier(n_estimators=500, random_state=0, n_jobs=-1)``, NaN features filled with
training medians):

- sim -> real: trained on ``--per-class`` simulated light curves of each class (survey "asas");
- real -> real: trained on every pool object (FS-1 non-test) of the same classes.

The gap between the two macro F1 scores says how far simulated light curves are from real ones.
Real features are cached in ``runs/sim_realism/`` (the test set never trains or tunes anything here:
the simulator's ASAS calibration excludes these objects, see scripts/derive_sim_tables.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from starcurve.data.clean import clean
from starcurve.data.simulate import ASAS_CLASSES, simulate
from starcurve.eval.fewshot import prepare
from starcurve.files import atomic_json
from starcurve.models.forest import extract_features

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "asas_acvs.parquet"
CACHE = ROOT / "runs" / "sim_realism"
OUT = ROOT / "benchmarks" / "results" / "sim_realism.json"


def features(table: pa.Table, key: str) -> np.ndarray:
    """Feature matrix, cached on disk under a key that names the exact input."""
    path = CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path)
    X, _ = extract_features(table, progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, X)
    return X


def forest(X: np.ndarray, y: np.ndarray, Xt: np.ndarray) -> np.ndarray:
    med = np.nanmedian(X, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    fill = lambda A: np.where(np.isnan(A), med, A)
    clf = RandomForestClassifier(n_estimators=500, random_state=0, n_jobs=-1)
    return clf.fit(fill(X), y).predict(fill(Xt))


def score(y_true, pred, classes) -> dict:
    return {
        "macro_f1": round(float(f1_score(y_true, pred, labels=classes, average="macro")), 4),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "f1_per_class": dict(
            zip(
                classes,
                np.round(f1_score(y_true, pred, labels=classes, average=None), 4).tolist(),
                strict=True,
            )
        ),
        "confusion": {
            "labels": classes,
            "matrix": confusion_matrix(y_true, pred, labels=classes).tolist(),
        },
    }


def sim_version() -> str:
    """Hash of the simulator code and tables, so cached simulated features follow changes."""
    h = hashlib.sha256()
    src = ROOT / "src" / "starcurve"
    for p in [src / "data" / "simulate.py", *sorted((src / "resources" / "sim").glob("*"))]:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = prepare(DATA, "V")
    keep = np.isin(data.labels, ASAS_CLASSES)
    classes = [c for c in data.classes if c in ASAS_CLASSES]
    test, pool = keep & data.test, keep & ~data.test
    X_real = features(data.table, f"asas_acvs_V_{len(data.ids)}")
    y = data.labels

    n_sim = args.per_class * len(ASAS_CLASSES)
    sim_table, _ = clean(simulate("asas", n_sim, ASAS_CLASSES, seed=args.seed))
    y_sim = np.asarray(sim_table.column("label").to_pylist())
    X_sim = features(sim_table, f"sim_{sim_version()}_{args.seed}_{n_sim}")

    pred_sim = forest(X_sim, y_sim, X_real[test])
    pred_real = forest(X_real[pool], y[pool], X_real[test])
    res = {
        "command": "python benchmarks/sim_realism.py "
        f"--per-class {args.per_class} --seed {args.seed}",
        "machine": f"{os.cpu_count()}-core CPU (shared), no GPU",
        "test_set": "FS-1 test objects of asas_acvs (V) in the covered classes",
        "classes": classes,
        "test_objects": int(test.sum()),
        "test_counts": {c: int((y[test] == c).sum()) for c in classes},
        "real_pool_objects": int(pool.sum()),
        "simulated_objects": len(y_sim),
        "simulator_version": sim_version(),
        "sim_to_real": score(y[test], pred_sim, classes),
        "real_to_real": score(y[test], pred_real, classes),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    res["gap_macro_f1"] = round(res["real_to_real"]["macro_f1"] - res["sim_to_real"]["macro_f1"], 4)
    atomic_json(res, OUT)
    print(json.dumps({k: res[k] for k in ("test_objects", "gap_macro_f1")}))
    for k in ("sim_to_real", "real_to_real"):
        print(k, res[k]["macro_f1"], res[k]["accuracy"], res[k]["f1_per_class"])
    print("confusion sim->real (rows true, cols predicted)", classes)
    print(np.array(res["sim_to_real"]["confusion"]["matrix"]))


if __name__ == "__main__":
    main()
