"""Out-of-distribution by an isolation forest on the shipped embeddings, thresholds from training objects.

Same data as scripts/train_head.py (labeled shared light curves minus the FS-1 test objects); the
threshold is a quantile (0.95, 0.97, 0.99) of the forest's score on those training objects; reported:
the share flagged among the FS-1 test objects and among simulated constant stars and quasars at ASAS
and EROS cadence. An exploration for the OOD flag of `classify` (docs/model_card.md).

    STARCURVE_CACHE=runs/cache python benchmarks/ood_iforest.py   # -> benchmarks/results/ood_iforest.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest

from starcurve import clean
from starcurve.data.simulate import simulate
from starcurve.eval.fewshot import test_object_ids
from starcurve.files import atomic_json
from starcurve.models import classify as C
from starcurve.models.hub import load_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_head import labeled  # the head's own training data


def flagged(s_held: np.ndarray, ids: np.ndarray, sims: dict, thr: float) -> dict:
    """Shares above ``thr``: of the FS-1 test objects (ASAS, EROS, all) and of each simulated set."""
    return {
        "asas_test_flagged": float((s_held[np.char.startswith(ids, "ASAS")] > thr).mean()),
        "eros_test_flagged": float((s_held[np.char.startswith(ids, "EROS")] > thr).mean()),
        "all_test_flagged": float((s_held > thr).mean()),
        **{k: float((v > thr).mean()) for k, v in sims.items()},
    }


def main(shared: Path = ROOT.parent / "shared" / "data") -> None:
    m = load_model()
    test = test_object_ids(shared / "asas_acvs.parquet", "V") | test_object_ids(
        shared / "eros_lmc.parquet", "R"
    )
    train, held = labeled(shared, test)
    _, usable = C.label_sets(train.column("label").to_pylist())
    X = m.embed_table(train)[usable]
    mu, sd = X.mean(0), X.std(0) + 1e-6
    forest = IsolationForest(n_estimators=300, random_state=0).fit((X - mu) / sd)
    score = lambda t: -forest.score_samples((m.embed_table(t) - mu) / sd)
    s_train = -forest.score_samples((X - mu) / sd)
    s_held = score(held)
    ids = np.array(held.column("object_id").to_pylist())
    sims = {
        f"{s}_{c}": score(clean(simulate(s, 300, [c], seed=1), min_obs=10)[0])
        for s in ("asas", "eros")
        for c in ("constant", "QSO")
    }
    res = {str(q): flagged(s_held, ids, sims, np.quantile(s_train, q)) for q in (0.95, 0.97, 0.99)}
    print(json.dumps(res, indent=1))
    atomic_json(res, ROOT / "benchmarks" / "results" / "ood_iforest.json")


if __name__ == "__main__":
    main()
