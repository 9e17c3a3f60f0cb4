"""Train the classifier head shipped with a model, and check it on data it never saw.

    python scripts/train_head.py --model src/starcurve/resources/models/default --shared ../shared/data

Training data: every labeled light curve of ../shared/data whose label is in the taxonomy
(``starcurve.models.classify.TAXONOMY``), all bands, minus the FS-1 test objects of asas_acvs (V) and
eros_lmc (R). Evaluation (written to MODEL/head_eval.json): on those FS-1 test objects, a prediction
is right when the predicted fine class is one the source label allows (EROS "RR_Lyrae" accepts RRab or
RRc); and the share of light curves flagged out-of-distribution among the test objects and among
simulated classes the head never saw (constant stars, quasars). The OOD score includes the
periodogram test and the outlier-exposure test (``starcurve.models.classify``), the latter trained on
simulated constant stars and quasars of another simulator seed than those it is evaluated on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import f1_score

from starcurve import clean, read
from starcurve.data import schema as S
from starcurve.data.simulate import simulate
from starcurve.eval.fewshot import test_object_ids
from starcurve.files import atomic_json
from starcurve.models import classify as C
from starcurve.models.estimators import TaxonomyClassifier
from starcurve.models.folder import read_folder
from starcurve.models.hub import load_model
from starcurve.train.heads import fit_head

FILES = {"asas_acvs": "V", "eros_lmc": "R", "macho_sample": None, "ogle2_microlensing": None}


def labeled(shared: Path, test: set[str]) -> tuple[pa.Table, pa.Table]:
    """(training rows, FS-1 test rows in the FS-1 band) of all labeled files, cleaned."""
    train, held = [], []
    for name, band in FILES.items():
        t, _ = clean(read(shared / f"{name}.parquet"), min_obs=10)
        t = t.select([S.ID, S.BAND, S.LABEL, S.TIME, S.MAG, S.ERR])
        is_test = pc.is_in(t.column(S.ID), pa.array(sorted(test)))
        train.append(t.filter(pc.invert(is_test)))
        if band:
            held.append(t.filter(pc.and_(is_test, pc.equal(t.column(S.BAND), band))))
    return pa.concat_tables(train), pa.concat_tables(held)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="src/starcurve/resources/models/default")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shared, folder = Path(args.shared), Path(args.model)
    model = load_model(folder)
    test = test_object_ids(shared / "asas_acvs.parquet", "V") | test_object_ids(
        shared / "eros_lmc.parquet", "R"
    )
    train, held = labeled(shared, test)
    X, fap = C.head_inputs(model, train, progress=True)
    labels = train.column(S.LABEL).to_pylist()
    # outlier exposure: simulated constant stars and quasars at both surveys' cadences (seed 2; the
    # evaluation below uses other draws, seed 1)
    sims = [
        clean(simulate(s, 1000, [c], seed=2), min_obs=10)[0]
        for s in ("asas", "eros")
        for c in ("constant", "QSO")
    ]
    outliers = np.vstack([C.head_inputs(model, t, fap=False)[0] for t in sims])
    state = fit_head(X, labels, seed=args.seed, log_fap=fap, outliers=outliers)
    _, usable = C.label_sets(labels)
    meta = read_folder(folder, weights=False).meta  # the encoder's record is kept
    meta["head"] = {"trained_on": int(usable.sum()), "seed": args.seed,
                    "command": "python scripts/train_head.py " + " ".join(
                        f"--{k} {v}" for k, v in vars(args).items())}  # fmt: skip
    TaxonomyClassifier().with_state(model, state, meta).save(folder)

    prob, ood = C.head_scores(state, *C.head_inputs(model, held))
    pred = np.array(C.FINE)[prob.argmax(1)]
    lab = held.column(S.LABEL).to_pylist()
    allowed, usable = C.label_sets(lab)
    right = allowed[np.arange(len(pred)), prob.argmax(1)] > 0
    ids = held.column(S.ID).to_pylist()
    report = {"test_objects": len(ids), "usable": int(usable.sum())}
    for prefix in ("ASAS-", "EROS1-"):
        sel = usable & np.array([i.startswith(prefix) for i in ids])
        # map each prediction to the source's own label when allowed, so F1 is per source class
        mapped = np.where(right, np.array(lab, dtype=object), "other")[sel].astype(str)
        report[prefix.rstrip("-")] = {
            "objects": int(sel.sum()),
            "accuracy": float(right[sel].mean()),
            "macro_f1_source_classes": float(f1_score(np.array(lab)[sel], mapped, average="macro")),
            "flagged_ood": float((ood[sel] > 1).mean()),
        }
    for survey in ("asas", "eros"):  # cadences and noise of both surveys, classes never trained on
        for cls in ("constant", "QSO"):
            sim, _ = clean(simulate(survey, 300, [cls], seed=1), min_obs=10)
            _, o = C.head_scores(state, *C.head_inputs(model, sim))
            report[f"simulated_{survey}_{cls}_flagged_ood"] = float((o > 1).mean())
    atomic_json(report, folder / "head_eval.json")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
