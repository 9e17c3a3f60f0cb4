"""Readouts, views and probes of an encoder compared on a development split of the FS-1 *pool*.

FS-1 forbids choosing anything on its test set, so choices about the embedding (which layers, which
views, bfloat16 or not) and about hybrid probes are scored here on the pool alone
(``fewshot.development``): for each class, the pool's sorted ids are permuted with
``numpy.random.default_rng(4321)`` and the first 30% are the development test set; training sets
of n = 20 / 100 / 500 per class come from the rest with FS-1's own rule (``default_rng(fold)``,
folds 0-2) and the protocol's probes. The FS-1 test objects are never embedded.

    python benchmarks/readout_dev.py --data ../shared/data/eros_lmc.parquet --band R
    python benchmarks/readout_dev.py --data ../shared/data/asas_acvs.parquet --band V

Writes benchmarks/results/readout_dev_<dataset>_<band>.json (sections merge into it). One thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from starcurve.eval import fewshot as fs
from starcurve.files import atomic_json
from starcurve.models.encoder import Encoder
from starcurve.models.hub import load_model, use_bf16

NS = (20, 100, 500)


class AllLayers:
    """While active, ``Encoder.pool`` returns every layer's masked mean side by side, so that one
    embedding pass gives every readout (the last layer, their mean, all of them)."""

    def __enter__(self):
        self.saved = Encoder.pool

        def pool(enc, states, mask, layers="last"):
            m = mask.to(states[0].dtype).unsqueeze(-1)
            n = m.sum(1).clamp(min=1)
            return torch.cat([(s * m).sum(1) / n for s in states], 1)

        Encoder.pool = pool

    def __exit__(self, *exc):
        Encoder.pool = self.saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--band", required=True)
    ap.add_argument("--model", default=None, help="model folder [default: the shipped one]")
    ap.add_argument("--sections", default="layers,views,probes,bf16", help="also: embed, context")
    ap.add_argument("--cache", default="runs/readout_dev", help="folder for the pool's vectors")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = fs.prepare(args.data, args.band)
    dev = fs.development(data)
    dev_test, dev_pool = dev.ids[dev.test], dev.pool
    ids = np.concatenate([data.pool[c] for c in data.classes])
    rows = data.rows(ids)
    assert not data.test[rows].any()  # the FS-1 test set is never touched
    table = data.table.take(rows)
    model = load_model(args.model)
    cfg = model.config
    n_states = cfg.n_layers + 1
    width = {
        v: cfg.d_model * n_states + (cfg.template if v.startswith("fold") else 0) for v in cfg.views
    }
    model._view_dim = width.__getitem__

    cache = (
        Path(args.cache) / f"{data.dataset}_{args.band}_{fs._hash([fs.model_id(args.model)])}.npz"
    )
    seconds = {}
    if cache.exists():
        z = np.load(cache)
        X, F = z["X"], z["F"]
    else:
        t0 = time.perf_counter()
        with AllLayers():
            X = model.embed_table(table, layers="last")
        seconds["embed"] = time.perf_counter() - t0
        F = np.asarray(
            fs.features(fs.Context(out=cache.parent, progress=False)).fit().vectors(table)
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, X=X, F=F)
    row_of = {i: r for r, i in enumerate(ids)}
    label = dict(zip(data.ids, data.labels))
    test_rows, y_test = [row_of[i] for i in dev_test], [label[i] for i in dev_test]

    def blocks(V: np.ndarray):
        """Per view: (its layers [objects, n_states, d_model], its template columns)."""
        at = 0
        for v in cfg.views:
            layers = V[:, at : at + cfg.d_model * n_states].reshape(len(V), n_states, cfg.d_model)
            at += width[v]
            yield v, layers, V[:, at - (width[v] - cfg.d_model * n_states) : at]

    def readout(V, layers="last", views=None, template=True):
        pick = {"last": lambda L: L[:, -1], "mean": lambda L: L.mean(1),
                "all": lambda L: L.reshape(len(L), -1)}[layers]  # fmt: skip
        parts = [
            p
            for v, L, tpl in blocks(V)
            if views is None or v in views
            for p in ([pick(L)] + ([tpl] if template else []))
        ]
        return np.hstack(parts)

    tag = "" if args.model is None else f"_{Path(args.model).name}"
    out_path = Path("benchmarks/results") / f"readout_dev_{data.dataset}_{args.band}{tag}.json"
    res = json.loads(out_path.read_text()) if out_path.exists() else {}
    res.update(
        dataset=data.dataset, band=args.band, model=args.model or "shipped",
        dev_test_objects=len(dev_test), dev_pool_objects=int(sum(map(len, dev_pool.values()))),
        machine=fs.machine(), command="python " + " ".join(sys.argv),
    )  # fmt: skip
    scores = res.setdefault("scores", {})

    def cell(name, Z, probe="mlp"):
        make = fs.PROBES[probe] if isinstance(probe, str) else probe
        scores[name] = {"dims": int(Z.shape[1])}
        for n in NS:
            f1 = []
            for fold in range(3):
                train = np.concatenate([
                    dev_pool[c][np.random.default_rng(fold).permutation(len(dev_pool[c]))[:n]]
                    for c in data.classes
                ])  # fmt: skip
                clf = make(fold).fit(Z[[row_of[i] for i in train]], [label[i] for i in train])
                f1.append(f1_score(y_test, clf.predict(Z[test_rows]), average="macro"))
            scores[name][str(n)] = [round(float(np.mean(f1)), 4), round(float(np.std(f1)), 4)]
        print(name, scores[name], flush=True)
        atomic_json(res, out_path)

    def pca_forest(k: int, d: int):
        """The first ``d`` columns (the embedding) standardised and reduced to ``k`` principal
        components fitted on the training set, the features passed through, a random forest."""

        def make(seed):
            emb = make_pipeline(StandardScaler(), PCA(k, random_state=seed))
            return make_pipeline(
                SimpleImputer(strategy="median", keep_empty_features=True),
                ColumnTransformer([("emb", emb, slice(0, d))], remainder="passthrough"),
                RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=-1),
            )

        return make

    def mean_of_two(d: int):
        """The protocol's forest on the features (columns d:) and its MLP on the embedding
        (columns :d), their class probabilities averaged: nothing tuned."""

        class MeanOfTwo:
            def __init__(self, seed):
                self.forest, self.mlp = fs.PROBES["forest"](seed), fs.PROBES["mlp"](seed)

            def fit(self, X, y):
                self.forest.fit(X[:, d:], y)
                self.mlp.fit(X[:, :d], y)
                return self

            def predict(self, X):
                p = self.forest.predict_proba(X[:, d:]) + self.mlp.predict_proba(X[:, :d])
                return self.forest.classes_[p.argmax(1)]

        return MeanOfTwo

    Z = readout(X)
    for section in args.sections.split(","):
        if section == "embed":  # the model's own readout: to compare models without the test set
            cell("embed", Z)
        elif section == "layers":
            for layers in ("last", "mean", "all"):
                cell(f"embed, layers={layers}", readout(X, layers))
        elif section == "views":
            for keep in (["raw"], ["pgram"], ["fold1", "fold2"], ["raw", "fold1", "fold2"],
                         ["fold1", "fold2", "pgram"]):  # fmt: skip
                cell(f"embed, views={'+'.join(keep)}", readout(X, views=keep))
            cell("embed, no template", readout(X, template=False))
        elif section == "probes":
            cell("features + forest", F, "forest")
            cell("features + MLP", F)
            cell("hybrid + forest", np.hstack([Z, F]), "forest")
            cell("hybrid + MLP", np.hstack([Z, F]))
            for k in (8, 16, 32):
                cell(
                    f"hybrid, embedding PCA {k} + forest",
                    np.hstack([Z, F]),
                    pca_forest(k, Z.shape[1]),
                )
        elif section == "ensemble":  # features + forest and embed + MLP, probabilities averaged
            cell("ensemble: forest(features) + MLP(embed), mean probability",
                 np.hstack([Z, F]), mean_of_two(Z.shape[1]))  # fmt: skip
        elif section == "stack":  # FS-1's hybrid-stack pipeline
            cell("stack: forest(features + out-of-fold MLP(embed) probabilities)",
                 np.hstack([Z, F]), lambda seed: fs.make_probe("stack", seed, Z.shape[1]))  # fmt: skip
        elif section == "context":  # the RNN/CNN context (mean magnitude, log10 mean error) joined
            from starcurve.data.deltas import context_input

            cell("embed + context", np.hstack([Z, context_input(table)]))
        elif section == "bf16":
            t0 = time.perf_counter()
            use_bf16(True)
            with AllLayers():
                Xb = model.embed_table(table, layers="last")
            use_bf16(False)
            seconds["embed_bf16"] = time.perf_counter() - t0
            Zb = readout(Xb)
            d = np.abs(Zb - Z)
            res["bf16_change"] = {"mean_rel": float(d.mean() / np.abs(Z).mean()),
                                  "max_rel": float(d.max() / np.abs(Z).mean())}  # fmt: skip
            cell("embed, float32", Z)
            cell("embed, --bf16", Zb)
        else:
            raise SystemExit(f"unknown section {section!r}")
    res.setdefault("seconds", {}).update(seconds)
    atomic_json(res, out_path)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
