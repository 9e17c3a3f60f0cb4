"""One CNN trained on ASAS-3 V (asas_acvs) and EROS-1 R (eros_lmc) together, scored per survey.

Classes that mean the same get one name: RRab + RRc -> RR_Lyrae, EB_* -> EB, Mira, Cepheid (EROS
only); ASAS's DSCT and ACV keep their names (no EROS counterpart); classes below the FS-1 size
limit (BCEP) are dropped by the FS-1 preparation. Training uses ONLY the FS-1 pools of both files:
the FS-1 test objects (``starcurve.eval.fewshot.test_object_ids``) are excluded and checked.
Scores are macro F1 on each survey's FS-1 test set (mapped labels, averaged over that survey's
classes), for the joint model and, as the reference, the same CNN trained on each survey alone.

    python benchmarks/multisurvey_cnn.py [--steps 1500] [--out runs/multisurvey]

Writes benchmarks/results/multisurvey_cnn.json (model folders stay in --out, outside git).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from sklearn.metrics import accuracy_score, f1_score

from starcurve.data.augment import AugmentConfig
from starcurve.eval import fewshot as fs
from starcurve.train import supervised as sup

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SURVEYS = {"asas_acvs": "V", "eros_lmc": "R"}
LABEL_MAP = {
    "RRab": "RR_Lyrae", "RRc": "RR_Lyrae", "EB_contact": "EB", "EB_detached": "EB",
    "EB_semidetached": "EB", "EB_ambiguous": "EB",
}  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results" / "multisurvey_cnn.json"


def load(name: str, band: str):
    """FS-1 preparation of one survey: pool and test tables with mapped labels."""
    d = fs.prepare(DATA / f"{name}.parquet", band)
    labels = sup.map_labels(d.labels, LABEL_MAP).astype(str)
    test_ids = fs.test_object_ids(DATA / f"{name}.parquet", band)  # the shared FS-1 split
    is_test = np.isin(d.ids, list(test_ids))
    assert np.array_equal(is_test, d.test)
    pool = d.table.filter(pa.array(~is_test))
    test = d.table.filter(pa.array(is_test))
    return pool, labels[~is_test], test, labels[is_test], test_ids


def score(model, test: pa.Table, y: np.ndarray, fallback: str) -> dict:
    proba, _ = sup.network_proba(model, test)
    done = np.isfinite(proba).all(1)
    pred = np.full(len(y), fallback, dtype=object)
    pred[done] = np.array(model.cfg.classes, dtype=object)[proba[done].argmax(1)]
    classes = sorted(set(y))
    pred = pred.astype(str)
    return {
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "per_class_f1": dict(
            zip(
                classes,
                f1_score(y, pred, labels=classes, average=None, zero_division=0).round(4).tolist(),
            )
        ),
        "macro_f1_classified_only": float(
            f1_score(y[done], pred[done], labels=classes, average="macro", zero_division=0)
        ),
        "test_objects": len(y),
        "skipped_short": int((~done).sum()),
        "predicted_classes": {c: int(k) for c, k in zip(*np.unique(pred, return_counts=True))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", default="runs/multisurvey")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--only", default=None, help="re-run only these runs (e.g. joint); keep the others' results"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = {name: load(name, band) for name, band in SURVEYS.items()}
    cfg = sup.FitConfig(
        steps=args.steps,
        batch_size=64,
        eval_every=150,
        patience=4,
        max_val=1000,
        augment=AugmentConfig(),
        seed=0,
    )
    test_ids = set().union(*(d[4] for d in data.values()))
    runs = {"joint": list(SURVEYS), **{f"{n}_only": [n] for n in SURVEYS}}
    out = {
        "what": "CNN (published architecture) on ASAS-3 V + EROS-1 R, FS-1 pools only, per-survey macro F1 on FS-1 test sets",
        "label_map": LABEL_MAP,
        "fit": {k: v for k, v in cfg.__dict__.items() if k != "augment"},
        "augment": cfg.augment.__dict__,
        "machine": fs.machine(),
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": f"python benchmarks/multisurvey_cnn.py --steps {args.steps} --out {args.out}",
        "runs": {},
    }
    if args.only:
        out["runs"] = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else {}
        out["command"] += f" --only {args.only}"
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    for run, names in runs.items():
        table = pa.concat_tables([data[n][0] for n in names], promote_options="default")
        labels = np.concatenate([data[n][1] for n in names]).astype(object)
        train_ids = set(table.column("object_id").to_pylist())
        assert not train_ids & test_ids, "an FS-1 test object would be trained on"
        t0 = time.time()
        model, info = sup.fit("cnn", table, labels, Path(args.out) / run, cfg, desc=f"CNN {run}")
        values, counts = np.unique(labels.astype(str), return_counts=True)
        fallback = str(values[counts.argmax()])
        res = {"train_seconds": round(time.time() - t0, 1), "classes": model.cfg.classes, **info}
        for n in names:
            res[n] = score(model, data[n][2], data[n][3], fallback)
        out["runs"][run] = res
        print(run, {n: round(res[n]["macro_f1"], 4) for n in names}, flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(RESULTS)


if __name__ == "__main__":
    main()
