"""Similarity search and anomaly ranking on asas_acvs (V), shipped embeddings against features.

1. precision@10 of ``similar`` per class: the index holds the FS-1 pool objects of asas_acvs V, the
   queries are the FS-1 test objects only (nothing is tuned on them; nothing is tuned at all); a
   query's precision is the share of its 10 nearest pool objects that carry its class. The same
   search (standardised vectors, L2, the index ``starcurve index`` builds) over the shipped model's
   embeddings and over the 35 light-curve features of the forest baseline (NaN features filled with
   the pool's median).
2. anomaly ranking: every FS-1 object of asas_acvs V plus 1% simulated ASAS constant stars and
   quasars (``simulate('asas', ..., ['constant', 'QSO'])``), ranked by ``starcurve anomalies``
   (mean distance to the 10 nearest others; isolation forest as a second score); the share of the
   injected objects among the top 5%.

    python benchmarks/search_asas.py            # -> benchmarks/results/search_asas.json (+ .md)

Vectors are cached in $STARCURVE_CACHE or /tmp/starcurve-search-cache (about 20 min to make them on
a 2-core CPU; the searches take seconds).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from starcurve.eval import fewshot as fs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("STARCURVE_CACHE") or "/tmp/starcurve-search-cache")
INJECT_FRACTION, INJECT_SEED = 0.01, 16


def fs1_vectors(data: fs.FS1Data) -> dict[str, np.ndarray]:
    """Shipped-model embeddings and forest features of every FS-1 object (cached)."""
    ctx = fs.Context(out=CACHE / "asas_acvs_V", progress=True)
    ctx.out.mkdir(parents=True, exist_ok=True)
    emb, _ = fs._vectors("embed", fs._vec_embed, data, ctx)
    feat, _ = fs._vectors("forest", fs._vec_forest, data, ctx)
    return {"embedding": emb, "features": feat}


def injected(n_real: int):
    """1% simulated ASAS constant stars and quasars: (clean table, embeddings, features)."""
    from starcurve import clean, load_model
    from starcurve.data.simulate import simulate
    from starcurve.models.forest import extract_features

    n = round(INJECT_FRACTION * n_real)
    table, _ = clean(simulate("asas", n, ["constant", "QSO"], seed=INJECT_SEED))
    path = CACHE / f"injected_{n}_{INJECT_SEED}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return table, z["embedding"], z["features"]
    emb = load_model().embed_table(table)
    feat = extract_features(table)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, embedding=emb, features=feat)
    return table, emb, feat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["vectors", "all"], default="all")
    args = ap.parse_args()
    data = fs.prepare(DATA / "asas_acvs.parquet", "V")
    vec = fs1_vectors(data)
    table, e_inj, f_inj = injected(len(data.ids))
    print({k: v.shape for k, v in vec.items()}, e_inj.shape, f_inj.shape)
    if args.stage == "vectors":
        return


if __name__ == "__main__":
    main()
