"""One network (RNN or CNN) trained on ASAS-3 V (asas_acvs) and EROS-1 R (eros_lmc) together, per survey.

Classes that mean the same get one name: RRab + RRc -> RR_Lyrae, EB_* -> EB, Mira, Cepheid (EROS
only); ASAS's DSCT and ACV keep their names (no EROS counterpart); classes below the FS-1 size
limit (BCEP) are dropped by the FS-1 preparation. Training uses ONLY the FS-1 pools of both files:
the FS-1 test objects (``starcurve.eval.fewshot.test_object_ids``) are excluded and checked.
Scores are macro F1 on each survey's FS-1 test set (mapped labels, averaged over that survey's
classes), for the joint model and, as the reference, the same network trained on each survey alone.
All three use one training budget (``--steps`` cap, early stopping on the validation loss of a split
of the training pool); the network options are the FS-1 ones (``supervised.FS1_MODEL``). Each run also
records macro F1 per survey on its own validation objects (the only scores any choice may use).

    python benchmarks/multisurvey.py --kind rnn|cnn [--steps 1500] [--out runs/multisurvey_<kind>]

Writes benchmarks/results/multisurvey_<kind>.json (model folders stay in --out, outside git).
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
RESULTS = Path(__file__).resolve().parent / "results"


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
    ap.add_argument("--kind", choices=sorted(sup.MODELS), required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", default=None, help="model folders (default runs/multisurvey_<kind>)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--seed", type=int, default=0, help="split, copies, weights (0: the rows above)"
    )
    ap.add_argument("--only", default=None, help="run only these runs (e.g. joint)")
    ap.add_argument(
        "--survey-token",
        action="store_true",
        help="joint run only: the network also gets a one-hot of the survey (model option surveys)",
    )
    args = ap.parse_args()
    args.out = args.out or f"runs/multisurvey_{args.kind}"
    results = RESULTS / f"multisurvey_{args.kind}.json"
    name = args.kind.upper()
    torch.set_num_threads(args.threads)
    data = {name: load(name, band) for name, band in SURVEYS.items()}
    opts = dict(sup.FS1_MODEL[args.kind])
    if args.survey_token:
        opts["surveys"] = sorted(SURVEYS)
    cfg = sup.FitConfig(
        steps=args.steps,
        batch_size=64,
        eval_every=150,
        patience=4,
        max_val=1000,
        augment=AugmentConfig(),
        seed=args.seed,
    )
    test_ids = set().union(*(d[4] for d in data.values()))
    runs = {"joint": list(SURVEYS), **{f"{n}_only": [n] for n in SURVEYS}}
    if args.survey_token:
        runs = {"joint": runs["joint"]}
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    # the published budget (1,500 steps, no survey input, no context) keeps the plain names; variants
    # are tagged
    tag = (
        ("" if args.steps == 1500 else f"_steps{args.steps}")
        + ("_survey_token" if args.survey_token else "")
        + ("_context" if opts.get("context") else "")  # rows before the context input have none
        + (f"_seed{args.seed}" if args.seed else "")
    )
    command = (
        f"python benchmarks/multisurvey.py --kind {args.kind} --steps {args.steps} --out {args.out} "
        f"--threads {args.threads}"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --only {args.only}" if args.only else "")
        + (" --survey-token" if args.survey_token else "")
    )
    out = {
        "what": f"{name} (FS-1 options {sup.FS1_MODEL[args.kind]}) on ASAS-3 V + EROS-1 R, FS-1 pools "
        "only, per-survey macro F1 on FS-1 test sets",
        "model_options": sup.FS1_MODEL[args.kind],  # per run: model_options
        "label_map": LABEL_MAP,
        "fit": {k: v for k, v in cfg.__dict__.items() if k != "augment"},
        "augment": cfg.augment.__dict__,
        "machine": fs.machine(),
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": command,  # the latest; each run keeps its own
        "runs": json.loads(results.read_text())["runs"] if results.exists() else {},
    }
    for run, names in runs.items():
        table = pa.concat_tables([data[n][0] for n in names], promote_options="default")
        labels = np.concatenate([data[n][1] for n in names]).astype(object)
        survey = np.concatenate([np.full(data[n][0].num_rows, n) for n in names])
        train_ids = set(table.column("object_id").to_pylist())
        assert not train_ids & test_ids, "an FS-1 test object would be trained on"
        t0 = time.time()
        model, info = sup.fit(
            args.kind, table, labels, Path(args.out) / (run + tag), cfg,
            model_options=opts, desc=f"{name} {run}{tag}",
        )  # fmt: skip
        val = info.pop("validation_rows")
        values, counts = np.unique(labels.astype(str), return_counts=True)
        fallback = str(values[counts.argmax()])
        res = {
            "command": command,
            "model_options": opts,
            "train_seconds": round(time.time() - t0, 1),
            "classes": model.cfg.classes,
            **info,
        }
        for n in names:
            res[n] = score(model, data[n][2], data[n][3], fallback)
            v = val[survey[val] == n]  # this survey's validation objects (never trained on)
            res[n]["validation"] = score(
                model, table.take(pa.array(v)), labels[v].astype(str), fallback
            )
        out["runs"][run + tag] = res
        print(run + tag, {n: round(res[n]["macro_f1"], 4) for n in names}, flush=True)
        print(run + tag, "val", {n: round(res[n]["validation"]["macro_f1"], 4) for n in names})
        results.parent.mkdir(parents=True, exist_ok=True)
        tmp = results.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(results)


if __name__ == "__main__":
    main()
