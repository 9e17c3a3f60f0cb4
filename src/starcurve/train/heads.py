"""Training the Astromer 2 head (``starcurve.models.heads.Classifier``) on an encoder.

Training happens on windows (each window carries its object's label, weighted 1/windows-of-its-
object so that every object counts once), in two stages, both through the one loop
``starcurve.train.loop.train``, with early stopping on a stratified validation split of the training
objects (``starcurve.train.supervised.split_validation``):
1. frozen encoder: per-layer window means are computed once, then only the head learns (fast);
2. optionally the whole network (``full_steps > 0``), starting from stage 1, at a lower rate.

``estimators.EncoderClassifier`` (the FS-1 ``finetune`` method) is built on it. ``fit_head`` trains
the taxonomy head that ships with the model (``models/classify.py``) on embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from starcurve.data.windows import windows
from starcurve.errors import StarcurveError
from starcurve.models.classify import (
    BANK_SIZE,
    FINE,
    OOD_QUANTILE,
    PCA_DIMS,
    Head,
    _exposure,
    _kth_distance,
    label_sets,
)
from starcurve.models.encoder import Encoder
from starcurve.models.heads import Classifier, _per_row, layer_means
from starcurve.models.hub import load_model
from starcurve.train.loop import TrainConfig, model_device, to_device, train
from starcurve.train.supervised import split_validation


def fit_classifier(
    model=None,
    table: pa.Table | None = None,
    y=None,
    *,
    out_dir: str | os.PathLike,
    seed: int = 0,
    head_steps: int = 400,
    full_steps: int = 0,
    batch_size: int = 64,
    full_batch_size: int = 32,
    head_lr: float = 1e-3,
    full_lr: float = 1e-4,
    val_fraction: float = 0.2,
    eval_every: int = 25,
    patience: int = 8,
) -> Classifier:
    """Train a classifier on a clean table (one row per object) with labels ``y``.

    ``model``: a model folder, a loaded ``Model``/``Encoder``, or None for the shipped model.
    Stage 1 trains the head on the frozen encoder; ``full_steps > 0`` then trains the whole network.
    """
    enc = model if isinstance(model, Encoder) else getattr(model, "encoder", None)
    enc = enc if enc is not None else load_model(model).encoder
    y = np.asarray(y).astype(str)
    if table is None or table.num_rows != len(y) or len(y) == 0:
        raise StarcurveError("fit_classifier: give a non-empty table and one label per row")
    classes = sorted(set(y))
    if len(classes) < 2:
        raise StarcurveError(f"fit_classifier: need at least 2 classes, got {classes}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    clf = Classifier(enc, classes)
    out_dir = Path(out_dir)
    tr, va = split_validation(y, val_fraction, rng)
    if len(va) == 0:
        tr = np.arange(len(y))
    cls_index = {c: i for i, c in enumerate(classes)}
    label = np.array([cls_index[c] for c in y])
    w = windows(table, enc.config.window, mode="consecutive")
    n_win = np.bincount(w.row, minlength=len(y))
    in_tr = np.isin(w.row, tr)
    wt = torch.from_numpy(1.0 / n_win[w.row]).float()  # every object counts once
    tensors = {k: torch.from_numpy(getattr(w, k)) for k in ("time", "mag", "mask", "err")}
    tensors["y"] = torch.from_numpy(label[w.row])
    tensors["w"] = wt

    def loss_fn(net, batch):
        logits = net(batch)
        ce = F.cross_entropy(logits.float(), batch["y"], reduction="none")
        return (ce * batch["w"]).sum() / batch["w"].sum(), {}

    def batches_from(data: dict, idx: np.ndarray, gen: np.random.Generator, bs: int = batch_size):
        def it():
            perm = idx[gen.permutation(len(idx))]
            for s in range(0, len(perm), bs):
                sel = torch.from_numpy(perm[s : s + bs])
                yield {k: v[sel] for k, v in data.items()}

        return it

    def evaluator(get_logits):
        if len(va) == 0:
            return None
        va_win = np.flatnonzero(np.isin(w.row, va))
        row_of = {r: i for i, r in enumerate(va)}
        rows = np.array([row_of[r] for r in w.row[va_win]])

        def score(net) -> float:
            net.eval()
            with torch.no_grad():
                probs = get_logits(net, va_win).float().softmax(-1).cpu().numpy()
            pred = _per_row(probs, rows, len(va)).argmax(1)
            net.train()
            return f1_score(label[va], pred, average="macro")

        return score

    # Stage 1: frozen encoder, cached per-layer window means.
    clf.set_encoder_trainable(False)
    enc.eval()
    dev = model_device(enc)
    with torch.inference_mode():
        feats = torch.cat(
            [
                layer_means(
                    enc,
                    *to_device(
                        [tensors[k][s : s + 256] for k in ("time", "mag", "mask", "err")], dev
                    ),
                ).cpu()
                for s in range(0, len(wt), 256)
            ]
        )
    data1 = {"feats": feats, "y": tensors["y"], "w": wt}

    def stage(steps: int, lr: float, patience: int) -> TrainConfig:
        return TrainConfig(steps=steps, lr=lr, optimizer="adamw", weight_decay=1e-4, warmup=20,
                           eval_every=eval_every, patience=patience, log_every=25, ckpt_every=10**9,
                           seed=seed)  # fmt: skip

    tcfg = stage(head_steps, head_lr, patience)
    score = evaluator(lambda net, idx: net(to_device({"feats": feats[idx]}, model_device(net))))
    train(
        clf,
        batches_from(data1, np.flatnonzero(in_tr), rng),
        loss_fn,
        out_dir / "head",
        tcfg,
        eval_fn=score,
        desc="head",
    )

    # Stage 2: the whole network.
    if full_steps > 0:
        clf.set_encoder_trainable(True)
        tcfg = stage(full_steps, full_lr, max(patience // 2, 2))
        data2 = {k: v for k, v in tensors.items()}

        def full_logits(net, idx):
            dev = model_device(net)
            out = [
                net(
                    to_device(
                        {k: data2[k][idx[s : s + 256]] for k in ("time", "mag", "mask", "err")}, dev
                    )
                )
                for s in range(0, len(idx), 256)
            ]
            return torch.cat(out).float()

        bs = full_batch_size
        train(
            clf,
            batches_from(data2, np.flatnonzero(in_tr), rng, bs),
            loss_fn,
            out_dir / "full",
            tcfg,
            eval_fn=evaluator(full_logits),
            desc="full",
        )
    clf.set_encoder_trainable(False)
    return clf.eval()


def fit_head(
    X: np.ndarray,
    labels,
    *,
    epochs: int = 300,
    seed: int = 0,
    log_fap: np.ndarray | None = None,
    outliers: np.ndarray | None = None,
) -> dict:
    """Train the head on embeddings ``X`` with survey ``labels``; return everything ``predict`` needs.
    ``log_fap`` (log10 false-alarm probability per row) adds the periodogram test of the OOD score;
    ``outliers`` (embeddings of light curves of no training class, e.g. simulated constant stars and
    quasars) adds a learned test: a logistic regression of outliers against the training objects."""
    allowed, usable = label_sets(labels)
    if usable.sum() < 10:
        raise StarcurveError(
            "fewer than 10 objects carry a label of the taxonomy; cannot train a head"
        )
    extra = (
        {}
        if log_fap is None
        else {"fap_threshold": float(np.quantile(log_fap[usable], OOD_QUANTILE))}
    )
    X, allowed = X[usable].astype(np.float32), allowed[usable]
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    torch.manual_seed(seed)
    head = Head(X.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    # each fine-labelled group weighs the same in the loss, whatever its size
    groups = {tuple(r) for r in allowed}
    weight = np.zeros(len(Z), np.float32)
    for g in groups:
        sel = (allowed == np.array(g)).all(1)
        weight[sel] = 1.0 / sel.sum()
    zt, at, wt = (
        torch.from_numpy(Z),
        torch.from_numpy(allowed),
        torch.from_numpy(weight / weight.sum()),
    )
    for _ in range(epochs):
        head.train()
        logp = torch.log_softmax(head(zt), 1)
        nll = -torch.logsumexp(logp + torch.log(at.clamp_min(1e-30)), 1)
        loss = (nll * wt).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # OOD: distance along the principal axes to the k-th nearest training object (a bank of at most BANK_SIZE)
    _, s, vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    k = min(PCA_DIMS, len(s))
    proj = np.ascontiguousarray(vt[:k].T, dtype=np.float32)  # a rotation: no whitening, so that
    # directions along which the classes are spread (the informative ones) keep their weight
    P = Z @ proj
    bank = P[np.sort(np.random.default_rng(seed).permutation(len(P))[:BANK_SIZE])]
    d = _kth_distance(bank, bank, skip_self=True)  # each bank point without itself
    if outliers is not None:
        extra.update(_fit_exposure(Z, (outliers.astype(np.float32) - mean) / std))
    return {
        "head": head.eval(), "classes": FINE, "mean": mean, "std": std, "proj": proj, "bank": bank,
        "threshold": float(np.quantile(d, OOD_QUANTILE)), **extra,
    }  # fmt: skip


def _fit_exposure(Z: np.ndarray, Zout: np.ndarray) -> dict:
    """Outlier exposure: logistic regression of outliers (1) against training objects (0), on the
    standardised embeddings; its threshold is the 99th percentile of the training objects' score."""
    from sklearn.linear_model import LogisticRegression

    y = np.r_[np.zeros(len(Z)), np.ones(len(Zout))]
    clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit(
        np.vstack([Z, Zout]), y
    )
    w, b = clf.coef_[0].astype(np.float32), float(clf.intercept_[0])
    return {
        "exposure_w": w,
        "exposure_b": b,
        "exposure_threshold": float(np.quantile(_exposure(Z, w, b), OOD_QUANTILE)),
    }
