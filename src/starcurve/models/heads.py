"""Classifiers on the encoder: the Astromer 2 head, on the frozen encoder or the whole network.

The head (Astromer 2): average the input embedding and every block output over the valid steps of a
window, mix them with learned softmax weights (one scalar per layer, uniform at the start), then an
MLP 1024-512-256 (ReLU, LayerNorm). Training happens on windows (each window carries its object's
label, weighted 1/windows-of-its-object so that every object counts once); predictions are per
object: the mean of the class probabilities of its consecutive windows.

Training is two stages, both through the one loop ``starcurve.train.loop.train``, with early
stopping on a validation split taken out of the training objects:
1. frozen encoder: per-layer window means are computed once, then only the head learns (fast);
2. optionally the whole network (``full_steps > 0``), starting from stage 1, at a lower rate.

``finetune_fit_predict`` is the FS-1 ``finetune`` method built on these.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from sklearn.metrics import f1_score
from torch import nn

from starcurve.data.clean import clean
from starcurve.data.windows import windows
from starcurve.errors import StarcurveError
from starcurve.models.encoder import Encoder, EncoderConfig
from starcurve.models.hub import load_model
from starcurve.train.loop import (
    TrainConfig,
    atomic_json,
    atomic_safetensors,
    model_device,
    to_device,
    train,
)

FORMAT = "starcurve-classifier"


class WeightedPooling(nn.Module):
    """Softmax-weighted sum of per-layer window vectors [B, L, d] -> [B, d] (uniform at start)."""

    def __init__(self, n_states: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_states))

    def forward(self, layer_means: torch.Tensor) -> torch.Tensor:
        return torch.einsum("l,bld->bd", torch.softmax(self.logits, 0), layer_means)


def mlp(d_in: int, n_classes: int, hidden=(1024, 512, 256)) -> nn.Sequential:
    """Astromer 2 classifier MLP: Linear -> ReLU -> LayerNorm per hidden layer, then logits."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU(), nn.LayerNorm(h)]
        d_in = h
    return nn.Sequential(*layers, nn.Linear(d_in, n_classes))


def layer_means(encoder: Encoder, time, mag, mask, err=None) -> torch.Tensor:
    """Every layer's states averaged over the valid steps of each window: [B, n_layers + 1, d]."""
    states = encoder.encode(time, mag, mask, err)
    m = mask.to(states[0].dtype).unsqueeze(-1)
    n = m.sum(1).clamp(min=1)
    return torch.stack([(s * m).sum(1) / n for s in states], 1)


class Classifier(nn.Module):
    """Encoder + weighted pooling + MLP. ``forward`` takes window tensors or cached ``feats``."""

    def __init__(self, encoder: Encoder, classes: list[str]):
        super().__init__()
        self.encoder, self.classes = encoder, list(classes)
        cfg = encoder.config
        self.pool = WeightedPooling(cfg.n_layers + 1)
        self.mlp = mlp(cfg.d_model, len(classes))

    def forward(self, batch: dict) -> torch.Tensor:
        feats = batch.get("feats")
        if feats is None:
            feats = layer_means(self.encoder, batch["time"], batch["mag"], batch["mask"], batch["err"])
        return self.mlp(self.pool(feats))

    def set_encoder_trainable(self, on: bool) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(on)

    @torch.inference_mode()
    def predict_proba(self, table: pa.Table, batch_size: int = 256) -> np.ndarray:
        """Class probabilities per row of a clean table: mean over the row's windows."""
        self.eval()
        w = windows(table, self.encoder.config.window, mode="consecutive")
        probs = _window_logits(self, w, batch_size).softmax(-1).numpy()
        return _per_row(probs, w.row, table.num_rows)

    def predict(self, table: pa.Table, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) per row of a clean table."""
        p = self.predict_proba(table, batch_size)
        return np.asarray(self.classes, dtype=object)[p.argmax(1)].astype(str), p

    def save(self, path: str | os.PathLike) -> Path:
        """A classifier folder: config.json (encoder config, classes) + model.safetensors."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "version": 1, "encoder": self.encoder.config.to_dict(),
               "classes": self.classes}
        atomic_json(doc, path / "config.json")
        atomic_safetensors(self.state_dict(), path / "model.safetensors")
        return path


def load_classifier(path: str | os.PathLike) -> Classifier:
    """Load a classifier folder written by ``Classifier.save`` (JSON + safetensors only)."""
    path = Path(path)
    try:
        doc = json.loads((path / "config.json").read_text())
        assert doc.get("format") == FORMAT
        clf = Classifier(Encoder(EncoderConfig.from_dict(doc["encoder"])), doc["classes"])
        clf.load_state_dict(load_file(path / "model.safetensors"))
    except StarcurveError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AssertionError,
            SafetensorError) as e:  # any damage to the folder: one clear message
        raise StarcurveError(f"{path}: not a valid classifier folder ({str(e)[:120]})") from None
    return clf.eval()


def _window_logits(clf: Classifier, w, batch_size: int) -> torch.Tensor:
    count = w.mask.sum(1)
    order = np.argsort(count, kind="stable")
    out = torch.zeros(len(count), len(clf.classes))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        n = max(int(count[idx].max()), 1)
        b = {k: torch.from_numpy(np.ascontiguousarray(getattr(w, k)[idx, :n]))
             for k in ("time", "mag", "mask", "err")}
        out[torch.from_numpy(idx)] = clf(b).float()
    return out


def _per_row(values: np.ndarray, row: np.ndarray, n_rows: int) -> np.ndarray:
    sums = np.zeros((n_rows, values.shape[1]))
    np.add.at(sums, row, values)
    return sums / np.maximum(np.bincount(row, minlength=n_rows), 1)[:, None]


def _split(y: np.ndarray, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split of object indices (a class with < 3 objects: all train)."""
    tr, va = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(frac * len(idx)) if len(idx) >= 3 else 0
        va += list(idx[:k])
        tr += list(idx[k:])
    return np.sort(tr), np.sort(va)


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
    tr, va = _split(y, val_fraction, rng)
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
        feats = torch.cat([
            layer_means(enc, *to_device(
                [tensors[k][s : s + 256] for k in ("time", "mag", "mask", "err")], dev)).cpu()
            for s in range(0, len(wt), 256)
        ])
    data1 = {"feats": feats, "y": tensors["y"], "w": wt}
    tcfg = TrainConfig(steps=head_steps, lr=head_lr, optimizer="adamw", weight_decay=1e-4,
                       warmup=20, eval_every=eval_every, patience=patience, log_every=25,
                       ckpt_every=10**9, seed=seed)
    score = evaluator(lambda net, idx: net(to_device({"feats": feats[idx]}, model_device(net))))
    train(clf, batches_from(data1, np.flatnonzero(in_tr), rng), loss_fn, out_dir / "head", tcfg,
          eval_fn=score, desc="head")

    # Stage 2: the whole network.
    if full_steps > 0:
        clf.set_encoder_trainable(True)
        tcfg = TrainConfig(steps=full_steps, lr=full_lr, optimizer="adamw", weight_decay=1e-4,
                           warmup=20, eval_every=eval_every, patience=max(patience // 2, 2),
                           log_every=25, ckpt_every=10**9, seed=seed)
        data2 = {k: v for k, v in tensors.items()}

        def full_logits(net, idx):
            dev = model_device(net)
            out = [net(to_device(
                       {k: data2[k][idx[s : s + 256]] for k in ("time", "mag", "mask", "err")}, dev))
                   for s in range(0, len(idx), 256)]
            return torch.cat(out).float()

        bs = full_batch_size
        train(clf, batches_from(data2, np.flatnonzero(in_tr), rng, bs), loss_fn, out_dir / "full",
              tcfg, eval_fn=evaluator(full_logits), desc="full")
    clf.set_encoder_trainable(False)
    return clf.eval()


def finetune_fit_predict(
    train_table: pa.Table,
    y_train,
    test_table: pa.Table,
    *,
    seed: int,
    model_dir=None,
    out_dir,
    full_steps: int = 150,
) -> tuple[np.ndarray, float]:
    """FS-1 ``finetune`` method: head on the frozen encoder, then the whole network trained
    (``full_steps`` steps of 32 windows, lr 1e-4, early stopping on 20% of the training objects).

    Returns the predicted label of every test row and the seconds per test light curve spent
    turning light curves into predictions.
    """
    train_clean, y_clean = _clean_rows(train_table, np.asarray(y_train).astype(str))
    clf = fit_classifier(model_dir, train_clean, y_clean, out_dir=out_dir, seed=seed,
                         full_steps=full_steps)
    t0 = time.perf_counter()
    test_clean, keep = _clean_rows(test_table, None)
    pred = np.full(test_table.num_rows, max(set(y_clean), key=list(y_clean).count), dtype=object)
    if test_clean.num_rows:
        pred[keep] = clf.predict(test_clean)[0]
    seconds = (time.perf_counter() - t0) / max(test_table.num_rows, 1)
    clf.save(Path(out_dir) / "classifier")
    return pred.astype(str), seconds


def _clean_rows(table: pa.Table, y):
    """Clean a table; return it with the labels of kept rows (or the kept row indices)."""
    table = table.append_column("__row", pa.array(np.arange(table.num_rows)))
    good, _ = clean(table)
    rows = good.column("__row").to_numpy()
    good = good.drop_columns(["__row"])
    return (good, y[rows]) if y is not None else (good, rows)
