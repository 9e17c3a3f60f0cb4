"""RNN / CNN training recipes scored on the development split of the FS-1 pool (issue 14).

FS-1 forbids tuning on its test set, so recipes for the end-to-end networks are compared here on
``fewshot.development`` (30% of each class's pool held out; the FS-1 test objects are never read by
a model). Each variant is the FS-1 budget (``train.supervised.FS1_FIT`` / ``FS1_MODEL``) with a few
fields changed, run through ``fewshot.run`` like any method. Variants are changes to the budget as it
was until 2026-12-07 (``v1``: noise of one photometric error per batch, early stopping after 6
evaluations, cap 3,000 RNN / 2,000 CNN steps); the budget since then is ``v1`` + ``no-noise`` +
``patient`` (+ ``context`` for the model, + ``sim4x`` for ``rnn-sim`` / ``cnn-sim``), chosen with this
script.

    OMP_NUM_THREADS=1 python benchmarks/supervised_dev.py --data ../shared/data/eros_lmc.parquet --band R \
        --kind rnn --variants v1,no-noise,no-noise+patient --n all

Writes benchmarks/results/supervised_dev_<dataset>_<band>_<kind>.json (variants merge into it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from starcurve.data.augment import AugmentConfig
from starcurve.eval import fewshot as fs
from starcurve.files import atomic_json
from starcurve.train import supervised as sup

V1_STEPS = {"rnn": 3000, "cnn": 2000}
V1_MODEL = {k: {o: v for o, v in m.items() if o != "context"} for k, m in sup.FS1_MODEL.items()}
# name -> (FitConfig fields, AugmentConfig fields, model fields) changed from the v1 budget;
# "a+b" applies both
VARIANTS = {
    "v1": ({}, {}, {}),
    "no-noise": ({}, {"noise": 0.0}, {}),
    "no-copies": ({}, {"target_factor": 1.0}, {}),
    "gru64": ({}, {}, {"hidden": 64, "dense": 64}),
    "patient": ({"patience": 20, "steps": 6000}, {}, {}),
    "lr5e-4": ({"lr": 5e-4, "patience": 12, "steps": 6000}, {}, {}),
    "half-noise": ({}, {"noise": 0.5}, {}),
    # stage 1 on simulations of the training data's survey (FS-1 ``rnn-sim``: ``sim``), and longer
    "sim": ({"pretrain_sim": replace(sup.FS1_SIM, n=96_000)}, {}, {}),
    "sim4x": ({"pretrain_sim": replace(sup.FS1_SIM, n=384_000)}, {}, {}),
    "context": ({}, {}, {"context": True}),  # mean magnitude and log10 mean error at the head
    "sim10x": ({"pretrain_sim": replace(sup.FS1_SIM, n=960_000)}, {}, {}),
    "period": ({}, {}, {"period": True}),  # log10 best period and peak power at the head
    "fold": ({}, {}, {"fold": 200}),  # a second GRU / conv stack on the light curve folded at 2 P
    "kernel21": ({}, {}, {"kernel": 21}),  # CNN: half the published kernel (both stacks)
    "fold400": ({}, {}, {"fold": 400}),  # twice as many folded points (after "fold" in a variant)
}


# a variant part: three seeds (split, init, batches) trained, probabilities averaged
ENSEMBLE = "ens3"


class SeedAverage:
    """Development only: ``members`` classifiers (made by ``make(seed)``) trained on the same rows,
    their probabilities averaged (a row any member cannot classify is not classified). Each member's
    own labels are kept in ``meta_["member_labels"]`` to score it alone against the same test rows."""

    def __init__(self, make, seed: int, members: int = 3):
        self.members = [make(seed + 1000 * k) for k in range(members)]

    def fit_table(self, table, y):
        for m in self.members:
            m.fit_table(table, y)
        self.classes_, self.meta_ = self.members[0].classes_, {}
        return self

    def answer(self, table):
        from starcurve.models.estimators import Answers

        answers = [m.answer(table) for m in self.members]
        self.meta_["member_labels"] = [
            [None if v is None else str(v) for v in self.labels(a.proba)] for a in answers
        ]
        return Answers.nonfinite(np.mean([a.proba for a in answers], 0), reasons=answers[0].reasons)

    def labels(self, proba):
        return self.members[0].labels(proba)


def members_f1(dev, run_dir: Path) -> dict:
    """Macro F1 of each ensemble member alone, per cell (unclassified rows: the cell's fallback class)."""
    from sklearn.metrics import f1_score

    y_test, out = dev.labels[dev.test].astype(str), {}
    for cell in sorted((run_dir / "cells").glob("f*_n*")):
        p = json.loads((cell / "fs1_predict.json").read_text())
        out[cell.name] = [
            float(
                f1_score(
                    y_test,
                    [p["fallback_class"] if v is None else v for v in labels],
                    average="macro",
                )
            )
            for labels in p["member_labels"]
        ]
    return out


def changes(variant: str) -> tuple[dict, dict, dict]:
    parts = [p for p in variant.split("+") if p != ENSEMBLE]
    if variant != "forest" and not all(p in VARIANTS for p in parts):
        raise SystemExit(f"unknown variant {variant!r}; combine {', '.join(VARIANTS)} with '+'")
    return tuple({k: v for p in parts for k, v in VARIANTS.get(p, ({}, {}, {}))[i].items()}
                 for i in range(3))  # fmt: skip


def method(kind: str, variant: str) -> fs.Method:
    fit_over, aug_over, model_over = changes(variant)

    def make(ctx, seed, out_dir):
        from starcurve.models.estimators import NetworkClassifier

        base = sup.FS1_FIT[kind]
        aug = replace(base.augment or AugmentConfig(), **{"noise": 1.0, **aug_over})
        fit = {"patience": 6, "steps": V1_STEPS[kind], **fit_over}
        ensemble = ENSEMBLE in variant.split("+")
        one = lambda s: NetworkClassifier(
            kind,
            replace(base, seed=s, augment=aug, **fit),
            {**V1_MODEL[kind], **model_over},
            out_dir=Path(out_dir) / f"seed{s}" if ensemble else out_dir,
            desc=f"{kind} {variant} seed {s}",
        )
        return SeedAverage(one, seed) if ensemble else one(seed)

    return fs.Method(f"{kind}:{variant}", f"{kind}, v1 budget, variant {variant}", classifier=make)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--band", required=True)
    ap.add_argument("--kind", choices=["rnn", "cnn"], default="rnn")
    ap.add_argument("--variants", default="v1",
                    help=f"comma list of {', '.join(VARIANTS)}; 'forest': the feature forest")  # fmt: skip
    ap.add_argument("--n", default="all", help="comma list of n (20, 100, 500, all)")
    ap.add_argument("--folds", type=int, default=1)
    ap.add_argument("--runs", default="runs/supervised_dev")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = fs.development(fs.prepare(args.data, args.band))
    out_path = (
        Path("benchmarks/results") / f"supervised_dev_{dev.dataset}_{args.band}_{args.kind}.json"
    )
    for v in args.variants.split(","):
        changes(v)  # a bad name stops before any training
    for v in args.variants.split(","):
        name = "forest" if v == "forest" else fs.register(method(args.kind, v)).name
        r = fs.run(dev, args.band, name, Path(args.runs) / f"{dev.dataset}_{args.kind}_{v}",
                   ns=args.n, folds=args.folds, progress=False, report=False)  # fmt: skip
        # read again just before writing: several runs may share the file
        res = json.loads(out_path.read_text()) if out_path.exists() else {}
        res.update(dataset=dev.dataset, band=args.band, kind=args.kind, machine=fs.machine(),
                   dev_test_objects=int(dev.test.sum()))  # fmt: skip
        what = "the feature forest, for reference"
        if v != "forest":  # SimPretrain values as their fields
            what = json.loads(json.dumps(changes(v), default=vars))
        res.setdefault("variants", {}).setdefault(v, {}).update({
            "changes": what,
            **{n: {"command": "python " + " ".join(sys.argv),
                   **{k: r["results"][n][k] for k in ("f1_mean", "f1_std", "acc_mean", "f1_folds")}}
               for n in r["results"]},
        })  # fmt: skip
        if ENSEMBLE in v.split("+"):  # each member alone, on the same test rows
            res["variants"][v]["members_f1"] = members_f1(
                dev, Path(args.runs) / f"{dev.dataset}_{args.kind}_{v}"
            )
        print(v, {n: round(x["f1_mean"], 4) for n, x in r["results"].items()}, flush=True)
        atomic_json(res, out_path)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
