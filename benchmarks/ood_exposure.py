"""Out-of-distribution by outlier exposure: a classifier of the shipped embeddings trained to tell the
head's real training variables from simulated constant stars and quasars (simulator seed 2, ASAS and
EROS cadences), its threshold at the 99th percentile of its score on the real training variables.
Reported: the share flagged among the FS-1 test objects and among simulated constants and quasars of
another seed (1, as scripts/train_head.py uses). Simulated non-variables are both what it learns from
and what it is scored on (other draws of the same simulator): an optimistic test of the idea.

    STARCURVE_CACHE=runs/cache python benchmarks/ood_exposure.py   # -> benchmarks/results/ood_exposure.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from starcurve import clean
from starcurve.data.simulate import simulate
from starcurve.eval.fewshot import test_object_ids
from starcurve.files import atomic_json
from starcurve.models import classify as C
from starcurve.models.hub import load_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_head import labeled  # the head's own training data

sys.path.insert(0, str(ROOT / "benchmarks"))
from ood_iforest import flagged  # one definition of the reported shares


def main(shared: Path = ROOT.parent / "shared" / "data", n_sim: int = 1000) -> None:
    m = load_model()
    test = test_object_ids(shared / "asas_acvs.parquet", "V") | test_object_ids(
        shared / "eros_lmc.parquet", "R"
    )
    train, held = labeled(shared, test)
    _, usable = C.label_sets(train.column("label").to_pylist())
    X = m.embed_table(train)[usable]

    def sims(seed: int, n: int) -> dict[str, np.ndarray]:
        return {
            f"{s}_{c}": m.embed_table(clean(simulate(s, n, [c], seed=seed), min_obs=10)[0])
            for s in ("asas", "eros")
            for c in ("constant", "QSO")
        }

    out = np.vstack(list(sims(2, n_sim).values()))
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = np.vstack([X, out])
    y = np.r_[np.zeros(len(X)), np.ones(len(out))]
    clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit((Z - mu) / sd, y)
    score = lambda A: clf.predict_proba((A - mu) / sd)[:, 1]
    thr = float(np.quantile(score(X), 0.99))
    s_held = score(m.embed_table(held))
    ids = np.array(held.column("object_id").to_pylist())
    scored = {k: score(v) for k, v in sims(1, 300).items()}
    res = {
        "threshold": thr,
        "train_real": len(X),
        "train_simulated": len(out),
        **flagged(s_held, ids, scored, thr),
    }
    print(json.dumps(res, indent=1))
    atomic_json(res, ROOT / "benchmarks" / "results" / "ood_exposure.json")


if __name__ == "__main__":
    main()
