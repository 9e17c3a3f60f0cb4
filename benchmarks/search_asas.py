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
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from starcurve.data import schema as S
from starcurve.eval import fewshot as fs
from starcurve.files import atomic_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("STARCURVE_CACHE") or "/tmp/starcurve-search-cache")
INJECT_FRACTION, INJECT_SEED = 0.01, 16
K, TOP, MIN_POINTS = 10, 0.05, 100
SHEET = Path(__file__).resolve().parents[1] / "docs" / "figures" / "anomalies_asas_top25.png"


def fs1_vectors(data: fs.FS1Data) -> dict[str, np.ndarray]:
    """Shipped-model embeddings and forest features of every FS-1 object (cached)."""
    ctx = fs.Context(out=CACHE / "asas_acvs_V", progress=True)
    ctx.out.mkdir(parents=True, exist_ok=True)
    emb, _ = fs._vectors(fs.embedder(ctx), data, ctx)
    feat, _ = fs._vectors(fs.features(ctx), data, ctx)
    return {"embedding": emb, "features": feat}


def injected(n_real: int):
    """1% simulated ASAS constant stars and quasars: (clean table, embeddings, features)."""
    from starcurve import clean, load_model
    from starcurve.data.simulate import simulate
    from starcurve.models.forest import extract_features

    n = round(INJECT_FRACTION * n_real)
    table, _ = clean(simulate("asas", n, ["constant", "QSO"], seed=INJECT_SEED))
    path = CACHE / f"injected_{n}_{INJECT_SEED}_{fs.model_id(None).rsplit(':', 1)[1]}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return table, z["embedding"], z["features"]
    emb = load_model().embed_table(table)
    feat = extract_features(table)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, embedding=emb, features=feat)
    return table, emb, feat


def as_table(ids, labels, X: np.ndarray, band: str = "V") -> pa.Table:
    """An embeddings-file table (object_id, band, label, embedding)."""
    emb = pa.ListArray.from_arrays(
        pa.array(np.arange(len(X) + 1, dtype=np.int32) * X.shape[1]),
        pa.array(np.asarray(X, np.float32).ravel()),
    )
    return pa.table(
        {
            "object_id": pa.array(list(ids), pa.string()),
            "band": [band] * len(X),
            "label": pa.array(list(labels), pa.string()),
            "embedding": emb,
        }
    )


def fill(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """NaN features -> the median of ``ref`` (the pool; as FeatureForest does for the forest)."""
    med = np.nanmedian(ref, axis=0)
    return np.where(np.isfinite(X), X, np.nan_to_num(med)[None, :])


def precision_at_10(X: np.ndarray, data: fs.FS1Data, metric: str) -> dict:
    """Index the pool, query with the test objects: share of the 10 neighbours of the query's class."""
    from starcurve import search as se

    pool, test = ~data.test, data.test
    X = fill(X, X[pool])
    idx = se.build(
        X[pool],
        as_table(data.ids[pool], data.labels[pool], X[pool]).drop_columns(["embedding"]),
        metric=metric,
    )
    _, rows = idx.neighbours(idx.prepare(X[test]), data.ids[test], K)
    hit = data.labels[pool][rows] == data.labels[test][:, None]
    prec = hit.mean(1)
    y = data.labels[test]
    per = {c: round(float(prec[y == c].mean()), 3) for c in data.classes}
    chance = {c: round(float((data.labels[pool] == c).mean()), 3) for c in data.classes}
    return {
        "kind": idx.kind,
        "metric": metric,
        "queries": int(test.sum()),
        "index": int(pool.sum()),
        "per_class": per,
        "macro": round(float(np.mean(list(per.values()))), 3),
        "micro": round(float(prec.mean()), 3),
        "chance_per_class": chance,
        "chance_macro": round(float(np.mean(list(chance.values()))), 3),
    }


def anomaly_shares(ranked: pd.DataFrame, injected: set[str]) -> dict:
    """For each ordering: the injected objects among the top 5% (share of the top, and of them)."""
    ranked = ranked.copy()
    for col in ("knn_rank", "iforest_rank"):  # ranks within these rows (a subset keeps its order)
        ranked[col] = ranked[col].rank(method="first").astype(int)
    n = len(ranked)
    top_n = math.ceil(TOP * n)
    is_inj = ranked["object_id"].isin(injected).to_numpy()
    out = {}
    for by, col in (("knn", "knn_rank"), ("iforest", "iforest_rank"), ("mean-rank", None)):
        r = (
            ranked[col].to_numpy()
            if col
            else (ranked["knn_rank"] + ranked["iforest_rank"]).rank(method="first").to_numpy()
        )
        top = r <= top_n
        lab = ranked["label"].to_numpy()
        out[by] = {
            "top": int(top_n),
            "injected_in_top": int((top & is_inj).sum()),
            "share_of_top": round(float((top & is_inj).sum() / top_n), 3),
            "share_of_injected": round(float((top & is_inj).sum() / is_inj.sum()), 3),
            "per_injected_class": {
                c: round(float((top & (lab == c)).sum() / (lab == c).sum()), 3)
                for c in ("constant", "QSO")
            },
            "top_classes": {
                str(k): int(v) for k, v in pd.Series(lab[top]).value_counts().head(6).items()
            },
        }
    return out


def anomalies(data: fs.FS1Data, vec: dict, inj) -> dict:
    """Rank FS-1 objects + 1% injected constants and quasars, embeddings (through the command,
    with the contact sheet) and features."""
    from starcurve import search as se
    from starcurve.cli import main as cli
    from starcurve.data.io import read_parquet, write_parquet

    table, e_inj, f_inj = inj
    inj_ids = np.asarray(table.column("object_id").to_pylist(), str)
    inj_lab = np.asarray(table.column("label").to_pylist(), str)
    ids = np.concatenate([data.ids, inj_ids])
    labels = np.concatenate([data.labels, inj_lab])
    res = {
        "objects": len(ids),
        "injected": len(inj_ids),
        "injected_classes": {c: int((inj_lab == c).sum()) for c in ("constant", "QSO")},
        "top_fraction": TOP,
    }
    work = CACHE / "anomalies"
    work.mkdir(parents=True, exist_ok=True)
    lcs = pa.concat_tables(
        [
            data.table.select(["object_id", "band", "label", "time", "mag", "mag_err"]),
            table.set_column(
                table.schema.get_field_index("band"), "band", pa.array(["V"] * table.num_rows)
            ).select(["object_id", "band", "label", "time", "mag", "mag_err"]),
        ]
    )
    write_parquet(lcs, work / "lcs.parquet")
    write_parquet(as_table(ids, labels, np.vstack([vec["embedding"], e_inj])), work / "emb.parquet")
    cli(
        [
            "anomalies",
            "--input",
            str(work / "emb.parquet"),
            "--output",
            str(work / "ranked.parquet"),
            "--lightcurves",
            str(work / "lcs.parquet"),
            "--sheet",
            str(SHEET),
        ]
    )
    ranked = read_parquet(work / "ranked.parquet").to_pandas()
    res["embedding"] = anomaly_shares(ranked, set(inj_ids))
    # the oddest embeddings are mostly light curves of a handful of points: the same ranking with
    # the light curves of fewer than MIN_POINTS points left out (a fixed cut, not tuned)
    n_pts = dict(zip(lcs.column("object_id").to_pylist(), S.lengths(lcs).tolist()))
    long = ranked["object_id"].map(n_pts).to_numpy() >= MIN_POINTS
    res["short_in_top25"] = int((ranked["object_id"][:25].map(n_pts) < MIN_POINTS).sum())
    res[f"embedding_min{MIN_POINTS}"] = anomaly_shares(ranked[long], set(inj_ids))
    res[f"objects_min{MIN_POINTS}"] = int(long.sum())
    F = fill(np.vstack([vec["features"], f_inj]), vec["features"])
    idx = se.build(F, as_table(ids, labels, F).drop_columns(["embedding"]))
    scores = se.anomaly_scores(idx, K, seed=0)
    ranked = pd.DataFrame({"object_id": ids, "label": labels})
    for name, v in scores.items():
        r = np.empty(len(v), np.int64)
        r[np.argsort(-v, kind="stable")] = np.arange(1, len(v) + 1)
        ranked[name.split("_")[0] + "_rank"] = r
    res["features"] = anomaly_shares(ranked, set(inj_ids))
    res[f"features_min{MIN_POINTS}"] = anomaly_shares(ranked[long], set(inj_ids))
    return res


def table_md(res: dict) -> str:
    p = res["precision_at_10"]
    classes = list(p["embedding_l2"]["per_class"])
    rows = [
        "| vectors (metric) | " + " | ".join(classes) + " | macro | all queries |",
        "|---" * (len(classes) + 3) + "|",
    ]
    for key, name in (
        ("embedding_l2", "shipped embeddings (L2)"),
        ("features_l2", "features (L2)"),
        ("embedding_cosine", "shipped embeddings (cosine)"),
        ("features_cosine", "features (cosine)"),
    ):
        r = p[key]
        rows.append(
            f"| {name} | "
            + " | ".join(f"{r['per_class'][c]:.3f}" for c in classes)
            + f" | {r['macro']:.3f} | {r['micro']:.3f} |"
        )
    ch = p["embedding_l2"]["chance_per_class"]
    rows.append(
        "| chance (class share of the index) | "
        + " | ".join(f"{ch[c]:.3f}" for c in classes)
        + f" | {p['embedding_l2']['chance_macro']:.3f} | |"
    )
    a = res["anomalies"]
    rows += [
        "",
        (
            f"Anomalies: {a['objects']} objects, {a['injected']} injected "
            f"({a['injected_classes']}); top {a['top_fraction']:.0%} = {a['embedding']['knn']['top']}"
        ),
        "",
        (
            "| vectors | ordering | top 5% | injected in top 5% | share of the top | share of injected found "
            "| constants found | quasars found |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for vec in ("embedding", "features", f"embedding_min{MIN_POINTS}", f"features_min{MIN_POINTS}"):
        for by, r in a[vec].items():
            pc_ = r["per_injected_class"]
            rows.append(
                f"| {vec} | {by} | {r['top']} | {r['injected_in_top']} | {r['share_of_top']:.3f} | "
                f"{r['share_of_injected']:.3f} | {pc_['constant']:.3f} | {pc_['QSO']:.3f} |"
            )
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["vectors", "all"], default="all")
    args = ap.parse_args()
    data = fs.prepare(DATA / "asas_acvs.parquet", "V")
    vec = fs1_vectors(data)
    inj = injected(len(data.ids))
    if args.stage == "vectors":
        return
    res = {
        "machine": fs.machine(),
        "dataset": "asas_acvs",
        "band": "V",
        "k": K,
        "model": "shipped default (starcurve.load_model())",
        "precision_at_10": {},
    }
    for name, X in vec.items():
        for metric in ("l2", "cosine"):
            res["precision_at_10"][f"{name}_{metric}"] = precision_at_10(X, data, metric)
            print(name, metric, res["precision_at_10"][f"{name}_{metric}"]["macro"], flush=True)
    res["anomalies"] = anomalies(data, vec, inj)
    atomic_json(res, OUT / "search_asas.json")
    md = table_md(res)
    (OUT / "search_asas.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
